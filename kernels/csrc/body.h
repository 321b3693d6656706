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

/* The R rows of x a tile from row r0 reads, rows past n1 clamped to the last valid one (never stored). */
TARGET static inline void NAME(tile_rows)(const float *x, int64_t k, int64_t r0, int64_t n1, const float **xr,
                                          int64_t *rows) {
    for (int r = 0; r < R; r++) {
        rows[r] = r0 + r < n1 ? r0 + r : n1 - 1;
        xr[r] = x + rows[r] * k;
    }
}

#define LINF_PANEL_BYTES (512 << 10) /* a panel ([K, T] floats) above this is read in blocks of k (linf_rows) */

/* p = inf: y[n, m] = max_k |x[n, k] - w[m, k]| and (if idx) the first arg-max k. Where a panel outgrows
 * LINF_PANEL_BYTES (the papers' k = 3072, 5120: each 4-row tile streamed 0.8-1.3 MB of it from L2 or beyond), k
 * runs in blocks of 32 KiB of panel, each over every panel and row tile, the tiles resuming from the maxima and
 * arg-maxima stored by the block before (a later block takes an index only where it is strictly larger: the
 * first arg-max is kept). */
TARGET static void NAME(linf_rows)(const float *x, int64_t k, const float *wt, int64_t mp, int64_t m,
                                   int64_t n0, int64_t n1, float *y, int32_t *idx) {
    (void)mp;
    int64_t kb = (int64_t)k * CV * VW * 4 > LINF_PANEL_BYTES ? (32 << 10) / (CV * VW * 4) : k;
    for (int64_t k0 = 0; k0 < k; k0 += kb) {
        int64_t k1 = k - k0 < kb ? k : k0 + kb;
        for (int64_t c0 = 0; c0 < m; c0 += CV * VW) {
            int64_t width = m - c0 < CV * VW ? m - c0 : CV * VW;
            for (int64_t r0 = n0; r0 < n1; r0 += R) {
                const float *xr[R];
                int64_t rows[R];
                NAME(tile_rows)(x, k, r0, n1, xr, rows);
                vec acc[R][CV];
                ivec arg[R][CV];
                for (int r = 0; r < R; r++) {
                    if (k0 == 0) {
                        for (int v = 0; v < CV; v++) { acc[r][v] = V_ZERO(); arg[r][v] = IV_SET1(0); }
                        continue;
                    }
                    float vals[CV * VW];
                    int32_t args[CV * VW];
                    for (int64_t j = 0; j < CV * VW; j++) {
                        vals[j] = j < width ? y[rows[r] * m + c0 + j] : 0.0f;
                        args[j] = j < width && idx ? idx[rows[r] * m + c0 + j] : 0;
                    }
                    for (int v = 0; v < CV; v++) { acc[r][v] = V_LOAD(vals + v * VW); arg[r][v] = IV_LOAD(args + v * VW); }
                }
                const float *wp = wt + c0 * k + k0 * CV * VW;
                if (idx) {
                    for (int64_t kk = k0; kk < k1; kk++, wp += CV * VW) {
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
                    for (int64_t kk = k0; kk < k1; kk++, wp += CV * VW) {
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
                    for (int64_t j = 0; j < width; j++) {
                        y[(r0 + r) * m + c0 + j] = vals[j];
                        if (idx) idx[(r0 + r) * m + c0 + j] = args[j];
                    }
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

#define VPOW_N (2 * CV > 4 ? 2 * CV : 4) /* most vectors per vpow_general and vpow_bits call */

/* t[u] <- t[u]^e for n vectors, t in [0, 1] and real e >= 0, as 2^(e log2 t), each step over all n vectors
 * in turn (independent work side by side: the chains are long). log2 t = E + log2 c_i + log2(1 + r): E
 * from the exponent bits, c_i from the mantissa's top bits (tables LOG2_INV_C, LOG2_C), r = m / c_i - 1
 * in [-1/8, 1/9] and log2(1 + r) by a degree-6 polynomial (abs. error 1.4e-9); 2^y = 2^round(y) 2^f by a
 * degree-5 polynomial on [-1/2, 1/2] (rel. error 1.1e-7, exact at f = 0); near-minimax fits printed by
 * kernels/csrc/pow_coefficients.py. Relative error within 3e-7 + 1.5e-7 |e log2 t| (the second term the
 * float32 rounding of the exponent; tests/test_native_kernels.py checks it per element). y is clamped at -126: t^e below 2^-126 comes out as about 2^-126, and t below
 * 2^-126 (or 0) as a number in [2^-127, 2^-126) raised to e, harmless in sums that hold a term equal to 1
 * and in gradients, whose coefficients are multiplied by sign(x - w). */
TARGET static inline void NAME(vpow_general)(vec *t, int n, vec e) {
    vec r[VPOW_N], q[VPOW_N], y[VPOW_N], expo[VPOW_N], whole[VPOW_N];
    for (int u = 0; u < n; u++) {
        ivec bits = V_AS_I(t[u]);
        expo[u] = V_CVT_I(I_SRA(I_ADD(bits, I_SET1(0x400000 - 0x3f800000)), 23)); /* + 1 where m >= 1.5 */
        ivec quarter = I_SRL(bits, 21); /* its low 2 bits are the mantissa's top 2 */
        vec mant = I_AS_V(I_OR(I_AND(bits, I_SET1(0x7fffff)), I_SET1(0x3f800000)));
        r[u] = V_FMA(mant, V_TABLE4(LOG2_INV_C, quarter), V_SET1(-1.0f));
        y[u] = V_TABLE4(LOG2_C, quarter);
    }
    for (int u = 0; u < n; u++) q[u] = V_FMA(r[u], V_SET1(-0.254521579f), V_SET1(0.293489724f));
    for (int u = 0; u < n; u++) q[u] = V_FMA(r[u], q[u], V_SET1(-0.360485941f));
    for (int u = 0; u < n; u++) q[u] = V_FMA(r[u], q[u], V_SET1(0.480864167f));
    for (int u = 0; u < n; u++) q[u] = V_FMA(r[u], q[u], V_SET1(-0.721348107f));
    for (int u = 0; u < n; u++) q[u] = V_FMA(r[u], q[u], V_SET1(1.44269514f));
    for (int u = 0; u < n; u++) y[u] = V_MAX(V_MUL(e, V_ADD(expo[u], V_FMA(r[u], q[u], y[u]))), V_SET1(-126.0f));
    for (int u = 0; u < n; u++) { whole[u] = V_ROUND(y[u]); y[u] = V_SUB(y[u], whole[u]); }
    for (int u = 0; u < n; u++) q[u] = V_FMA(y[u], V_SET1(0.00132186746f), V_SET1(0.00967170298f));
    for (int u = 0; u < n; u++) q[u] = V_FMA(y[u], q[u], V_SET1(0.0555089302f));
    for (int u = 0; u < n; u++) q[u] = V_FMA(y[u], q[u], V_SET1(0.24022238f));
    for (int u = 0; u < n; u++) q[u] = V_FMA(y[u], q[u], V_SET1(0.693146884f));
    for (int u = 0; u < n; u++) q[u] = V_FMA(y[u], q[u], V_SET1(1.0f));
    for (int u = 0; u < n; u++) t[u] = I_AS_V(I_ADD(V_AS_I(q[u]), I_SLL(V_TO_I(whole[u]), 23)));
}

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
 * gets the plain sum of |x - w|^p over k (no rescaling by the peaks: no term overflows, and the terms
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
    vec r[VPOW_N];
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

/* The entries of this instruction set's 2^(f E) table, for plan_split_power (linfdist_native.c). */
static const int NAME(e_entries) = E_ENTRIES;

/* t[u] <- t[u]^e for n vectors, t in [0, 1], for the split exponent e = (n' + f) 2^j of the caller's plan (split_power,
 * linfdist_native.c): t^n' by the bits of n', times t^f = 2^(f E) m^f with t = 2^E m, m in [1, 2): 2^(f E) from
 * the plan's table by the low bits of the biased exponent (E_ENTRIES entries, E from 1 - E_ENTRIES to 0; a
 * smaller t picks a factor <= 1 of t^n' < 2^-(E_ENTRIES - 1) n', under 2^-44 with the planner's n' >= 3 or 6), m^f
 * by the plan's degree-6 polynomial in m - 3/2 (relative error 2.5e-7); then j squarings. No log2 or exp2:
 * half the work of vpow_general where n' is small. */
TARGET static inline void NAME(vpow_split)(vec *t, int n, const split_power *sp) {
    vec frac[VPOW_N];
    for (int u = 0; u < n; u++) {
        ivec bits = V_AS_I(t[u]);
        vec s = V_SUB(I_AS_V(I_OR(I_AND(bits, I_SET1(0x7fffff)), I_SET1(0x3f800000))), V_SET1(1.5f));
        vec q = V_FMA(s, V_SET1(sp->c[6]), V_SET1(sp->c[5]));
        q = V_FMA(s, q, V_SET1(sp->c[4]));
        q = V_FMA(s, q, V_SET1(sp->c[3]));
        q = V_FMA(s, q, V_SET1(sp->c[2]));
        q = V_FMA(s, q, V_SET1(sp->c[1]));
        q = V_FMA(s, q, V_SET1(sp->c[0]));
        frac[u] = V_MUL(q, V_TABLE_E(sp->table, I_SRL(bits, 23)));
    }
    NAME(vpow_bits)(t, n, sp->n);
    for (int u = 0; u < n; u++) t[u] = V_MUL(t[u], frac[u]);
    for (int i = 0; i < sp->j; i++)
        for (int u = 0; u < n; u++) t[u] = V_MUL(t[u], t[u]);
}

/* t[u] <- t[u]^p for n ratios: integer p (ip >= 1) by repeated squaring, other p by vpow_split where the caller
 * planned it (sp), else by vpow_general; 0 (t untouched) where tau > 0 and every ratio lies at or below it:
 * terms below 2^-40 of the sum's largest. */
TARGET static inline int NAME(power_unless_negligible)(vec *t, int n, int64_t ip, const split_power *sp, vec vp,
                                                       float tau) {
    if (tau > 0.0f) {
        vec top = t[0];
        for (int u = 1; u < n; u++) top = V_MAX(top, t[u]);
        if (!VM_ANY(V_GT(top, V_SET1(tau)))) return 0;
    }
    if (ip) NAME(vpow_bits)(t, n, ip);
    else if (sp) NAME(vpow_split)(t, n, sp);
    else NAME(vpow_general)(t, n, vp);
    return 1;
}

/* Tiles not summed directly: acc[r * CV + v] = sum_k (|x - w| inv[r][v])^p in registers, one row at a time (the
 * inverse peaks hold the registers other rows' sums would need), two k steps per power call (more independent
 * work in flight); with tau > 0 (large p), a pair of steps whose terms are all negligible is left out. */
TARGET static void NAME(lp_scaled_tile)(const float **xr, int64_t k, const float *wp, double p, int64_t ip,
                                        const split_power *sp, vec inv[R][CV], float tau, vec *acc) {
    vec vp = V_SET1((float)p);
    for (int r = 0; r < R; r++) {
        vec a[CV], iv[CV];
        for (int v = 0; v < CV; v++) { a[v] = V_ZERO(); iv[v] = inv[r][v]; }
        const float *wq = wp;
        int64_t kk = 0;
        for (; kk + 2 <= k; kk += 2, wq += 2 * CV * VW) {
            vec t[2 * CV];
            for (int h = 0; h < 2; h++) {
                vec xb = V_SET1(xr[r][kk + h]);
                for (int v = 0; v < CV; v++)
                    t[h * CV + v] = V_MUL(V_ABS(V_SUB(xb, V_LOAD(wq + (h * CV + v) * VW))), iv[v]);
            }
            if (!NAME(power_unless_negligible)(t, 2 * CV, ip, sp, vp, tau)) continue;
            for (int v = 0; v < CV; v++) a[v] = V_ADD(a[v], V_ADD(t[v], t[CV + v]));
        }
        if (kk < k) { /* odd k: the last step alone */
            vec xb = V_SET1(xr[r][kk]), t[CV];
            for (int v = 0; v < CV; v++) t[v] = V_MUL(V_ABS(V_SUB(xb, V_LOAD(wq + v * VW))), iv[v]);
            if (NAME(power_unless_negligible)(t, CV, ip, sp, vp, tau))
                for (int v = 0; v < CV; v++) a[v] = V_ADD(a[v], t[v]);
        }
        for (int v = 0; v < CV; v++) acc[r * CV + v] = a[v];
    }
}

/* Finite p, second pass: y[n, m] = peak * (sum_k (|x - w| / peak)^p)^(1/p) with peak = y[n, m] on entry.
 * With tau > 0 (large p), terms below 2^-40 (the caller's tau) are left out, while the sum holds a term
 * equal to 1. For integer p up to DIRECT_P_MAX, tiles whose peaks all lie in a safe range sum |x - w|^p
 * directly in registers (lp_direct_tile); the others go through lp_scaled_tile. */
TARGET static void NAME(lp_rows)(const float *x, int64_t k, const float *wt, int64_t mp, int64_t m, int64_t n0,
                                 int64_t n1, double p, int64_t ip, const split_power *sp, float tau, float *y) {
    (void)mp;
    /* Integer p <= DIRECT_P_MAX sums directly where every peak lies in [lo, hi]: peak^p k stays below 2^120
     * and peak^p above 2^-96 k (so terms lost to underflow are < 2^-96 k each, relative to the largest). */
    int can_direct = ip >= 2 && ip <= DIRECT_P_MAX; /* before the large-p skip, which starts at p = 16 here */
    float lo = can_direct ? (float)exp2((log2((double)k) - 96.0) / (double)ip) : 0.0f;
    float hi = can_direct ? (float)exp2((120.0 - log2((double)k)) / (double)ip) : 0.0f;
    for (int64_t r0 = n0; r0 < n1; r0 += R) {
        const float *xr[R];
        int64_t rows[R];
        NAME(tile_rows)(x, k, r0, n1, xr, rows);
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
                for (int v = 0; v < CV; v++) inv[r][v] = V_LOAD(s + v * VW);
            }
            const float *wp = wt + c0 * k;
            if (direct) NAME(lp_direct_tile)(xr, k, wp, ip, acc);
            else NAME(lp_scaled_tile)(xr, k, wp, p, ip, sp, inv, tau, acc);
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

/* gx[o] += c, gw[o] -= c with c = g t |t|^(P-2) = g sign(t) |t|^(P-1), t = (x - w) / y, in registers. */
#define DIRECT_GRAD(P)                                                                              \
    for (int64_t o = 0; o < kv_end; o += VW) {                                                     \
        vec t = V_MUL(V_SUB(V_LOAD(xr + o), V_LOAD(wr + o)), vinv);                                 \
        vec c = V_MUL(vcoef, V_MUL(t, NAME(ipow)((P) % 2 ? V_ABS(t) : t, (P) - 2)));              \
        if (gxr) V_STORE(gxr + o, V_ADD(V_LOAD(gxr + o), c));                                       \
        if (gwr) V_STORE(gwr + o, V_SUB(V_LOAD(gwr + o), c));                                       \
    }

/* gx[o..] += c, gw[o..] -= c over N vectors from o, c = g sign(t) |t|^(p-1), t = (x - w) / y: for a run-time
 * integer p - 2 >= 1 (bits_p1 = p - 1) as g t |t|^(p-2) by repeated squaring, for other p by vpow_split with
 * t's sign bit where the caller planned it (sp), else by vpow_general (bits_p1 = 0). A group whose ratios all lie at or below tau (> 0) has coefficients below 2^-40 |g| and is
 * left out; with tau = 0 only all-zero groups are (their coefficients are 0). */
#define SCALED_GRAD(N)                                                                              \
    {                                                                                               \
        vec t[N], a[N], top = V_ZERO();                                                             \
        for (int u = 0; u < (N); u++) {                                                             \
            t[u] = V_MUL(V_SUB(V_LOAD(xr + o + u * VW), V_LOAD(wr + o + u * VW)), vinv);            \
            a[u] = V_ABS(t[u]);                                                                     \
            top = V_MAX(top, a[u]);                                                                 \
        }                                                                                           \
        if (VM_ANY(V_GT(top, vtau))) {                                                              \
            if (bits_p1) {                                                                          \
                NAME(vpow_bits)(a, (N), bits_p1 - 1);                                               \
                for (int u = 0; u < (N); u++) a[u] = V_MUL(t[u], a[u]);                             \
            } else if (sp) {                                                                        \
                NAME(vpow_split)(a, (N), sp);                                                       \
                for (int u = 0; u < (N); u++)                                                       \
                    a[u] = I_AS_V(I_OR(V_AS_I(a[u]), I_AND(V_AS_I(t[u]), I_SET1((int32_t)0x80000000)))); \
            } else {                                                                                \
                NAME(vpow_general)(a, (N), vp1);                                                    \
                for (int u = 0; u < (N); u++) a[u] = V_MUL(a[u], V_SIGN(t[u]));                     \
            }                                                                                       \
            for (int u = 0; u < (N); u++) {                                                         \
                vec c = V_MUL(vcoef, a[u]);                                                         \
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
                                      const float *y, double p, int64_t ip1, const split_power *sp, float tau,
                                      int64_t i0, int64_t i1,
                                      int64_t j0, int64_t j1, float *gx, float *gw) {
    int64_t kv_end = k - k % VW;
    vec vtau = V_SET1(tau), vp1 = V_SET1((float)(p - 1.0));
    int direct = tau <= 0.0f && ip1 >= 1 && ip1 < DIRECT_P_MAX; /* integer p = ip1 + 1 <= DIRECT_P_MAX */
    int64_t bits_p1 = ip1 >= 2 ? ip1 : 0; /* SCALED_GRAD's integer p - 1; p = 1 takes vpow_general (exponent 0) */
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
            if (direct) FOR_DIRECT_P(DIRECT_GRAD, ip1 + 1) /* a constant exponent per loop */
            else {
                int64_t o = 0;
                for (; o + 4 * VW <= kv_end; o += 4 * VW) SCALED_GRAD(4)
                for (; o < kv_end; o += VW) SCALED_GRAD(1)
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

#undef RD
#undef VPOW_N
#undef LINF_PANEL_BYTES
#undef DIRECT_GRAD
#undef SCALED_GRAD
#undef FOR_DIRECT_P
#undef DIRECT_P_MAX
#undef R
#undef NAME
