/* Portable scalar code, one lane.
 * The vector operations body.h is written in, for this instruction set; linfdist_native.c includes
 * this header, then body.h, then undef_isa.h. */
static inline int32_t f_as_i(float f) { int32_t i; memcpy(&i, &f, 4); return i; }
static inline float i_as_f(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
#define SUFFIX scalar
#define TARGET
#define VW 1
#define CV 16
typedef float vec;
typedef int vmask;
typedef int32_t ivec;
#define V_ZERO() 0.0f
#define V_SET1(f) ((float)(f))
#define V_LOAD(p) (*(p))
#define V_STORE(p, v) (*(p) = (v))
#define V_SUB(a, b) ((a) - (b))
#define V_ADD(a, b) ((a) + (b))
#define V_MUL(a, b) ((a) * (b))
#define V_FMA(a, b, c) ((float)((double)(a) * (b) + (c))) /* one rounding, as a fused multiply-add (but twice, rarely) */
#define V_ABS(a) fabsf(a)
#define V_MAX(a, b) ((b) > (a) ? (b) : (a))
#define V_GT(a, b) ((a) > (b))
#define VM_ANY(m) (m)
#define V_BLEND(a, b, m) ((m) ? (b) : (a))
#define V_SIGN(a) ((float)(((a) > 0) - ((a) < 0)))
#define IV_SET1(i) ((int32_t)(i))
#define IV_BLEND(a, b, m) ((m) ? (b) : (a))
#define IV_STORE(p, v) (*(p) = (v))
#define IV_LOAD(p) (*(p))
#define V_ROUND(a) rintf(a)
#define V_TO_I(a) ((int32_t)rintf(a))
#define V_CVT_I(i) ((float)(i))
#define V_AS_I(a) f_as_i(a)
#define I_AS_V(i) i_as_f(i)
#define I_SET1(i) ((int32_t)(i))
#define I_ADD(a, b) ((int32_t)((uint32_t)(a) + (uint32_t)(b)))
#define I_AND(a, b) ((a) & (b))
#define I_OR(a, b) ((a) | (b))
#define I_SRL(a, n) ((int32_t)((uint32_t)(a) >> (n)))
#define I_SRA(a, n) ((int32_t)(a) >> (n))
#define V_TABLE4(tab, i) ((tab)[(i) & 3])
#define I_SLL(a, n) ((int32_t)((uint32_t)(a) << (n)))
#define E_ENTRIES 16
#define V_TABLE_E(tab, i) ((tab)[(i) & 15])
