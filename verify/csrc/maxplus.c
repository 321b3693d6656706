/* The verifier's own float64 max-plus kernel (no linfdist kernel code, no torch):
 *   above[n, m] = max_k (a[n, k] - w[m, k]),   below[n, m] = max_k (w[m, k] - a[n, k]).
 * Each difference is one IEEE subtraction and max is exact, so the result equals numpy's
 * max over the same differences whatever the order. W comes transposed ([k, m], row-major) so
 * the inner loop runs over m: independent lanes, without any reassociation (the AVX-512 and AVX2
 * tiles read it repacked in column panels; the portable loop as it is). Rows of a are split
 * between pthreads. Built by setup.py as an optional extension (verify/maxplus.py falls back to
 * numpy without it). */

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    const double *a, *wt;
    int64_t n0, n1, k, m;
    double *above, *below;
} job;

#define R 4    /* rows of a per pass over W: each loaded W value serves R rows */
#define CB 256 /* columns per block of the portable version: its 2 R CB accumulators stay in L1 */

/* below = -min_k (a - w): the same value as max_k (w - a), since w - a rounds to -(a - w) exactly. With
 * merge, the tile covered a later block of k: the stored extremes of the earlier blocks are combined in. */
static void store(const job *j, int64_t i0, int rr, int64_t c0, int64_t cw, const double *hi, const double *mn,
                  int64_t stride, int merge) {
    for (int r = 0; r < rr; r++) {
        double *above = j->above + (i0 + r) * j->m + c0, *below = j->below + (i0 + r) * j->m + c0;
        for (int64_t c = 0; c < cw; c++) {
            double h = hi[r * stride + c], l = -mn[r * stride + c];
            above[c] = merge && above[c] > h ? above[c] : h;
            below[c] = merge && below[c] > l ? below[c] : l;
        }
    }
}

/* Portable: R rows at a time over blocks of the columns, accumulators in L1. */
static void rows_portable(const job *j, int64_t i0, int rr, const double **x) {
    double hi[R * CB], mn[R * CB];
    for (int64_t c0 = 0; c0 < j->m; c0 += CB) {
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
        store(j, i0, rr, c0, cw, hi, mn, CB, 0);
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
/* Tiles of RT rows x 2V columns (2 vectors of V lanes per row) of maxima and minima in registers, reading
 * W^T from panels [m_pad / 2V, k, 2V] (packed by vf_extremes: a plain [k, m] W^T strides by m doubles, and at
 * m = 512 every k step lands in the same few L1 sets). k runs in equal blocks of at most KB, each block over every panel
 * and row tile, so a block of a panel (2V KB doubles) stays in L1 while every row tile reads it and the rows'
 * block stays in L2 (without the blocks, a 5120 x 5120 layer streamed all of W from memory per row tile);
 * later blocks merge into the stored extremes. max/min of two numbers is exact in any order and instruction
 * set. Instantiated below for AVX-512 (V = 8, RT = 6: 24 accumulators of 32 registers) and AVX2 (V = 4,
 * RT = 3: 12 of 16); VT is the vector type, OP(f) names the intrinsic _mm512_f / _mm256_f. */
#define KB 256
#define TILES(NAME, TARGET, VT, V, RT, OP)                                                                \
    __attribute__((target(TARGET))) static void NAME(const job *j, const double *panels) {                \
        int64_t kb = (j->k + (j->k + KB - 1) / KB - 1) / ((j->k + KB - 1) / KB); /* equal blocks of <= KB */ \
        for (int64_t k0 = 0; k0 < j->k; k0 += kb) {                                                       \
            int64_t k1 = j->k - k0 < kb ? j->k : k0 + kb;                                                 \
            for (int64_t c0 = 0; c0 < j->m; c0 += 2 * V) {                                                \
                for (int64_t i0 = j->n0; i0 < j->n1; i0 += RT) {                                          \
                    int rr = j->n1 - i0 < RT ? (int)(j->n1 - i0) : RT;                                    \
                    const double *x[RT];                                                                  \
                    for (int r = 0; r < RT; r++) x[r] = j->a + (i0 + (r < rr ? r : rr - 1)) * j->k;        \
                    VT h[RT][2], l[RT][2];                                                                \
                    const double *w = panels + c0 * j->k + k0 * 2 * V;                                    \
                    VT w0 = OP(loadu_pd)(w), w1 = OP(loadu_pd)(w + V);                                    \
                    for (int r = 0; r < RT; r++) {                                                        \
                        VT xb = OP(set1_pd)(x[r][k0]);                                                    \
                        h[r][0] = l[r][0] = OP(sub_pd)(xb, w0);                                           \
                        h[r][1] = l[r][1] = OP(sub_pd)(xb, w1);                                           \
                    }                                                                                     \
                    for (int64_t kk = k0 + 1; kk < k1; kk++) {                                            \
                        w += 2 * V;                                                                       \
                        w0 = OP(loadu_pd)(w), w1 = OP(loadu_pd)(w + V);                                   \
                        for (int r = 0; r < RT; r++) {                                                    \
                            VT xb = OP(set1_pd)(x[r][kk]);                                                \
                            VT d0 = OP(sub_pd)(xb, w0), d1 = OP(sub_pd)(xb, w1);                          \
                            h[r][0] = OP(max_pd)(h[r][0], d0); l[r][0] = OP(min_pd)(l[r][0], d0);         \
                            h[r][1] = OP(max_pd)(h[r][1], d1); l[r][1] = OP(min_pd)(l[r][1], d1);         \
                        }                                                                                 \
                    }                                                                                     \
                    double hs[RT * 2 * V], ls[RT * 2 * V];                                                \
                    for (int r = 0; r < RT; r++) {                                                        \
                        OP(storeu_pd)(hs + r * 2 * V, h[r][0]); OP(storeu_pd)(hs + r * 2 * V + V, h[r][1]); \
                        OP(storeu_pd)(ls + r * 2 * V, l[r][0]); OP(storeu_pd)(ls + r * 2 * V + V, l[r][1]); \
                    }                                                                                     \
                    int64_t cw = j->m - c0 < 2 * V ? j->m - c0 : 2 * V;                                   \
                    store(j, i0, rr, c0, cw, hs, ls, 2 * V, k0 > 0);                                      \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
    }

#define OP512(f) _mm512_##f
#define OP256(f) _mm256_##f
TILES(tiles_avx512, "avx512f", __m512d, 8, 6, OP512)
TILES(tiles_avx2, "avx2", __m256d, 4, 3, OP256)
#endif

enum { VF_PORTABLE = 0, VF_AVX2 = 1, VF_AVX512 = 2 };

/* 1 if this CPU runs the instruction set (0 portable, 1 AVX2, 2 AVX-512). */
int vf_isa_supported(int isa) {
    if (isa == VF_PORTABLE) return 1;
#if defined(__x86_64__)
    if (isa == VF_AVX2) return __builtin_cpu_supports("avx2");
    if (isa == VF_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

/* Columns per panel of the instruction set (0: the portable code reads W^T as it is). */
static int64_t panel_width(int isa) { return isa == VF_AVX512 ? 16 : isa == VF_AVX2 ? 8 : 0; }

typedef struct { const job *j; const double *panels; int isa; } task;

static void rows(const task *t) {
    const job *j = t->j;
#if defined(__x86_64__)
    if (t->isa == VF_AVX512) { tiles_avx512(j, t->panels); return; }
    if (t->isa == VF_AVX2) { tiles_avx2(j, t->panels); return; }
#endif
    for (int64_t i0 = j->n0; i0 < j->n1; i0 += R) {
        int rr = j->n1 - i0 < R ? (int)(j->n1 - i0) : R;
        const double *x[R];
        for (int r = 0; r < R; r++) x[r] = j->a + (i0 + (r < rr ? r : rr - 1)) * j->k;
        rows_portable(j, i0, rr, x);
    }
}

static void *run(void *p) { rows((const task *)p); return 0; }

/* a [n, k], wt [k, m] (W transposed), above and below [n, m]; k >= 1; isa as vf_isa_supported's (-1: the
 * widest this CPU runs). Returns 0, -1 on bad sizes or an instruction set this CPU lacks, -2 out of memory. */
int vf_extremes(const double *a, int64_t n, int64_t k, const double *wt, int64_t m, double *above, double *below,
                int threads, int isa) {
    if (n < 0 || k < 1 || m < 0) return -1;
    if (isa < 0) isa = vf_isa_supported(VF_AVX512) ? VF_AVX512 : vf_isa_supported(VF_AVX2) ? VF_AVX2 : VF_PORTABLE;
    if (isa > VF_AVX512 || !vf_isa_supported(isa)) return -1;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (threads > n) threads = n > 0 ? (int)n : 1;
    double *panels = 0;
    int64_t width = panel_width(isa);
    if (width) {
        int64_t mp = (m + width - 1) / width * width;
        panels = (double *)malloc((size_t)(mp * k) * sizeof(double));
        if (!panels) return -2;
        for (int64_t c0 = 0; c0 < mp; c0 += width)
            for (int64_t kk = 0; kk < k; kk++)
                for (int64_t c = 0; c < width; c++)
                    panels[c0 * k + kk * width + c] = c0 + c < m ? wt[kk * m + c0 + c] : 0.0;
    }
    job jobs[64];
    task tasks[64];
    pthread_t ids[64];
    int started[64] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){a, wt, n * t / threads, n * (t + 1) / threads, k, m, above, below};
        tasks[t] = (task){&jobs[t], panels, isa};
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], 0, run, &tasks[t]) == 0;
    rows(&tasks[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], 0);
        else rows(&tasks[t]);
    }
    free(panels);
    return 0;
}
