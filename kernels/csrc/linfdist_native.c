/* linfdist native CPU kernels: l-inf / lp distance layers in float32, plain C ABI.
 *
 * One source compiled without -march flags: the kernels in body.h are instantiated for
 * AVX-512, AVX2+FMA and portable scalar code through function target attributes, and the
 * instruction set is picked at run time (ld_best_isa; LINFDIST_NATIVE_ISA=scalar|avx2|avx512
 * forces one). Work is split over rows between pthreads; callers (ctypes) release the GIL. */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LD_X86 1
#endif

enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

/* log2 of a mantissa m in [1, 2) for the power kernels (body.h, vpow_general): the top two mantissa bits
 * pick the quarter i of [1, 2); m in the upper half is taken as m / 2 in [3/4, 1) with the exponent one
 * higher. LOG2_INV_C[i] = 1 / c_i rounded to float for c_i the middle of the quarter (of its half, for
 * i >= 2), except c_3 = 1, so that log2 t = t - 1 times a polynomial for t in [7/8, 1) (no cancellation
 * where the large-p terms live); LOG2_C[i] = -log2(LOG2_INV_C[i]) in double, rounded, less 1 for i >= 2.
 * Repeated four times: the in-lane permutes pick among four lanes of each 128 bits. Printed by
 * kernels/csrc/pow_coefficients.py. */
#define LOG2_INV_C_ 0.888888896f, 0.727272749f, 0.615384638f, 0.5f
#define LOG2_C_ 0.169924989f, 0.459431589f, -0.299560338f, 0.0f
static const float LOG2_INV_C[16] = {LOG2_INV_C_, LOG2_INV_C_, LOG2_INV_C_, LOG2_INV_C_};
static const float LOG2_C[16] = {LOG2_C_, LOG2_C_, LOG2_C_, LOG2_C_};

/* A non-integer exponent e >= 3 as (n + f) 2^j for body.h's vpow_split (planned by plan_split_power): table[i] =
 * 2^(f (i + 1 - E_ENTRIES)) for the ISA's E_ENTRIES, c the degree-6 polynomial of m^f in s = m - 3/2. */
typedef struct { int64_t n; int j; float table[16]; float c[7]; } split_power;

/* ---- the kernels of body.h, once per instruction set (isa_*.h define its vector operations) ---- */
#include "isa_scalar.h"
#include "body.h"
#include "undef_isa.h"

#ifdef LD_X86
#include "isa_avx2.h"
#include "body.h"
#include "undef_isa.h"

#include "isa_avx512.h"
#include "body.h"
#endif

/* ---- instruction set ---- */

static int supported(int isa) {
    if (isa == ISA_SCALAR) return 1;
#ifdef LD_X86
    __builtin_cpu_init();
    if (isa == ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == ISA_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

/* 1 if this CPU can run the instruction set (0 scalar, 1 AVX2, 2 AVX-512), else 0. */
int ld_isa_supported(int isa) { return supported(isa); }

/* The widest supported instruction set. */
int ld_best_isa(void) {
    for (int isa = ISA_AVX512; isa > ISA_SCALAR; isa--)
        if (supported(isa)) return isa;
    return ISA_SCALAR;
}

/* Tile width in outputs (W^T must be padded to a multiple of it). */
int64_t ld_tile_width(int isa) { return isa == ISA_AVX512 ? 64 : isa == ISA_AVX2 ? 24 : 16; }

/* ---- threads: split [0, total) into contiguous ranges ---- */

typedef void (*range_fn)(void *args, int64_t begin, int64_t end);
typedef struct { range_fn fn; void *args; int64_t begin, end; } job;

static void *run_job(void *p) {
    job *j = (job *)p;
    j->fn(j->args, j->begin, j->end);
    return NULL;
}

static void parallel(range_fn fn, void *args, int64_t total, int threads, int64_t grain) {
    if (total <= 0) return;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    int64_t pieces = (total + grain - 1) / grain;
    if (threads > pieces) threads = (int)pieces;
    int64_t chunk = ((total + threads - 1) / threads + grain - 1) / grain * grain;
    job jobs[64];
    pthread_t ids[64];
    int created[64] = {0}, count = 0;
    for (int64_t b = 0; b < total && count < 64; b += chunk)
        jobs[count++] = (job){fn, args, b, b + chunk < total ? b + chunk : total};
    for (int t = 1; t < count; t++) created[t] = pthread_create(&ids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < count; t++) {
        if (created[t]) pthread_join(ids[t], NULL);
        else run_job(&jobs[t]); /* no thread: do it here */
    }
}

/* ---- entry points ---- */

/* One argument struct per entry point: the range functions below get one through parallel()'s void *. */
typedef struct { const float *x, *wt; int64_t k, mp, m; float *y; int32_t *idx; int isa; } linf_forward_args;
typedef struct {
    const float *l, *u, *wt;
    int64_t k, mp, m;
    float *lo, *hi;
    int32_t *ilo, *ihi;
    int isa;
} interval_args;
typedef struct {
    const float *x, *wt;
    int64_t k, mp, m;
    double p;
    int64_t ip;
    const split_power *sp;
    float tau;
    float *y;
    int isa;
} lp_forward_args;
typedef struct {
    const float *x, *w, *g, *y;
    int64_t n, k, m;
    double p;
    int64_t ip;
    const split_power *sp;
    float tau;
    float *gx, *gw;
    int isa;
} lp_backward_args;
typedef struct { const float *x, *w, *g; const int32_t *idx; int64_t n, k, m; float *grad; } linf_backward_args;

#define DISPATCH(isa, f, ...)                                   \
    do {                                                        \
        if ((isa) == ISA_AVX512) f##_avx512(__VA_ARGS__);       \
        else if ((isa) == ISA_AVX2) f##_avx2(__VA_ARGS__);      \
        else f##_scalar(__VA_ARGS__);                           \
    } while (0)

#ifndef LD_X86
#define linf_rows_avx2 linf_rows_scalar
#define linf_rows_avx512 linf_rows_scalar
#define interval_rows_avx2 interval_rows_scalar
#define interval_rows_avx512 interval_rows_scalar
#define lp_rows_avx2 lp_rows_scalar
#define lp_rows_avx512 lp_rows_scalar
#define lp_grad_tile_avx2 lp_grad_tile_scalar
#define lp_grad_tile_avx512 lp_grad_tile_scalar
#define e_entries_avx2 e_entries_scalar
#define e_entries_avx512 e_entries_scalar
#endif

static int check(int isa, int64_t n, int64_t k, int64_t m) {
    if (!supported(isa)) return -1;
    if (n < 0 || k < 1 || m < 0 || k > INT32_MAX) return -2;
    return 0;
}

/* ---- W packed as panels [mp / T, k, T]: column blocks of W^T, rows of W past m zero ---- */

typedef struct { const float *w; int64_t m, k, sm, sk, tile; float *wt; } pack_args;

static void pack_range(void *a, int64_t b, int64_t e) {
    const pack_args *p = (const pack_args *)a;
    const int64_t t = p->tile, block = 256; /* k in blocks, so a block of the panel stays in L1 */
    for (int64_t panel = b; panel < e; panel++) {
        float *dst = p->wt + panel * p->k * t;
        for (int64_t k0 = 0; k0 < p->k; k0 += block) {
            int64_t k1 = k0 + block < p->k ? k0 + block : p->k;
            for (int64_t j = 0; j < t; j++) {
                int64_t row = panel * t + j;
                if (row >= p->m) { /* padding: no source row (its address would lie past w) */
                    for (int64_t kk = k0; kk < k1; kk++) dst[kk * t + j] = 0.0f;
                    continue;
                }
                const float *src = p->w + row * p->sm;
                for (int64_t kk = k0; kk < k1; kk++) dst[kk * t + j] = src[kk * p->sk];
            }
        }
    }
}

/* Pack w [m, k] (element strides sm, sk) into wt [mp / T, k, T], T = ld_tile_width(isa), mp = m rounded
 * up to T, as the forward kernels take it. Returns 0, or < 0 on bad arguments. */
int ld_pack_panels(const float *w, int64_t m, int64_t k, int64_t sm, int64_t sk, float *wt, int isa, int threads) {
    if (!supported(isa)) return -1;
    if (m < 0 || k < 1) return -2;
    int64_t t = ld_tile_width(isa);
    pack_args args = {w, m, k, sm, sk, t, wt};
    parallel(pack_range, &args, (m + t - 1) / t, threads, 1);
    return 0;
}

static void linf_range(void *a, int64_t b, int64_t e) {
    linf_forward_args *c = (linf_forward_args *)a;
    DISPATCH(c->isa, linf_rows, c->x, c->k, c->wt, c->mp, c->m, b, e, c->y, c->idx);
}

/* y[n, m] = max_k |x[n, k] - w[m, k]| for x [n, k] and W packed as panels [mp / T, k, T] (T =
 * ld_tile_width(isa), rows of W past m zero); idx (nullable) gets the first arg-max k.
 * Returns 0, or < 0 on bad arguments. */
int ld_linf_forward(const float *x, int64_t n, int64_t k, const float *wt, int64_t mp, int64_t m, float *y,
                    int32_t *idx, int isa, int threads) {
    int status = check(isa, n, k, m);
    if (status || mp % ld_tile_width(isa) || mp < m) return status ? status : -3;
    linf_forward_args c = {.x = x, .wt = wt, .k = k, .mp = mp, .m = m, .y = y, .idx = idx, .isa = isa};
    parallel(linf_range, &c, n, threads, 4);
    return 0;
}

static void interval_range(void *a, int64_t b, int64_t e) {
    interval_args *c = (interval_args *)a;
    DISPATCH(c->isa, interval_rows, c->l, c->u, c->k, c->wt, c->mp, c->m, b, e, c->lo, c->hi, c->ilo, c->ihi);
}

/* Bounds of max_k |x_k - w[m, k]| over the box l <= x <= u: lo, hi [n, m] and their first arg-max k
 * (ilo, ihi nullable together). */
int ld_interval_linf(const float *l, const float *u, int64_t n, int64_t k, const float *wt, int64_t mp, int64_t m,
                     float *lo, float *hi, int32_t *ilo, int32_t *ihi, int isa, int threads) {
    int status = check(isa, n, k, m);
    if (status || mp % ld_tile_width(isa) || mp < m) return status ? status : -3;
    interval_args c = {.l = l, .u = u, .wt = wt, .k = k, .mp = mp, .m = m, .lo = lo, .hi = hi, .ilo = ilo,
                       .ihi = ihi, .isa = isa};
    parallel(interval_range, &c, n, threads, 4);
    return 0;
}

/* The ratio r at or below which r^(e - 1) < 2^-40, for e >= 17 (else 0: nothing is skipped). The forward's
 * terms are r^p (e = p + 1), the backward's coefficients r^(p-1) times |g| (e = p). */
static float skip_below(double e) { return e >= 17 ? (float)exp2(-40.0 / (e - 1.0)) : 0.0f; }

static int64_t integer_exponent(double e) { return e >= 1 && e <= 1024 && e == floor(e) ? (int64_t)e : 0; }

/* Multiplies vpow_bits spends on t^n: one squaring per bit below the top, one multiply per further set bit. */
static int chain_cost(int64_t n) {
    int cost = -2;
    for (; n; n >>= 1) cost += 1 + (int)(n & 1);
    return cost;
}

#define SPLIT_MAX_COST 10 /* above this many chain multiplies vpow_general (log2, exp2: ~20 operations) is cheaper */

/* Plans a non-integer exponent e for vpow_split: e = (n + f) 2^j with n = floor(e / 2^j) >= nmin (the table's
 * wrap-around below 2^(1 - entries) then costs under 2^-44 of the largest term) and the fewest multiplies
 * (chain_cost(n) + j; the j squarings multiply the relative error by 2^j <= e / nmin, as the integer chains'
 * errors grow with p). m^f on [1, 2) is interpolated at the 7 Chebyshev points of s in [-1/2, 1/2] (relative
 * error below 2.5e-7 for every f in (0, 1); tests/test_native_kernels.py). Returns 0 where vpow_general is
 * cheaper or e is an integer (the callers' own paths) or below nmin. */
static int plan_split_power(double e, int isa, split_power *sp) {
    int entries = isa == ISA_AVX512 ? e_entries_avx512 : isa == ISA_AVX2 ? e_entries_avx2 : e_entries_scalar;
    int64_t nmin = entries == 16 ? 3 : 6;
    if (!(e >= (double)nmin) || e == floor(e) || e > 1e6) return 0;
    int best_j = -1, best = 1 << 30;
    for (int j = 0; j <= 20 && ldexp(e, -j) >= (double)nmin; j++) {
        int cost = chain_cost((int64_t)floor(ldexp(e, -j))) + j;
        if (cost < best) best = cost, best_j = j;
    }
    if (best > SPLIT_MAX_COST) return 0;
    double scaled = ldexp(e, -best_j), f = scaled - floor(scaled);
    sp->n = (int64_t)floor(scaled);
    sp->j = best_j;
    for (int i = 0; i < 16; i++) sp->table[i] = i < entries ? (float)exp2(f * (double)(i + 1 - entries)) : 1.0f;
    double a[7][8]; /* the Vandermonde system at the Chebyshev points, solved with partial pivoting */
    for (int i = 0; i < 7; i++) {
        double node = 0.5 * cos(3.14159265358979323846 * (2 * i + 1) / 14.0), power = 1.0;
        for (int d = 0; d < 7; d++, power *= node) a[i][d] = power;
        a[i][7] = pow(1.5 + node, f);
    }
    for (int col = 0; col < 7; col++) {
        int pivot = col;
        for (int i = col + 1; i < 7; i++)
            if (fabs(a[i][col]) > fabs(a[pivot][col])) pivot = i;
        for (int d = 0; d < 8; d++) { double swap = a[col][d]; a[col][d] = a[pivot][d]; a[pivot][d] = swap; }
        for (int i = col + 1; i < 7; i++) {
            double factor = a[i][col] / a[col][col];
            for (int d = col; d < 8; d++) a[i][d] -= factor * a[col][d];
        }
    }
    for (int i = 6; i >= 0; i--) {
        double v = a[i][7];
        for (int d = i + 1; d < 7; d++) v -= a[i][d] * (double)sp->c[d];
        sp->c[i] = (float)(v / a[i][i]);
    }
    return 1;
}

/* The finite-p kernels run with subnormal results and operands taken as zero (MXCSR FTZ and DAZ, on the
 * calling thread, restored after): powers of ratios below 1 pass through the subnormal range, where every
 * x86 operation costs a microcode assist (~100 cycles); integer p >= 17 ran 4-30x slower than with the
 * flush. What is lost is below 2^-126: in the sums, under 2^-30 of the largest term even in the unscaled
 * direct sums (their peaks^p >= 2^-96 k); in the gradients, coefficients below 2^-126 |g|. The p = inf
 * kernels leave the environment alone (they only subtract, compare and take maxima, exactly). */
static unsigned flush_subnormals(void) {
#ifdef LD_X86
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
    return saved;
#else
    return 0;
#endif
}

static void restore_fp(unsigned saved) {
#ifdef LD_X86
    _mm_setcsr(saved);
#else
    (void)saved;
#endif
}

static void lp_range(void *a, int64_t b, int64_t e) {
    lp_forward_args *c = (lp_forward_args *)a;
    DISPATCH(c->isa, linf_rows, c->x, c->k, c->wt, c->mp, c->m, b, e, c->y, NULL);
    unsigned saved = flush_subnormals();
    DISPATCH(c->isa, lp_rows, c->x, c->k, c->wt, c->mp, c->m, b, e, c->p, c->ip, c->sp, c->tau, c->y);
    restore_fp(saved);
}

/* Finite p >= 1: y[n, m] = ||x[n] - w[m]||_p, as peak * (sum_k (|d_k| / peak)^p)^(1/p) (stable for large p). */
int ld_lp_forward(const float *x, int64_t n, int64_t k, const float *wt, int64_t mp, int64_t m, double p, float *y,
                  int isa, int threads) {
    int status = check(isa, n, k, m);
    if (status || mp % ld_tile_width(isa) || mp < m) return status ? status : -3;
    if (!(p >= 1) || isinf(p)) return -4;
    split_power sp;
    lp_forward_args c = {.x = x, .wt = wt, .k = k, .mp = mp, .m = m, .p = p, .ip = integer_exponent(p),
                         .sp = plan_split_power(p, isa, &sp) ? &sp : NULL, .tau = skip_below(p + 1.0), .y = y,
                         .isa = isa};
    parallel(lp_range, &c, n, threads, 4);
    return 0;
}

typedef struct { lp_backward_args *c; int parts, round; } tiles;

/* Tile (part, part + round mod parts) of the parts x parts grid over (rows of x, rows of w). */
static void lp_grad_tile_range(void *a, int64_t b, int64_t e) {
    tiles *t = (tiles *)a;
    lp_backward_args *c = t->c;
    unsigned saved = flush_subnormals();
    for (int64_t part = b; part < e; part++) {
        int64_t other = (part + t->round) % t->parts;
        int64_t i0 = c->n * part / t->parts, i1 = c->n * (part + 1) / t->parts;
        int64_t j0 = c->m * other / t->parts, j1 = c->m * (other + 1) / t->parts;
        DISPATCH(c->isa, lp_grad_tile, c->x, c->w, c->k, c->m, c->g, c->y, c->p, c->ip, c->sp, c->tau, i0, i1, j0, j1, c->gx,
                 c->gw);
    }
    restore_fp(saved);
}

/* One operand's gradient: rows of x (gx) or of w (gw) split between threads, all of the other operand. */
static void lp_grad_x_range(void *a, int64_t b, int64_t e) {
    lp_backward_args *c = (lp_backward_args *)a;
    unsigned saved = flush_subnormals();
    DISPATCH(c->isa, lp_grad_tile, c->x, c->w, c->k, c->m, c->g, c->y, c->p, c->ip, c->sp, c->tau, b, e, 0, c->m, c->gx, NULL);
    restore_fp(saved);
}

static void lp_grad_w_range(void *a, int64_t b, int64_t e) {
    lp_backward_args *c = (lp_backward_args *)a;
    unsigned saved = flush_subnormals();
    DISPATCH(c->isa, lp_grad_tile, c->x, c->w, c->k, c->m, c->g, c->y, c->p, c->ip, c->sp, c->tau, 0, c->n, b, e, NULL, c->gw);
    restore_fp(saved);
}

/* Finite p backward: gx [n, k] and gw [m, k] (zeroed by the caller) from grad g [n, m] and the forward's y;
 * x [n, k] and w [m, k] row-major. With both wanted, the rows of x and of w are cut into T parts each and
 * T rounds run tiles (t, (t + round) mod T) side by side: every coefficient is computed once and no two
 * threads ever write the same rows. With one wanted, its rows are split between threads. */
int ld_lp_backward(const float *x, const float *w, const float *y, const float *g, int64_t n, int64_t k, int64_t m,
                   double p, float *gx, float *gw, int isa, int threads) {
    int status = check(isa, n, k, m);
    if (status) return status;
    if (!(p >= 1) || isinf(p)) return -4;
    split_power sp;
    lp_backward_args c = {.x = x, .w = w, .g = g, .y = y, .n = n, .k = k, .m = m, .p = p,
                          .ip = integer_exponent(p - 1.0), .sp = plan_split_power(p - 1.0, isa, &sp) ? &sp : NULL,
                          .tau = skip_below(p), .gx = gx, .gw = gw, .isa = isa};
    if (gx && gw) {
        int parts = threads < 1 ? 1 : threads > 64 ? 64 : threads;
        if (parts > n) parts = (int)(n > 0 ? n : 1);
        if (parts > m) parts = (int)(m > 0 ? m : 1);
        for (int round = 0; round < parts; round++) {
            tiles t = {&c, parts, round};
            parallel(lp_grad_tile_range, &t, parts, parts, 1);
        }
        return 0;
    }
    if (gx) parallel(lp_grad_x_range, &c, n, threads, 1);
    if (gw) parallel(lp_grad_w_range, &c, m, threads, 1);
    return 0;
}

static float sign_of(float d) { return (float)((d > 0) - (d < 0)); }

static void linf_grad_x_range(void *a, int64_t b, int64_t e) {
    linf_backward_args *c = (linf_backward_args *)a;
    for (int64_t i = b; i < e; i++)
        for (int64_t j = 0; j < c->m; j++) {
            int64_t kk = c->idx[i * c->m + j];
            c->grad[i * c->k + kk] += c->g[i * c->m + j] * sign_of(c->x[i * c->k + kk] - c->w[j * c->k + kk]);
        }
}

static void linf_grad_w_range(void *a, int64_t b, int64_t e) {
    linf_backward_args *c = (linf_backward_args *)a;
    for (int64_t j = b; j < e; j++)
        for (int64_t i = 0; i < c->n; i++) {
            int64_t kk = c->idx[i * c->m + j];
            c->grad[j * c->k + kk] += -(c->g[i * c->m + j] * sign_of(c->x[i * c->k + kk] - c->w[j * c->k + kk]));
        }
}

/* p = inf backward through the arg-max index: gx [n, k] += g * sign(x - w) at k*, gw [m, k] -= the same,
 * each summed in ascending order (m for gx, n for gw) as torch's CPU scatter_add does. gx/gw zeroed by the
 * caller, either may be NULL. */
int ld_linf_backward(const float *x, const float *w, const int32_t *idx, const float *g, int64_t n, int64_t k,
                     int64_t m, float *gx, float *gw, int threads) {
    int status = check(ISA_SCALAR, n, k, m);
    if (status) return status;
    linf_backward_args c = {.x = x, .w = w, .g = g, .idx = idx, .n = n, .k = k, .m = m};
    if (gx) { c.grad = gx; parallel(linf_grad_x_range, &c, n, threads, 16); }
    if (gw) { c.grad = gw; parallel(linf_grad_w_range, &c, m, threads, 16); }
    return 0;
}
