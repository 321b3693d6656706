/* The ISA-specific kernels, compiled once per instruction set by linfdist_native.c, which
 * defines before including: SUFFIX, TARGET, VW (lanes), CV (vectors per tile row), vec,
 * vmask, ivec and the V_* / IV_* operations. Tiles are R rows x T = CV*VW outputs. W comes
 * packed as panels [Mp / T, K, T] (W^T cut into column blocks of T, zero padded), so the k
 * loop streams contiguous memory (a plain [K, M] W^T strides by 4 KiB and thrashes L1) and
 * columns need no masks; rows past n1 are clamped to the last valid row and never stored. */

#define R 4
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define NAME(f) CAT(f, SUFFIX)

/* p = inf: y[n, m] = max_k |x[n, k] - w[m, k]| and (if idx) the first arg-max k. */
TARGET static void NAME(linf_rows)(const float *x, int64_t k, const float *wt, int64_t mp, int64_t m,
                                   int64_t n0, int64_t n1, float *y, int32_t *idx) {
    (void)mp;
    for (int64_t r0 = n0; r0 < n1; r0 += R) {
        const float *xr[R];
        for (int r = 0; r < R; r++) xr[r] = x + (r0 + r < n1 ? r0 + r : n1 - 1) * k;
        for (int64_t c0 = 0; c0 < m; c0 += CV * VW) {
            vec acc[R][CV];
            ivec arg[R][CV];
            for (int r = 0; r < R; r++)
                for (int v = 0; v < CV; v++) { acc[r][v] = V_ZERO(); arg[r][v] = IV_SET1(0); }
            const float *wp = wt + c0 * k;
            if (idx) {
                for (int64_t kk = 0; kk < k; kk++, wp += CV * VW) {
                    ivec kv = IV_SET1((int32_t)kk);
                    vec w[CV];
                    for (int v = 0; v < CV; v++) w[v] = V_LOAD(wp + v * VW);
                    for (int r = 0; r < R; r++) {
                        vec xb = V_SET1(xr[r][kk]);
                        for (int v = 0; v < CV; v++) {
                            vec d = V_ABS(V_SUB(xb, w[v]));
                            vmask gt = V_GT(d, acc[r][v]);
                            acc[r][v] = V_BLEND(acc[r][v], d, gt);
                            arg[r][v] = IV_BLEND(arg[r][v], kv, gt);
                        }
                    }
                }
            } else {
                for (int64_t kk = 0; kk < k; kk++, wp += CV * VW) {
                    vec w[CV];
                    for (int v = 0; v < CV; v++) w[v] = V_LOAD(wp + v * VW);
                    for (int r = 0; r < R; r++) {
                        vec xb = V_SET1(xr[r][kk]);
                        for (int v = 0; v < CV; v++) acc[r][v] = V_MAX(acc[r][v], V_ABS(V_SUB(xb, w[v])));
                    }
                }
            }
            for (int r = 0; r < R && r0 + r < n1; r++) {
                float vals[CV * VW];
                int32_t args[CV * VW];
                for (int v = 0; v < CV; v++) { V_STORE(vals + v * VW, acc[r][v]); IV_STORE(args + v * VW, arg[r][v]); }
                int64_t width = m - c0 < CV * VW ? m - c0 : CV * VW;
                for (int64_t j = 0; j < width; j++) {
                    y[(r0 + r) * m + c0 + j] = vals[j];
                    if (idx) idx[(r0 + r) * m + c0 + j] = args[j];
                }
            }
        }
    }
}

/* p = inf bounds over the box [l, u]: hi = max_k max(|l - w|, |u - w|), lo = max_k max(l - w, w - u, 0),
 * with the first arg-max k of each (for the backward pass). */
TARGET static void NAME(interval_rows)(const float *l, const float *u, int64_t k, const float *wt, int64_t mp,
                                       int64_t m, int64_t n0, int64_t n1, float *lo, float *hi, int32_t *ilo,
                                       int32_t *ihi) {
    (void)mp;
    for (int64_t r0 = n0; r0 < n1; r0 += R) {
        const float *lr[R], *ur[R];
        for (int r = 0; r < R; r++) {
            int64_t row = r0 + r < n1 ? r0 + r : n1 - 1;
            lr[r] = l + row * k;
            ur[r] = u + row * k;
        }
        for (int64_t c0 = 0; c0 < m; c0 += CV * VW) {
            vec alo[R][CV], ahi[R][CV];
            ivec glo[R][CV], ghi[R][CV];
            for (int r = 0; r < R; r++)
                for (int v = 0; v < CV; v++) {
                    alo[r][v] = V_ZERO(); ahi[r][v] = V_ZERO();
                    glo[r][v] = IV_SET1(0); ghi[r][v] = IV_SET1(0);
                }
            const float *wp = wt + c0 * k;
            for (int64_t kk = 0; kk < k; kk++, wp += CV * VW) {
                ivec kv = IV_SET1((int32_t)kk);
                vec w[CV];
                for (int v = 0; v < CV; v++) w[v] = V_LOAD(wp + v * VW);
                for (int r = 0; r < R; r++) {
                    vec lb = V_SET1(lr[r][kk]), ub = V_SET1(ur[r][kk]);
                    for (int v = 0; v < CV; v++) {
                        vec dl = V_SUB(lb, w[v]), du = V_SUB(ub, w[v]);
                        vec up = V_MAX(V_ABS(dl), V_ABS(du));
                        vec low = V_MAX(dl, V_SUB(w[v], ub));
                        vmask gh = V_GT(up, ahi[r][v]), gl = V_GT(low, alo[r][v]);
                        ahi[r][v] = V_BLEND(ahi[r][v], up, gh);
                        ghi[r][v] = IV_BLEND(ghi[r][v], kv, gh);
                        alo[r][v] = V_BLEND(alo[r][v], low, gl);
                        glo[r][v] = IV_BLEND(glo[r][v], kv, gl);
                    }
                }
            }
            for (int r = 0; r < R && r0 + r < n1; r++) {
                float vl[CV * VW], vh[CV * VW];
                int32_t al[CV * VW], ah[CV * VW];
                for (int v = 0; v < CV; v++) {
                    V_STORE(vl + v * VW, alo[r][v]); V_STORE(vh + v * VW, ahi[r][v]);
                    IV_STORE(al + v * VW, glo[r][v]); IV_STORE(ah + v * VW, ghi[r][v]);
                }
                int64_t width = m - c0 < CV * VW ? m - c0 : CV * VW;
                for (int64_t j = 0; j < width; j++) {
                    int64_t o = (r0 + r) * m + c0 + j;
                    lo[o] = vl[j]; hi[o] = vh[j];
                    if (ilo) { ilo[o] = al[j]; ihi[o] = ah[j]; }
                }
            }
        }
    }
}

/* t^e for t in [0, 1] and real e > 0 as 2^(e log2 t): log2 from the exponent bits and an
 * atanh series on the mantissa in [sqrt(1/2), sqrt(2)) (|s| <= 0.172, 5 terms: ~1e-8),
 * 2^y by rounding y and a degree-7 Taylor polynomial on [-1/2, 1/2]; t below 2^-126 or
 * results below 2^-126 give 0 (the sums they enter hold a term equal to 1). */
TARGET static inline vec NAME(vpow_general)(vec t, float e) {
    ivec bits = V_AS_I(t);
    vec exponent = V_CVT_I(I_SUB(I_SRL(bits, 23), I_SET1(127)));
    vec mant = I_AS_V(I_OR(I_AND(bits, I_SET1(0x7fffff)), I_SET1(0x3f800000)));
    vmask big = V_GT(mant, V_SET1(1.41421356f));
    mant = V_BLEND(mant, V_MUL(mant, V_SET1(0.5f)), big);
    exponent = V_BLEND(exponent, V_ADD(exponent, V_SET1(1.0f)), big);
    vec s = V_DIV(V_SUB(mant, V_SET1(1.0f)), V_ADD(mant, V_SET1(1.0f)));
    vec s2 = V_MUL(s, s);
    vec series = V_ADD(V_SET1(1.0f / 7.0f), V_MUL(s2, V_SET1(1.0f / 9.0f)));
    series = V_ADD(V_SET1(1.0f / 5.0f), V_MUL(s2, series));
    series = V_ADD(V_SET1(1.0f / 3.0f), V_MUL(s2, series));
    series = V_ADD(V_SET1(1.0f), V_MUL(s2, series));
    vec log2t = V_ADD(exponent, V_MUL(V_MUL(s, series), V_SET1(2.0f * 1.44269504f)));
    vec y = V_MAX(V_MUL(V_SET1(e), log2t), V_SET1(-126.0f));
    vec whole = V_ROUND(y);
    vec z = V_MUL(V_SUB(y, whole), V_SET1(0.693147181f));
    vec poly = V_SET1(1.0f / 5040.0f);
    poly = V_ADD(V_SET1(1.0f / 720.0f), V_MUL(z, poly));
    poly = V_ADD(V_SET1(1.0f / 120.0f), V_MUL(z, poly));
    poly = V_ADD(V_SET1(1.0f / 24.0f), V_MUL(z, poly));
    poly = V_ADD(V_SET1(1.0f / 6.0f), V_MUL(z, poly));
    poly = V_ADD(V_SET1(0.5f), V_MUL(z, poly));
    poly = V_ADD(V_SET1(1.0f), V_MUL(z, poly));
    poly = V_ADD(V_SET1(1.0f), V_MUL(z, poly));
    vec result = I_AS_V(I_ADD(V_AS_I(poly), I_SLL(V_TO_I(whole), 23)));
    vmask keep = V_GT(t, V_SET1(1.17549435e-38f));
    vmask normal = V_GT(y, V_SET1(-126.0f));
    return V_BLEND(V_ZERO(), V_BLEND(V_ZERO(), result, normal), keep);
}

/* t[i] <- t[i]^e for t in [0, 1], over a block of vectors: repeated squaring for integer e (the
 * branches sit outside the vector loops, so each step is a straight pass), powf per lane otherwise. */
TARGET static void NAME(power_block)(vec *t, vec *result, int64_t count, double e, int64_t ie) {
    if (e == 0) {
        for (int64_t i = 0; i < count; i++) result[i] = V_SET1(1.0f);
        return;
    }
    if (ie > 0) {
        int first = 1;
        for (int64_t b = ie; b; b >>= 1) {
            if (b & 1) {
                if (first) for (int64_t i = 0; i < count; i++) result[i] = t[i];
                else for (int64_t i = 0; i < count; i++) result[i] = V_MUL(result[i], t[i]);
                first = 0;
            }
            if (b > 1) for (int64_t i = 0; i < count; i++) t[i] = V_MUL(t[i], t[i]);
        }
        return;
    }
    for (int64_t i = 0; i < count; i++) result[i] = NAME(vpow_general)(t[i], (float)e);
}

#define KB 32 /* k steps per power block */
#define RD (CV >= 4 ? R : 2) /* rows per pass of the direct sum: its accumulators stay in registers */
#define DIRECT_P_MAX 16 /* integer p up to this sum (and differentiate) directly, in registers */

/* t^e for a constant 0 <= e <= 16 (after inlining the loop unrolls into squarings and multiplies). */
TARGET static inline vec NAME(ipow)(vec t, int e) {
    vec r = V_SET1(1.0f);
    for (; e; e >>= 1, t = V_MUL(t, t))
        if (e & 1) r = V_MUL(r, t);
    return r;
}

/* One case per integer exponent 2..16, so each loop is compiled with a constant exponent. */
#define FOR_DIRECT_P(M, e)                                                                          \
    switch (e) {                                                                                    \
    case 2: M(2); break;   case 3: M(3); break;   case 4: M(4); break;   case 5: M(5); break;       \
    case 6: M(6); break;   case 7: M(7); break;   case 8: M(8); break;   case 9: M(9); break;       \
    case 10: M(10); break; case 11: M(11); break; case 12: M(12); break; case 13: M(13); break;     \
    case 14: M(14); break; case 15: M(15); break; default: M(16); break;                            \
    }

/* a += |x - w|^P over k; even P as one fused multiply-add of (x - w)^(P/2) with itself. */
#define DIRECT_SUM(P)                                                                               \
    for (int64_t kk = 0; kk < k; kk++, wq += CV * VW) {                                            \
        vec w[CV];                                                                                  \
        for (int v = 0; v < CV; v++) w[v] = V_LOAD(wq + v * VW);                                    \
        for (int r = 0; r < RD; r++) {                                                              \
            vec xb = V_SET1(xr[h + r][kk]);                                                         \
            for (int v = 0; v < CV; v++) {                                                          \
                vec t = V_SUB(xb, w[v]);                                                            \
                if ((P) % 2) a[r * CV + v] = V_ADD(a[r * CV + v], NAME(ipow)(V_ABS(t), P));        \
                else { vec half = NAME(ipow)(t, (P) / 2); a[r * CV + v] = V_FMA(half, half, a[r * CV + v]); } \
            }                                                                                       \
        }                                                                                           \
    }

/* Integer 2 <= p <= DIRECT_P_MAX with every peak of the tile in the caller's safe range: acc[r * CV + v]
 * gets the plain sum of |x - w|^p over k (no rescaling, no power blocks: no term overflows, and the terms
 * that underflow lie below 2^-96 k of the sum's largest). */
TARGET static void NAME(lp_direct_tile)(const float **xr, int64_t k, const float *wp, int64_t p, vec *acc) {
    for (int h = 0; h < R; h += RD) {
        vec a[RD * CV];
        for (int i = 0; i < RD * CV; i++) a[i] = V_ZERO();
        const float *wq = wp;
        FOR_DIRECT_P(DIRECT_SUM, p)
        for (int i = 0; i < RD * CV; i++) acc[h * CV + i] = a[i];
    }
}
#undef DIRECT_SUM

/* t[i] <- t[i]^e for n vectors and a run-time integer e >= 1, by the bits of e (n is a constant at each call). */
TARGET static inline void NAME(vpow_bits)(vec *t, int n, int64_t e) {
    vec r[CV > 4 ? CV : 4];
    for (; !(e & 1); e >>= 1)
        for (int i = 0; i < n; i++) t[i] = V_MUL(t[i], t[i]);
    for (int i = 0; i < n; i++) r[i] = t[i];
    while (e >>= 1) {
        for (int i = 0; i < n; i++) t[i] = V_MUL(t[i], t[i]);
        if (e & 1)
            for (int i = 0; i < n; i++) r[i] = V_MUL(r[i], t[i]);
    }
    for (int i = 0; i < n; i++) t[i] = r[i];
}

/* Integer p > DIRECT_P_MAX: acc[r * CV + v] = sum_k (|x - w| inv[r][v])^p in registers, one row at a time (the
 * inverse peaks hold the registers other rows' sums would need). Where every ratio of a step is at or below
 * tau (> 0), its terms are below 2^-40 of the sum's largest and are left out. */
TARGET static void NAME(lp_scaled_tile)(const float **xr, int64_t k, const float *wp, int64_t p, vec inv[R][CV],
                                        float tau, vec *acc) {
    vec vtau = V_SET1(tau);
    for (int r = 0; r < R; r++) {
        vec a[CV], iv[CV];
        for (int v = 0; v < CV; v++) { a[v] = V_ZERO(); iv[v] = inv[r][v]; }
        const float *wq = wp;
        for (int64_t kk = 0; kk < k; kk++, wq += CV * VW) {
            vec xb = V_SET1(xr[r][kk]), t[CV], top = V_ZERO();
            for (int v = 0; v < CV; v++) {
                t[v] = V_MUL(V_ABS(V_SUB(xb, V_LOAD(wq + v * VW))), iv[v]);
                top = V_MAX(top, t[v]);
            }
            if (!VM_ANY(V_GT(top, vtau))) continue;
            NAME(vpow_bits)(t, CV, p);
            for (int v = 0; v < CV; v++) a[v] = V_ADD(a[v], t[v]);
        }
        for (int v = 0; v < CV; v++) acc[r * CV + v] = a[v];
    }
}

/* Finite p, second pass: y[n, m] = peak * (sum_k (|x - w| / peak)^p)^(1/p) with peak = y[n, m] on entry.
 * With tau > 0 (large p), a vector of ratios all at or below tau is left out of the power and the sum: each
 * such term is below 2^-40 (the caller's tau) while the sum holds a term equal to 1. For integer p up to
 * DIRECT_P_MAX, tiles whose peaks all lie in a safe range sum |x - w|^p directly in registers (lp_direct_tile). */
TARGET static void NAME(lp_rows)(const float *x, int64_t k, const float *wt, int64_t mp, int64_t m, int64_t n0,
                                 int64_t n1, double p, int64_t ip, float tau, float *y) {
    (void)mp;
    vec ratio[KB * R * CV], powered[KB * R * CV];
    int32_t slot[KB * R * CV];
    vec vtau = V_SET1(tau);
    /* Integer p <= DIRECT_P_MAX sums directly where every peak lies in [lo, hi]: peak^p k stays below 2^120
     * and peak^p above 2^-96 k (so terms lost to underflow are < 2^-96 k each, relative to the largest). */
    int can_direct = ip >= 2 && ip <= DIRECT_P_MAX; /* before the large-p skip, which starts at p = 16 here */
    float lo = can_direct ? (float)exp2((log2((double)k) - 96.0) / (double)ip) : 0.0f;
    float hi = can_direct ? (float)exp2((120.0 - log2((double)k)) / (double)ip) : 0.0f;
    for (int64_t r0 = n0; r0 < n1; r0 += R) {
        const float *xr[R];
        int64_t rows[R];
        for (int r = 0; r < R; r++) {
            rows[r] = r0 + r < n1 ? r0 + r : n1 - 1;
            xr[r] = x + rows[r] * k;
        }
        for (int64_t c0 = 0; c0 < m; c0 += CV * VW) {
            vec acc[R * CV], inv[R][CV];
            int64_t width = m - c0 < CV * VW ? m - c0 : CV * VW;
            int direct = can_direct;
            for (int r = 0; r < R; r++) {
                float s[CV * VW];
                for (int j = 0; j < CV * VW; j++) {
                    float peak = j < width ? y[rows[r] * m + c0 + j] : 1.0f;
                    s[j] = peak > 0 ? 1.0f / peak : 1.0f;
                    direct &= j >= width || (peak >= lo && peak <= hi);
                }
                for (int v = 0; v < CV; v++) { inv[r][v] = V_LOAD(s + v * VW); acc[r * CV + v] = V_ZERO(); }
            }
            const float *wp = wt + c0 * k;
            if (direct) NAME(lp_direct_tile)(xr, k, wp, ip, acc);
            int scaled = !direct && ip > DIRECT_P_MAX;
            if (scaled) NAME(lp_scaled_tile)(xr, k, wp, ip, inv, tau, acc);
            for (int64_t k0 = 0; k0 < k && !direct && !scaled; k0 += KB) {
                int64_t kb = k - k0 < KB ? k - k0 : KB, kept = 0;
                for (int64_t kk = k0; kk < k0 + kb; kk++, wp += CV * VW) {
                    vec w[CV];
                    for (int v = 0; v < CV; v++) w[v] = V_LOAD(wp + v * VW);
                    for (int r = 0; r < R; r++) {
                        vec xb = V_SET1(xr[r][kk]);
                        if (tau > 0.0f) {
                            for (int v = 0; v < CV; v++) {
                                vec t = V_MUL(V_ABS(V_SUB(xb, w[v])), inv[r][v]);
                                if (!VM_ANY(V_GT(t, vtau))) continue;
                                slot[kept] = r * CV + v;
                                ratio[kept++] = t;
                            }
                        } else {
                            for (int v = 0; v < CV; v++) ratio[kept++] = V_MUL(V_ABS(V_SUB(xb, w[v])), inv[r][v]);
                        }
                    }
                }
                NAME(power_block)(ratio, powered, kept, p, ip);
                if (tau > 0.0f) {
                    for (int64_t i = 0; i < kept; i++) acc[slot[i]] = V_ADD(acc[slot[i]], powered[i]);
                } else {
                    for (int64_t i = 0; i < kept; i += R * CV)
                        for (int a = 0; a < R * CV; a++) acc[a] = V_ADD(acc[a], powered[i + a]);
                }
            }
            for (int r = 0; r < R && r0 + r < n1; r++) {
                float sums[CV * VW];
                for (int v = 0; v < CV; v++) V_STORE(sums + v * VW, acc[r * CV + v]);
                for (int64_t j = 0; j < width; j++) {
                    float *o = y + (r0 + r) * m + c0 + j;
                    float norm = (direct ? 1.0f : *o) * powf(sums[j], (float)(1.0 / p));
                    *o = norm > *o ? norm : *o; /* ||.||_p >= ||.||_inf despite the rounded 1/peak */
                }
            }
        }
    }
}

#define GB 128 /* vectors of k per power block in the backward pass */

/* gx[o] += c, gw[o] -= c with c = g t |t|^(P-2) = g sign(t) |t|^(P-1), t = (x - w) / y, in registers. */
#define DIRECT_GRAD(P)                                                                              \
    for (int64_t o = 0; o < kv_end; o += VW) {                                                     \
        vec t = V_MUL(V_SUB(V_LOAD(xr + o), V_LOAD(wr + o)), vinv);                                 \
        vec c = V_MUL(vcoef, V_MUL(t, NAME(ipow)((P) % 2 ? V_ABS(t) : t, (P) - 2)));              \
        if (gxr) V_STORE(gxr + o, V_ADD(V_LOAD(gxr + o), c));                                       \
        if (gwr) V_STORE(gwr + o, V_SUB(V_LOAD(gwr + o), c));                                       \
    }

/* gx[o..] += c, gw[o..] -= c over N vectors from o, c = g t |t|^(p-2), t = (x - w) / y, for a run-time integer
 * p - 2 >= 1; a group whose ratios all lie at or below tau (> 0) has coefficients below 2^-40 |g| and is left out. */
#define SCALED_GRAD(N)                                                                              \
    {                                                                                               \
        vec t[N], a[N], top = V_ZERO();                                                             \
        for (int u = 0; u < (N); u++) {                                                             \
            t[u] = V_MUL(V_SUB(V_LOAD(xr + o + u * VW), V_LOAD(wr + o + u * VW)), vinv);            \
            a[u] = V_ABS(t[u]);                                                                     \
            top = V_MAX(top, a[u]);                                                                 \
        }                                                                                           \
        if (VM_ANY(V_GT(top, vtau))) {                                                              \
            NAME(vpow_bits)(a, (N), ip1 - 1);                                                       \
            for (int u = 0; u < (N); u++) {                                                         \
                vec c = V_MUL(vcoef, V_MUL(t[u], a[u]));                                            \
                if (gxr) V_STORE(gxr + o + u * VW, V_ADD(V_LOAD(gxr + o + u * VW), c));             \
                if (gwr) V_STORE(gwr + o + u * VW, V_SUB(V_LOAD(gwr + o + u * VW), c));             \
            }                                                                                       \
        }                                                                                           \
    }

/* Finite p backward over one tile of rows [i0, i1) of x and [j0, j1) of w: the coefficient
 * c = g[i, j] (|x_i - w_j| / y[i, j])^(p-1) sign(x_i - w_j) is computed once, added to gx[i] and
 * subtracted from gw[j] (either may be NULL). Concurrent tiles write disjoint rows: no races.
 * With tau > 0 (large p), vectors of k whose ratios all lie at or below tau are skipped: their
 * coefficients are below |g| tau^(p-1) (the caller picks 2^-40 |g|), far under float32 rounding. */
TARGET static void NAME(lp_grad_tile)(const float *x, const float *w, int64_t k, int64_t m, const float *g,
                                      const float *y, double p, int64_t ip1, float tau, int64_t i0, int64_t i1,
                                      int64_t j0, int64_t j1, float *gx, float *gw) {
    int64_t kv_end = k - k % VW;
    vec ratio[GB], powered[GB];
    int32_t live[GB];
    vec vtau = V_SET1(tau);
    int direct = tau <= 0.0f && ip1 >= 1 && ip1 < DIRECT_P_MAX; /* integer p = ip1 + 1 <= DIRECT_P_MAX */
    int scaled = ip1 >= DIRECT_P_MAX; /* larger integer p, in registers with a run-time exponent */
    for (int64_t i = i0; i < i1; i++) {
        const float *xr = x + i * k;
        float *gxr = gx ? gx + i * k : NULL;
        for (int64_t j = j0; j < j1; j++) {
            float gy = g[i * m + j], yy = y[i * m + j];
            if (gy == 0.0f || !(yy > 0.0f)) continue;
            const float *wr = w + j * k;
            float *gwr = gw ? gw + j * k : NULL;
            float inv = 1.0f / yy;
            vec vinv = V_SET1(inv), vcoef = V_SET1(gy);
            if (direct) FOR_DIRECT_P(DIRECT_GRAD, ip1 + 1) /* no power blocks; a constant exponent per loop */
            if (scaled) {
                int64_t o = 0;
                for (; o + 4 * VW <= kv_end; o += 4 * VW) SCALED_GRAD(4)
                for (; o < kv_end; o += VW) SCALED_GRAD(1)
            }
            for (int64_t k0 = 0; k0 < kv_end && !direct && !scaled; k0 += GB * VW) {
                int64_t count = (kv_end - k0) / VW < GB ? (kv_end - k0) / VW : GB, kept = 0;
                if (tau > 0.0f) {
                    for (int64_t c = 0; c < count; c++) {
                        vec r = V_MUL(V_ABS(V_SUB(V_LOAD(xr + k0 + c * VW), V_LOAD(wr + k0 + c * VW))), vinv);
                        if (!VM_ANY(V_GT(r, vtau))) continue;
                        live[kept] = (int32_t)c;
                        ratio[kept++] = r;
                    }
                } else {
                    for (; kept < count; kept++) {
                        live[kept] = (int32_t)kept;
                        ratio[kept] = V_MUL(V_ABS(V_SUB(V_LOAD(xr + k0 + kept * VW), V_LOAD(wr + k0 + kept * VW))), vinv);
                    }
                }
                NAME(power_block)(ratio, powered, kept, p - 1.0, ip1);
                for (int64_t c = 0; c < kept; c++) {
                    int64_t o = k0 + (int64_t)live[c] * VW;
                    vec sgn = V_SIGN(V_SUB(V_LOAD(xr + o), V_LOAD(wr + o)));
                    vec contrib = V_MUL(vcoef, V_MUL(powered[c], sgn));
                    if (gxr) V_STORE(gxr + o, V_ADD(V_LOAD(gxr + o), contrib));
                    if (gwr) V_STORE(gwr + o, V_SUB(V_LOAD(gwr + o), contrib));
                }
            }
            for (int64_t kk = kv_end; kk < k; kk++) {
                float d = xr[kk] - wr[kk];
                if (fabsf(d) * inv <= tau && tau > 0.0f) continue;
                float contrib = gy * (powf(fabsf(d) * inv, (float)(p - 1.0)) * (float)((d > 0) - (d < 0)));
                if (gxr) gxr[kk] += contrib;
                if (gwr) gwr[kk] -= contrib;
            }
        }
    }
}

#undef KB
#undef RD
#undef GB
#undef DIRECT_GRAD
#undef SCALED_GRAD
#undef FOR_DIRECT_P
#undef DIRECT_P_MAX
#undef R
#undef NAME
