/* AVX-512F: 16 lanes, tiles of 4 rows x 64 outputs.
 * The vector operations body.h is written in, for this instruction set; linfdist_native.c includes
 * this header, then body.h, then undef_isa.h. */
#define SUFFIX avx512
#define TARGET __attribute__((target("avx512f")))
#define VW 16
#define CV 4
#define vec __m512
#define vmask __mmask16
#define ivec __m512i
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(f) _mm512_set1_ps(f)
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_SUB(a, b) _mm512_sub_ps(a, b)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_ABS(a) _mm512_castsi512_ps(_mm512_and_epi32(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)))
#define V_MAX(a, b) _mm512_max_ps(b, a)
#define V_GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VM_ANY(m) (m)
#define V_BLEND(a, b, m) _mm512_mask_blend_ps(m, a, b)
#define V_SIGN(a) _mm512_sub_ps(_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ), _mm512_set1_ps(1.0f)), \
                                _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_set1_ps(1.0f)))
#define IV_SET1(i) _mm512_set1_epi32(i)
#define IV_BLEND(a, b, m) _mm512_mask_blend_epi32(m, a, b)
#define IV_STORE(p, v) _mm512_storeu_si512((void *)(p), v)
#define IV_LOAD(p) _mm512_loadu_si512((const void *)(p))
#define V_ROUND(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_TO_I(a) _mm512_cvtps_epi32(a)
#define V_CVT_I(i) _mm512_cvtepi32_ps(i)
#define V_AS_I(a) _mm512_castps_si512(a)
#define I_AS_V(i) _mm512_castsi512_ps(i)
#define I_SET1(i) _mm512_set1_epi32(i)
#define I_ADD(a, b) _mm512_add_epi32(a, b)
#define I_AND(a, b) _mm512_and_epi32(a, b)
#define I_OR(a, b) _mm512_or_epi32(a, b)
#define I_SRL(a, n) _mm512_srli_epi32(a, n)
#define I_SRA(a, n) _mm512_srai_epi32(a, n)
#define V_TABLE4(tab, i) _mm512_permutevar_ps(_mm512_loadu_ps(tab), i) /* in-lane, by the low 2 bits of i */
#define I_SLL(a, n) _mm512_slli_epi32(a, n)
#define E_ENTRIES 16 /* V_TABLE_E's table: 16 lanes, picked by the low 4 bits of i */
#define V_TABLE_E(tab, i) _mm512_permutexvar_ps(i, _mm512_loadu_ps(tab))
