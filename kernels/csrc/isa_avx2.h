/* AVX2 + FMA: 8 lanes, tiles of 4 rows x 16 outputs.
 * The vector operations body.h is written in, for this instruction set; linfdist_native.c includes
 * this header, then body.h, then undef_isa.h. */
#define SUFFIX avx2
#define TARGET __attribute__((target("avx2,fma")))
#define VW 8
#define CV 3
#define vec __m256
#define vmask __m256
#define ivec __m256i
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(f) _mm256_set1_ps(f)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define V_SUB(a, b) _mm256_sub_ps(a, b)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_ABS(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define V_MAX(a, b) _mm256_max_ps(b, a)
#define V_GT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VM_ANY(m) _mm256_movemask_ps(m)
#define V_BLEND(a, b, m) _mm256_blendv_ps(a, b, m)
#define V_SIGN(a) _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(1.0f)), \
                                _mm256_and_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LT_OQ), _mm256_set1_ps(1.0f)))
#define IV_SET1(i) _mm256_set1_epi32(i)
#define IV_BLEND(a, b, m) _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m))
#define IV_STORE(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#define IV_LOAD(p) _mm256_loadu_si256((const __m256i *)(p))
#define V_ROUND(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_TO_I(a) _mm256_cvtps_epi32(a)
#define V_CVT_I(i) _mm256_cvtepi32_ps(i)
#define V_AS_I(a) _mm256_castps_si256(a)
#define I_AS_V(i) _mm256_castsi256_ps(i)
#define I_SET1(i) _mm256_set1_epi32(i)
#define I_ADD(a, b) _mm256_add_epi32(a, b)
#define I_AND(a, b) _mm256_and_si256(a, b)
#define I_OR(a, b) _mm256_or_si256(a, b)
#define I_SRL(a, n) _mm256_srli_epi32(a, n)
#define I_SRA(a, n) _mm256_srai_epi32(a, n)
#define V_TABLE4(tab, i) _mm256_permutevar_ps(_mm256_loadu_ps(tab), i) /* in-lane, by the low 2 bits of i */
#define I_SLL(a, n) _mm256_slli_epi32(a, n)
#define E_ENTRIES 8 /* V_TABLE_E's table: 8 lanes, picked by the low 3 bits of i (one lane-crossing permute) */
#define V_TABLE_E(tab, i) _mm256_permutevar8x32_ps(_mm256_loadu_ps(tab), i)
