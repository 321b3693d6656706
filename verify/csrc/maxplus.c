/* The verifier's own float64 max-plus kernel (no linfdist kernel code, no torch):
 *   above[n, m] = max_k (a[n, k] - w[m, k]),   below[n, m] = max_k (w[m, k] - a[n, k]).
 * Each difference is one IEEE subtraction and max is exact, so the result equals numpy's
 * max over the same differences whatever the order. W comes transposed ([k, m], row-major) so
 * the inner loop runs over m: independent lanes, vectorised by the compiler without any
 * reassociation. Rows of a are split between pthreads. Built by setup.py as an optional extension
 * (verify/maxplus.py falls back to numpy without it). */

#include <pthread.h>
#include <stdint.h>

typedef struct {
    const double *a, *wt;
    int64_t n0, n1, k, m;
    double *above, *below;
} job;

#define R 4    /* rows of a per pass over W: each loaded W value serves R rows */
#define CB 256 /* columns per block of the portable version: its 2 R CB accumulators stay in L1 */

/* below = -min_k (a - w): the same value as max_k (w - a), since w - a rounds to -(a - w) exactly. */
static void store(const job *j, int64_t i0, int rr, int64_t c0, int64_t cw, const double *hi, const double *mn,
                  int64_t stride) {
    for (int r = 0; r < rr; r++) {
        double *above = j->above + (i0 + r) * j->m + c0, *below = j->below + (i0 + r) * j->m + c0;
        for (int64_t c = 0; c < cw; c++) { above[c] = hi[r * stride + c]; below[c] = -mn[r * stride + c]; }
    }
}

/* Portable: R rows at a time over blocks of the columns from c_start, accumulators in L1. */
static void rows_portable(const job *j, int64_t i0, int rr, const double **x, int64_t c_start) {
    double hi[R * CB], mn[R * CB];
    for (int64_t c0 = c_start; c0 < j->m; c0 += CB) {
        int64_t cw = j->m - c0 < CB ? j->m - c0 : CB;
        const double *w0 = j->wt + c0;
        for (int r = 0; r < R; r++)
            for (int64_t c = 0; c < cw; c++) hi[r * CB + c] = mn[r * CB + c] = x[r][0] - w0[c];
        for (int64_t kk = 1; kk < j->k; kk++) {
            const double *w = w0 + kk * j->m;
            for (int r = 0; r < R; r++) {
                const double xv = x[r][kk];
                double *h = hi + r * CB, *l = mn + r * CB;
                for (int64_t c = 0; c < cw; c++) {
                    double d = xv - w[c];
                    h[c] = d > h[c] ? d : h[c];
                    l[c] = d < l[c] ? d : l[c];
                }
            }
        }
        store(j, i0, rr, c0, cw, hi, mn, CB);
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
/* An R x 2V tile (2 vectors of V lanes per row) of maxima and minima in registers over all of k; a
 * column tail goes to the portable code. max/min of two numbers is exact in any instruction set.
 * Instantiated below for AVX-512 (V = 8) and AVX2 (V = 4): VT is the vector type, OP(f) names the
 * intrinsic _mm512_f / _mm256_f. */
#define TILES(NAME, TARGET, VT, V, OP)                                                                    \
    __attribute__((target(TARGET))) static int64_t NAME(const job *j, int64_t i0, int rr, const double **x) { \
        int64_t c0 = 0;                                                                                   \
        for (; c0 + 2 * V <= j->m; c0 += 2 * V) {                                                         \
            VT h[R][2], l[R][2];                                                                          \
            const double *w = j->wt + c0;                                                                 \
            for (int r = 0; r < R; r++) {                                                                 \
                VT xb = OP(set1_pd)(x[r][0]);                                                             \
                h[r][0] = l[r][0] = OP(sub_pd)(xb, OP(loadu_pd)(w));                                      \
                h[r][1] = l[r][1] = OP(sub_pd)(xb, OP(loadu_pd)(w + V));                                  \
            }                                                                                             \
            for (int64_t kk = 1; kk < j->k; kk++) {                                                       \
                const double *wk = w + kk * j->m;                                                         \
                VT w0 = OP(loadu_pd)(wk), w1 = OP(loadu_pd)(wk + V);                                      \
                for (int r = 0; r < R; r++) {                                                             \
                    VT xb = OP(set1_pd)(x[r][kk]);                                                        \
                    VT d0 = OP(sub_pd)(xb, w0), d1 = OP(sub_pd)(xb, w1);                                  \
                    h[r][0] = OP(max_pd)(h[r][0], d0); l[r][0] = OP(min_pd)(l[r][0], d0);                 \
                    h[r][1] = OP(max_pd)(h[r][1], d1); l[r][1] = OP(min_pd)(l[r][1], d1);                 \
                }                                                                                         \
            }                                                                                             \
            double hs[R * 2 * V], ls[R * 2 * V];                                                          \
            for (int r = 0; r < R; r++) {                                                                 \
                OP(storeu_pd)(hs + r * 2 * V, h[r][0]); OP(storeu_pd)(hs + r * 2 * V + V, h[r][1]);       \
                OP(storeu_pd)(ls + r * 2 * V, l[r][0]); OP(storeu_pd)(ls + r * 2 * V + V, l[r][1]);       \
            }                                                                                             \
            store(j, i0, rr, c0, 2 * V, hs, ls, 2 * V);                                                   \
        }                                                                                                 \
        return c0;                                                                                        \
    }

#define OP512(f) _mm512_##f
#define OP256(f) _mm256_##f
TILES(tiles_avx512, "avx512f", __m512d, 8, OP512)
TILES(tiles_avx2, "avx2", __m256d, 4, OP256)
#endif

static void rows(const job *j) {
    for (int64_t i0 = j->n0; i0 < j->n1; i0 += R) {
        int rr = j->n1 - i0 < R ? (int)(j->n1 - i0) : R;
        const double *x[R];
        for (int r = 0; r < R; r++) x[r] = j->a + (i0 + (r < rr ? r : rr - 1)) * j->k;
        int64_t done = 0;
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx512f")) done = tiles_avx512(j, i0, rr, x);
        else if (__builtin_cpu_supports("avx2")) done = tiles_avx2(j, i0, rr, x);
#endif
        rows_portable(j, i0, rr, x, done); /* the columns no vector tile covered (all, without one) */
    }
}

static void *run(void *p) { rows((const job *)p); return 0; }

/* a [n, k], wt [k, m] (W transposed), above and below [n, m]; k >= 1. Returns 0, or -1 on bad sizes. */
int vf_extremes(const double *a, int64_t n, int64_t k, const double *wt, int64_t m, double *above, double *below,
                int threads) {
    if (n < 0 || k < 1 || m < 0) return -1;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (threads > n) threads = n > 0 ? (int)n : 1;
    job jobs[64];
    pthread_t ids[64];
    int started[64] = {0};
    for (int t = 0; t < threads; t++)
        jobs[t] = (job){a, wt, n * t / threads, n * (t + 1) / threads, k, m, above, below};
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], 0, run, &jobs[t]) == 0;
    rows(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], 0);
        else rows(&jobs[t]);
    }
    return 0;
}
