/* Vector building blocks of the network kernels (_network_fast*.pyx).
 *
 * Written with GCC / Clang vector extensions, so each variant of the
 * extension (generic, AVX2 + FMA, AVX-512) gets registers of its width
 * (FG_VEC_BYTES, set by setup.py) from the same source:
 *
 *  - fg_conv_row_*: one output row of FG_FB filters of a direct convolution,
 *    a vector of output columns at a time accumulated in registers over the
 *    C·KH·KW taps, bias and activation applied before the store;
 *  - fg_exp_* / fg_tanh_* / fg_sigmoid_*: branch-free (vectorisable)
 *    exponential, tanh and logistic function: the exponential by range
 *    reduction + polynomial (Cephes' coefficients), the 2^n scale built from
 *    the exponent bits; float32 tanh as a rational function of x²;
 *  - fg_bias_act_* / fg_act_grad_*: fused bias + activation and the
 *    activation derivative written with the output a = f(z).
 *
 * Activation codes match fastgd/_kernels/runtime/codes.py (tested).
 */
#ifndef FASTGD_SIMD_H
#define FASTGD_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#ifndef FG_VEC_BYTES
#define FG_VEC_BYTES 16
#endif
#define FG_FB 8
#define FG_VF (FG_VEC_BYTES / 4)
#define FG_VD (FG_VEC_BYTES / 8)

#define FG_IDENTITY 0
#define FG_RELU 1
#define FG_TANH 2
#define FG_SIGMOID 3

typedef float fg_vf __attribute__((vector_size(FG_VEC_BYTES)));
typedef double fg_vd __attribute__((vector_size(FG_VEC_BYTES)));
/* Integer vectors of the same lanes (comparison masks, bit operations). */
typedef int32_t fg_vi __attribute__((vector_size(FG_VEC_BYTES)));
typedef int64_t fg_vl __attribute__((vector_size(FG_VEC_BYTES)));

static inline int fg_vec_bytes(void) { return FG_VEC_BYTES; }

/* Whether this CPU runs the AVX2 + FMA (level 1) or AVX-512 (level 2) variant. */
static inline int fg_cpu_level(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

/* Keeps v in a vector register: GCC would otherwise fold the load of a
 * vector used by several multiply-adds into each of them (one load per
 * product instead of one in all), which makes a register tile load-bound. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define FG_IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define FG_IN_REGISTER(v) ((void)0)
#endif

/* acc[i·LANES : (i+1)·LANES] = the i-th of eight vector registers. */
#define FG_STORE_8(LANES, r0, r1, r2, r3, r4, r5, r6, r7)                      \
    memcpy(acc + 0 * LANES, &r0, sizeof r0);                                   \
    memcpy(acc + 1 * LANES, &r1, sizeof r1);                                   \
    memcpy(acc + 2 * LANES, &r2, sizeof r2);                                   \
    memcpy(acc + 3 * LANES, &r3, sizeof r3);                                   \
    memcpy(acc + 4 * LANES, &r4, sizeof r4);                                   \
    memcpy(acc + 5 * LANES, &r5, sizeof r5);                                   \
    memcpy(acc + 6 * LANES, &r6, sizeof r6);                                   \
    memcpy(acc + 7 * LANES, &r7, sizeof r7);

/* ------------------------------------------------ weight-gradient tile */
/* acc[t·FG_FB + f] += Σ_{i < OH, jb < n_jb} x(i, jb, off[t]) · dz[((i·n_jb + jb)·FG_FB + f)·LANES]
 * lane by lane, for the NT ≤ 3 taps t of off[] and the FG_FB filters of a
 * tile (acc: NT·FG_FB vectors in memory, read once and written once per
 * call; their lanes are summed once per gradient block). x(i, jb, o) is the
 * vector of LANES inputs at o + i·stride·WP + jb·LANES·stride (stride apart)
 * of the padded sample; dz holds the tile's output gradient interleaved,
 * one vector per filter for each output row and vector of columns (zero
 * past the output width). The whole sample stays in registers: NT·FG_FB
 * sums, each input vector loaded once for FG_FB products. */
#define FG_WT_LOAD(T, V, LANES, var, src)                                      \
    V var;                                                                     \
    if (stride == 1) {                                                         \
        memcpy(&var, (src), sizeof var);                                       \
    } else {                                                                   \
        for (int j = 0; j < LANES; j++) var[j] = (src)[j * stride];            \
    }
#define FG_WT_FMA(f)                                                           \
    {                                                                          \
        fg_v_ d;                                                               \
        memcpy(&d, dr + f * fg_lanes_, sizeof d);                              \
        FG_IN_REGISTER(d);                                                     \
        p##f += x0 * d;                                                        \
        if (fg_nt_ > 1) q##f += x1 * d;                                        \
        if (fg_nt_ > 2) r##f += x2 * d;                                        \
    }
#define FG_WT_ACC(f, v, t)                                                     \
    {                                                                          \
        fg_v_ o;                                                               \
        fg_t_ *out = acc + (t * FG_FB + f) * fg_lanes_;                        \
        memcpy(&o, out, sizeof o);                                             \
        o += v##f;                                                             \
        memcpy(out, &o, sizeof o);                                             \
    }
#define FG_WT_PUT(f)                                                           \
    FG_WT_ACC(f, p, 0)                                                         \
    if (fg_nt_ > 1) FG_WT_ACC(f, q, 1)                                         \
    if (fg_nt_ > 2) FG_WT_ACC(f, r, 2)
#define FG_WT_ALL(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define FG_WT_BODY(T, V, LANES, NT)                                            \
    typedef T fg_t_;                                                           \
    typedef V fg_v_;                                                           \
    enum { fg_lanes_ = LANES, fg_nt_ = NT };                                   \
    V p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0}, p4 = {0}, p5 = {0}, p6 = {0},    \
      p7 = {0};                                                                \
    V q0 = {0}, q1 = {0}, q2 = {0}, q3 = {0}, q4 = {0}, q5 = {0}, q6 = {0},    \
      q7 = {0};                                                                \
    V r0 = {0}, r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0}, r5 = {0}, r6 = {0},    \
      r7 = {0};                                                                \
    Py_ssize_t o0 = off[0], o1 = NT > 1 ? off[1] : 0, o2 = NT > 2 ? off[2] : 0; \
    const T *dr = dz;                                                          \
    for (Py_ssize_t i = 0; i < OH; i++) {                                      \
        const T *xr = x + i * stride * WP;                                     \
        for (Py_ssize_t jb = 0; jb < n_jb; jb++) {                             \
            FG_WT_LOAD(T, V, LANES, x0, xr + o0)                               \
            FG_WT_LOAD(T, V, LANES, x1, xr + o1)                               \
            FG_WT_LOAD(T, V, LANES, x2, xr + o2)                               \
            FG_WT_ALL(FG_WT_FMA)                                               \
            xr += LANES * stride;                                              \
            dr += FG_FB * LANES;                                               \
        }                                                                      \
    }                                                                          \
    FG_WT_ALL(FG_WT_PUT)                                                       \
    (void)q0; (void)q1; (void)q2; (void)q3; (void)q4; (void)q5; (void)q6;      \
    (void)q7; (void)r0; (void)r1; (void)r2; (void)r3; (void)r4; (void)r5;      \
    (void)r6; (void)r7;

/* One variant per tap count (the compiler drops the unused sums); not
 * inlined, so that the tile's sums and pointers get the registers. */
#define FG_WT_FN(NAME, T, V, LANES, NT)                                        \
    static __attribute__((noinline)) void NAME(                                \
        const T *restrict x, const Py_ssize_t *off, const T *restrict dz,      \
        Py_ssize_t OH, Py_ssize_t n_jb, Py_ssize_t WP, Py_ssize_t stride,      \
        T *restrict acc)                                                       \
    {                                                                          \
        FG_WT_BODY(T, V, LANES, NT)                                            \
    }
FG_WT_FN(fg_wgrad_tile3_f, float, fg_vf, FG_VF, 3)
FG_WT_FN(fg_wgrad_tile2_f, float, fg_vf, FG_VF, 2)
FG_WT_FN(fg_wgrad_tile1_f, float, fg_vf, FG_VF, 1)
FG_WT_FN(fg_wgrad_tile3_d, double, fg_vd, FG_VD, 3)
FG_WT_FN(fg_wgrad_tile2_d, double, fg_vd, FG_VD, 2)
FG_WT_FN(fg_wgrad_tile1_d, double, fg_vd, FG_VD, 1)

/* The taps off[0:n] of one filter tile, three at a time, then the one or two
 * left (acc: n·FG_FB vectors). */
#define FG_WT_TAPS_BODY(T3, T2, T1, LANES)                                     \
    Py_ssize_t t = 0;                                                          \
    for (; t + 3 <= n; t += 3)                                                 \
        T3(x, off + t, dz, OH, n_jb, WP, stride, acc + t * FG_FB * LANES);     \
    if (n - t == 2)                                                            \
        T2(x, off + t, dz, OH, n_jb, WP, stride, acc + t * FG_FB * LANES);     \
    else if (n - t == 1)                                                       \
        T1(x, off + t, dz, OH, n_jb, WP, stride, acc + t * FG_FB * LANES);

static inline void fg_wgrad_taps_f(const float *x, const Py_ssize_t *off, Py_ssize_t n,
                                   const float *dz, Py_ssize_t OH, Py_ssize_t n_jb,
                                   Py_ssize_t WP, Py_ssize_t stride, float *acc)
{
    FG_WT_TAPS_BODY(fg_wgrad_tile3_f, fg_wgrad_tile2_f, fg_wgrad_tile1_f, FG_VF)
}

static inline void fg_wgrad_taps_d(const double *x, const Py_ssize_t *off, Py_ssize_t n,
                                   const double *dz, Py_ssize_t OH, Py_ssize_t n_jb,
                                   Py_ssize_t WP, Py_ssize_t stride, double *acc)
{
    FG_WT_TAPS_BODY(fg_wgrad_tile3_d, fg_wgrad_tile2_d, fg_wgrad_tile1_d, FG_VD)
}

/* Σ x[0:n], one partial sum per lane added in a fixed order. */
#define FG_SUM_BODY(T, V, LANES)                                               \
    V acc = {0};                                                               \
    Py_ssize_t i = 0;                                                          \
    for (; i + LANES <= n; i += LANES) {                                       \
        V v;                                                                   \
        memcpy(&v, x + i, sizeof v);                                           \
        acc += v;                                                              \
    }                                                                          \
    T s = 0;                                                                   \
    for (int j = 0; j < LANES; j++) s += acc[j];                               \
    for (; i < n; i++) s += x[i];                                              \
    return s;

static inline float fg_sum_f(const float *x, Py_ssize_t n) { FG_SUM_BODY(float, fg_vf, FG_VF) }

static inline double fg_sum_d(const double *x, Py_ssize_t n)
{
    FG_SUM_BODY(double, fg_vd, FG_VD)
}

/* ------------------------------------------------------- exp, tanh, σ */
/* e^x for x in [-87.3, 88.7] (callers clamp); relative error ~1 ulp. */
static inline float fg_exp_core_f(float x)
{
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale = {((int32_t)n + 127) << 23};
    return p * scale.f;
}

/* e^x for x in [-708.3, 709.7] (callers clamp); degree-13 Taylor on |r| ≤ ln2/2. */
static inline double fg_exp_core_d(double x)
{
    double n = floor(x * 1.4426950408889634 + 0.5);
    double r = x - n * 6.93145751953125e-1 - n * 1.42860682030941723212e-6;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    union { int64_t i; double f; } scale = {((int64_t)n + 1023) << 52};
    return p * scale.f;
}

/* tanh(x) = x·P(x²) / Q(x²) with |x| clamped to 9.02 (where tanh rounds to ±1):
 * a rational minimax fit of degrees (5, 4) in x², made for fastgd (relative
 * error 1.4e-9 before rounding; coefficients tuned in their last bits for
 * float32 evaluation with FMA). No exponential and one division, so it
 * vectorises to a short loop. It is evaluated at |x| and the sign bit of x
 * put back at the end: tanh is odd and every step is exact under negation,
 * so the result is bit for bit that of evaluating at x, but the clamps then
 * compile to one comparison each instead of NaN-aware pairs (2x faster with
 * AVX-512). NaN passes through the comparisons, -0 stays -0. */
static inline float fg_tanh_f(float x)
{
    union { float f; uint32_t u; } bits = {x};
    uint32_t sign = bits.u & 0x80000000u;
    bits.u &= 0x7fffffffu;
    float a = bits.f;
    float c = 9.02f < a ? 9.02f : a;
    float z = c * c;
    float p = -1.2261435790306141e-11f;
    p = p * z + 3.0670896933315817e-08f;
    p = p * z + 2.804582254611887e-05f;
    p = p * z + 3.870308166369796e-03f;
    p = p * z + 1.368151754140854e-01f;
    p = p * z + 1.0f;
    float q = 1.2899615740025183e-06f;
    q = q * z + 3.942066105082631e-04f;
    q = q * z + 2.7253154665231705e-02f;
    q = q * z + 4.701485335826874e-01f;
    q = q * z + 1.0f;
    float r = c * p / q;
    bits.f = 1.0f < r ? 1.0f : r;
    bits.u |= sign;
    return bits.f;
}

static inline double fg_tanh_d(double x)
{
    double ax = fabs(x);
    double z = x * x;
    /* Cephes tanh: x + x·z·P(z)/Q(z) for |x| < 0.625 */
    double p = -9.64399179425052238628e-1;
    p = p * z - 9.92877231001918586564e1;
    p = p * z - 1.61468768441708447952e3;
    double q = z + 1.12811678491632931402e2;
    q = q * z + 2.23548839060100448583e3;
    q = q * z + 4.84406305325125486048e3;
    double s = copysign(x + x * z * (p / q), x);
    double t = 2.0 * ax;
    t = t < 700.0 ? t : 700.0;
    double large = 1.0 - 2.0 / (fg_exp_core_d(t) + 1.0);
    large = copysign(large, x);
    double r = ax < 0.625 ? s : large;
    return x != x ? x : r;
}

/* σ(x) = 1 / (1 + e^{−|x|}) for x ≥ 0, e^{−|x|} / (1 + e^{−|x|}) below;
 * flushes to 0 below x = ln(FLT_MIN) ≈ −87.34 (float32) / −708.4 (float64). */
#define FG_SIGMOID_BODY(T, ABS, EXP, LOWEST)                                   \
    T m = -ABS(x);                                                             \
    T mc = m > LOWEST ? m : LOWEST; /* below: subnormal, flushed to 0 */       \
    T e = EXP(mc);                                                             \
    e = m > LOWEST ? e : (T)0;                                                 \
    T s = (T)1 / ((T)1 + e);                                                   \
    T r = x >= (T)0 ? s : e * s;                                               \
    return x != x ? x : r;

static inline float fg_sigmoid_f(float x)
{
    FG_SIGMOID_BODY(float, fabsf, fg_exp_core_f, -87.3365f)
}

static inline double fg_sigmoid_d(double x)
{
    FG_SIGMOID_BODY(double, fabs, fg_exp_core_d, -708.39)
}

/* z[0:n] = f(z[0:n] + bias) in place (without the addition when bias is 0,
 * so that signed zeros keep their sign). */
#define FG_ACT_LOOPS(T, TANH, SIGMOID, IN)                                     \
    if (code == FG_RELU) {                                                     \
        for (Py_ssize_t i = 0; i < n; i++) {                                   \
            T v = IN;                                                          \
            z[i] = v < zero ? zero : v; /* NaN propagates */                   \
        }                                                                      \
    } else if (code == FG_TANH) {                                              \
        for (Py_ssize_t i = 0; i < n; i++) z[i] = TANH(IN);                    \
    } else if (code == FG_SIGMOID) {                                           \
        for (Py_ssize_t i = 0; i < n; i++) z[i] = SIGMOID(IN);                 \
    } else {                                                                   \
        for (Py_ssize_t i = 0; i < n; i++) z[i] = IN;                          \
    }

#define FG_BIAS_ACT_BODY(T, TANH, SIGMOID)                                     \
    T zero = 0;                                                                \
    if (bias == zero) {                                                        \
        if (code != FG_IDENTITY) {                                             \
            FG_ACT_LOOPS(T, TANH, SIGMOID, z[i])                               \
        }                                                                      \
    } else {                                                                   \
        FG_ACT_LOOPS(T, TANH, SIGMOID, z[i] + bias)                            \
    }

static inline void fg_bias_act_f(float *restrict z, Py_ssize_t n, float bias, int code)
{
    FG_BIAS_ACT_BODY(float, fg_tanh_f, fg_sigmoid_f)
}

static inline void fg_bias_act_d(double *restrict z, Py_ssize_t n, double bias, int code)
{
    FG_BIAS_ACT_BODY(double, fg_tanh_d, fg_sigmoid_d)
}

/* z[i, j] = f(z[i, j] + b[j]) for n_rows rows of n_cols values. */
#define FG_BIAS_ACT_ROWS_BODY(T, TANH, SIGMOID)                                \
    T zero = 0;                                                                \
    for (Py_ssize_t r = 0; r < n_rows; r++) {                                  \
        T *restrict row = z + r * n_cols;                                      \
        if (code == FG_RELU) {                                                 \
            for (Py_ssize_t j = 0; j < n_cols; j++) {                          \
                T v = row[j] + b[j];                                           \
                row[j] = v < zero ? zero : v;                                  \
            }                                                                  \
        } else if (code == FG_TANH) {                                          \
            for (Py_ssize_t j = 0; j < n_cols; j++) row[j] = TANH(row[j] + b[j]); \
        } else if (code == FG_SIGMOID) {                                       \
            for (Py_ssize_t j = 0; j < n_cols; j++)                            \
                row[j] = SIGMOID(row[j] + b[j]);                               \
        } else {                                                               \
            for (Py_ssize_t j = 0; j < n_cols; j++) row[j] = row[j] + b[j];    \
        }                                                                      \
    }

static inline void fg_bias_act_rows_f(float *restrict z, Py_ssize_t n_rows, Py_ssize_t n_cols,
                                      const float *restrict b, int code)
{
    FG_BIAS_ACT_ROWS_BODY(float, fg_tanh_f, fg_sigmoid_f)
}

static inline void fg_bias_act_rows_d(double *restrict z, Py_ssize_t n_rows,
                                      Py_ssize_t n_cols, const double *restrict b, int code)
{
    FG_BIAS_ACT_ROWS_BODY(double, fg_tanh_d, fg_sigmoid_d)
}

/* out[0:n] = da[0:n] · f'(z), written with the output a (out may be da). */
#define FG_ACT_GRAD_BODY(T)                                                    \
    T zero = 0, one = 1;                                                       \
    if (code == FG_RELU) {                                                     \
        for (Py_ssize_t i = 0; i < n; i++) out[i] = a[i] > zero ? da[i] : zero; \
    } else if (code == FG_TANH) {                                              \
        for (Py_ssize_t i = 0; i < n; i++) out[i] = da[i] * (one - a[i] * a[i]); \
    } else if (code == FG_SIGMOID) {                                           \
        for (Py_ssize_t i = 0; i < n; i++) out[i] = da[i] * (a[i] * (one - a[i])); \
    } else if (out != da) {                                                    \
        memcpy(out, da, n * sizeof(T));                                        \
    }

static inline void fg_act_grad_to_f(const float *restrict a, const float *da, float *out,
                                    Py_ssize_t n, int code)
{
    FG_ACT_GRAD_BODY(float)
}

static inline void fg_act_grad_to_d(const double *restrict a, const double *da, double *out,
                                    Py_ssize_t n, int code)
{
    FG_ACT_GRAD_BODY(double)
}

/* da[0:n] *= f'(z), written with the output a. */
static inline void fg_act_grad_f(const float *restrict a, float *restrict da, Py_ssize_t n,
                                 int code)
{
    fg_act_grad_to_f(a, da, da, n, code);
}

static inline void fg_act_grad_d(const double *restrict a, double *restrict da, Py_ssize_t n,
                                 int code)
{
    fg_act_grad_to_d(a, da, da, n, code);
}

/* The derivative factor for one output value a. */
static inline float fg_act_slope_f(float a, int code)
{
    if (code == FG_RELU) return a > 0.0f ? 1.0f : 0.0f;
    if (code == FG_TANH) return 1.0f - a * a;
    if (code == FG_SIGMOID) return a * (1.0f - a);
    return 1.0f;
}

static inline double fg_act_slope_d(double a, int code)
{
    if (code == FG_RELU) return a > 0.0 ? 1.0 : 0.0;
    if (code == FG_TANH) return 1.0 - a * a;
    if (code == FG_SIGMOID) return a * (1.0 - a);
    return 1.0;
}

/* ------------------------------------------------------------ conv row */

/* v = f(v + bias) lane by lane, as fg_bias_act_* computes it (no addition
 * when bias is 0; relu keeps NaN and −0). */
#define FG_VEC_BIAS_ACT(T, V, BITS, LANES, TANH, SIGMOID, v, bias)             \
    if ((bias) != (T)0) v += (bias);                                           \
    if (code == FG_RELU) {                                                     \
        V zero = {0};                                                          \
        v = (V)((BITS)v & ~(BITS)(v < zero));                                  \
    } else if (code == FG_TANH) {                                              \
        for (int j = 0; j < LANES; j++) v[j] = TANH(v[j]);                     \
    } else if (code == FG_SIGMOID) {                                           \
        for (int j = 0; j < LANES; j++) v[j] = SIGMOID(v[j]);                  \
    }

#define FG_ROW_PUT(f, TANH, SIGMOID)                                           \
    if (f < n_f) {                                                             \
        FG_VEC_BIAS_ACT(fg_t_, fg_v_, fg_bits_, fg_lanes_, TANH, SIGMOID, a##f, \
                        bias[f])                                               \
        fg_t_ *o = out + f * ldf + j0;                                         \
        if (whole) {                                                           \
            memcpy(o, &a##f, sizeof a##f);                                     \
        } else {                                                               \
            for (Py_ssize_t j = 0; j < nj; j++) o[j] = a##f[j];                \
        }                                                                      \
    }

/* One output row of a tile of n_f ≤ FG_FB filters of a direct convolution:
 *   out[f·ldf + j] = act(Σ_k w[k·FG_FB + f] · x[xoff[k] + j·stride] + bias[f])
 * for j < OW, LANES columns at a time accumulated in registers over the ckk
 * taps (x: the row's first input in the padded sample). With `spill` the last
 * vector of the row is stored whole (the caller has room for up to LANES − 1
 * values past the row and writes them later); otherwise value by value. */
#define FG_CONV_ROW_BODY(T, V, BITS, LANES, TANH, SIGMOID)                      \
    typedef T fg_t_;                                                            \
    typedef V fg_v_;                                                            \
    typedef BITS fg_bits_;                                                      \
    enum { fg_lanes_ = LANES };                                                 \
    for (Py_ssize_t j0 = 0; j0 < OW; j0 += LANES) {                             \
        V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, \
          a7 = {0};                                                             \
        const T *xj = x + j0 * stride;                                          \
        for (Py_ssize_t k = 0; k < ckk; k++) {                                  \
            V xv;                                                               \
            const T *xk = xj + xoff[k];                                         \
            if (stride == 1) {                                                  \
                memcpy(&xv, xk, sizeof xv);                                     \
            } else {                                                            \
                for (int j = 0; j < LANES; j++) xv[j] = xk[j * stride];         \
            }                                                                   \
            const T *wk = w + k * FG_FB;                                        \
            a0 += xv * wk[0]; a1 += xv * wk[1]; a2 += xv * wk[2];               \
            a3 += xv * wk[3]; a4 += xv * wk[4]; a5 += xv * wk[5];               \
            a6 += xv * wk[6]; a7 += xv * wk[7];                                 \
        }                                                                       \
        Py_ssize_t nj = OW - j0 < LANES ? OW - j0 : LANES;                      \
        int whole = nj == LANES || spill;                                       \
        FG_ROW_PUT(0, TANH, SIGMOID) FG_ROW_PUT(1, TANH, SIGMOID)               \
        FG_ROW_PUT(2, TANH, SIGMOID) FG_ROW_PUT(3, TANH, SIGMOID)               \
        FG_ROW_PUT(4, TANH, SIGMOID) FG_ROW_PUT(5, TANH, SIGMOID)               \
        FG_ROW_PUT(6, TANH, SIGMOID) FG_ROW_PUT(7, TANH, SIGMOID)               \
    }

static inline void fg_conv_row_f(const float *restrict x, const Py_ssize_t *xoff,
                                 Py_ssize_t ckk, const float *restrict w, Py_ssize_t stride,
                                 Py_ssize_t OW, const float *bias, int n_f, int code,
                                 float *restrict out, Py_ssize_t ldf, int spill)
{
    FG_CONV_ROW_BODY(float, fg_vf, fg_vi, FG_VF, fg_tanh_f, fg_sigmoid_f)
}

static inline void fg_conv_row_d(const double *restrict x, const Py_ssize_t *xoff,
                                 Py_ssize_t ckk, const double *restrict w, Py_ssize_t stride,
                                 Py_ssize_t OW, const double *bias, int n_f, int code,
                                 double *restrict out, Py_ssize_t ldf, int spill)
{
    FG_CONV_ROW_BODY(double, fg_vd, fg_vl, FG_VD, fg_tanh_d, fg_sigmoid_d)
}

/* ------------------------------------------------------- max pooling */
/* Max pooling of one plane a (H rows lda values apart, W values each) into
 * out (PH, PW); idx gets the flat index h·W + w of each maximum: the first in
 * row-major order, or the first NaN (NaN propagates). 2×2 windows with
 * stride 2 are a fixed chain of selects the compiler vectorises over an
 * output row. */
#define FG_MAXPOOL_BODY(T)                                                     \
    if (ph == 2 && pw == 2 && ps == 2) {                                       \
        for (Py_ssize_t i = 0; i < PH; i++) {                                  \
            const T *r0 = a + 2 * i * lda, *r1 = r0 + lda;                     \
            int b0 = (int)(2 * i * W), b1 = b0 + (int)W;                       \
            T *o = out + i * PW;                                               \
            int *d = idx + i * PW;                                             \
            for (Py_ssize_t j = 0; j < PW; j++) {                              \
                T v00 = r0[2 * j], v01 = r0[2 * j + 1];                        \
                T v10 = r1[2 * j], v11 = r1[2 * j + 1];                        \
                T m = v00;                                                     \
                m = FG_TAKE(v01, m) ? v01 : m;                                 \
                m = FG_TAKE(v10, m) ? v10 : m;                                 \
                m = FG_TAKE(v11, m) ? v11 : m;                                 \
                int jj = 2 * (int)j;                                           \
                int k = b1 + jj + 1;                                           \
                k = (v10 == m) | (v10 != v10) ? b1 + jj : k;                   \
                k = (v01 == m) | (v01 != v01) ? b0 + jj + 1 : k;               \
                k = (v00 == m) | (v00 != v00) ? b0 + jj : k;                   \
                o[j] = m;                                                      \
                d[j] = k;                                                      \
            }                                                                  \
        }                                                                      \
        return;                                                                \
    }                                                                          \
    for (Py_ssize_t i = 0; i < PH; i++) {                                      \
        for (Py_ssize_t j = 0; j < PW; j++) {                                  \
            Py_ssize_t h0 = i * ps, w0 = j * ps;                               \
            Py_ssize_t kbest = h0 * W + w0;                                    \
            T best = a[h0 * lda + w0];                                         \
            for (Py_ssize_t p = 0; p < ph; p++) {                              \
                for (Py_ssize_t q = 0; q < pw; q++) {                          \
                    Py_ssize_t k = (h0 + p) * W + w0 + q;                      \
                    T v = a[(h0 + p) * lda + w0 + q];                          \
                    int take = FG_TAKE(v, best);                               \
                    best = take ? v : best;                                    \
                    kbest = take ? k : kbest;                                  \
                }                                                              \
            }                                                                  \
            out[i * PW + j] = best;                                            \
            idx[i * PW + j] = (int)kbest;                                      \
        }                                                                      \
    }

#define FG_TAKE(v, m) (((v) > (m)) | (((v) != (v)) & ((m) == (m))))

#if defined(__GNUC__) && !defined(__clang__)
#define FG_BLEND(mask, a, b) (((a) & (mask)) | ((b) & ~(mask)))

/* One output row of 2×2 / stride-2 max pooling, FG_VF outputs per step; the
 * same selects as FG_MAXPOOL_BODY, lane by lane. Reads up to 2·FG_VF − 2
 * values past the end of row r1 (the caller's buffer has them). With
 * `spill` the last vector is stored whole (the values past PW belong to
 * rows written later). */
static inline void fg_maxpool_row2x2_f(const float *r0, const float *r1, int b0, int b1,
                                       Py_ssize_t PW, float *o, int *d, int spill)
{
    fg_vi even, odd, lane;
    for (int t = 0; t < FG_VF; t++) {
        even[t] = 2 * t;
        odd[t] = 2 * t + 1;
        lane[t] = t;
    }
    for (Py_ssize_t j0 = 0; j0 < PW; j0 += FG_VF) {
        fg_vf a0, a1, c0, c1;
        memcpy(&a0, r0 + 2 * j0, sizeof a0);
        memcpy(&a1, r0 + 2 * j0 + FG_VF, sizeof a1);
        memcpy(&c0, r1 + 2 * j0, sizeof c0);
        memcpy(&c1, r1 + 2 * j0 + FG_VF, sizeof c1);
        fg_vf v00 = __builtin_shuffle(a0, a1, even), v01 = __builtin_shuffle(a0, a1, odd);
        fg_vf v10 = __builtin_shuffle(c0, c1, even), v11 = __builtin_shuffle(c0, c1, odd);
        fg_vi m = (fg_vi)v00, t;
        t = (v01 > (fg_vf)m) | ((v01 != v01) & ((fg_vf)m == (fg_vf)m));
        m = FG_BLEND(t, (fg_vi)v01, m);
        t = (v10 > (fg_vf)m) | ((v10 != v10) & ((fg_vf)m == (fg_vf)m));
        m = FG_BLEND(t, (fg_vi)v10, m);
        t = (v11 > (fg_vf)m) | ((v11 != v11) & ((fg_vf)m == (fg_vf)m));
        m = FG_BLEND(t, (fg_vi)v11, m);
        fg_vf mf = (fg_vf)m;
        fg_vi jj = 2 * ((int)j0 + lane);
        fg_vi k = b1 + jj + 1;
        k = FG_BLEND((v10 == mf) | (v10 != v10), b1 + jj, k);
        k = FG_BLEND((v01 == mf) | (v01 != v01), b0 + jj + 1, k);
        k = FG_BLEND((v00 == mf) | (v00 != v00), b0 + jj, k);
        Py_ssize_t nj = PW - j0 < FG_VF ? PW - j0 : FG_VF;
        if (nj == FG_VF || spill) {
            memcpy(o + j0, &mf, sizeof mf);
            memcpy(d + j0, &k, sizeof k);
        } else {
            for (Py_ssize_t j = 0; j < nj; j++) {
                o[j0 + j] = mf[j];
                d[j0 + j] = k[j];
            }
        }
    }
}
#define FG_POOL_ROWS_VECTORISED 1
#else
#define FG_POOL_ROWS_VECTORISED 0
#endif

/* Values a plane buffer needs past its end for fg_maxpool_plane_f. */
#define FG_POOL_SLACK (2 * FG_VF)

static inline void fg_maxpool_plane_f(const float *restrict a, Py_ssize_t lda, Py_ssize_t W,
                                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t ps,
                                      Py_ssize_t PH, Py_ssize_t PW, float *restrict out,
                                      int *restrict idx)
{
#if FG_POOL_ROWS_VECTORISED
    if (ph == 2 && pw == 2 && ps == 2) {
        Py_ssize_t overrun = (PW + FG_VF - 1) / FG_VF * FG_VF - PW;
        for (Py_ssize_t i = 0; i < PH; i++) {
            const float *r0 = a + 2 * i * lda;
            int b0 = (int)(2 * i * W);
            fg_maxpool_row2x2_f(r0, r0 + lda, b0, b0 + (int)W, PW, out + i * PW,
                                idx + i * PW, (PH - 1 - i) * PW >= overrun);
        }
        return;
    }
#endif
    FG_MAXPOOL_BODY(float)
}

static inline void fg_maxpool_plane_d(const double *restrict a, Py_ssize_t lda,
                                      Py_ssize_t W, Py_ssize_t ph, Py_ssize_t pw,
                                      Py_ssize_t ps, Py_ssize_t PH, Py_ssize_t PW,
                                      double *restrict out, int *restrict idx)
{
    FG_MAXPOOL_BODY(double)
}

/* One filter's dense output gradient in the interleaved layout of
 * fg_wgrad_taps_*: out[(i·n_jb + jb)·FG_FB·LANES + j] = da·f'(a) at output
 * (i, jb·LANES + j) of the (OH, OW) planes a and da, zero past the width.
 * Returns the sum of the gradient (the bias's share): one sum per lane
 * over the full vectors, the lanes added in order at the end, then the sum
 * of the partial vectors at the ends of the rows. */
#define FG_DENSE_DZ_BODY(T, V, LANES, ACT_GRAD)                                 \
    V bsum = {0}, lane;                                                        \
    for (int j = 0; j < LANES; j++) lane[j] = (T)j;                            \
    T tail = 0;                                                                \
    for (Py_ssize_t i = 0; i < OH; i++) {                                      \
        for (Py_ssize_t jb = 0; jb < n_jb; jb++) {                             \
            Py_ssize_t j0 = jb * LANES;                                        \
            Py_ssize_t nj = OW - j0 < LANES ? OW - j0 : LANES;                 \
            T *v = out + (i * n_jb + jb) * FG_FB * LANES;                      \
            V g;                                                               \
            /* A partial vector is read whole (and its lanes past the width    \
             * cleared) where the read stays in the plane. */                  \
            int whole = nj == LANES || (i + 1 < OH && LANES - nj <= OW);       \
            if (whole) {                                                       \
                V av, dv;                                                      \
                memcpy(&av, a + i * OW + j0, sizeof av);                       \
                memcpy(&dv, da + i * OW + j0, sizeof dv);                      \
                if (code == FG_RELU) {                                         \
                    __typeof__(av > av) keep = av > (T)0;                      \
                    g = (V)((__typeof__(keep))dv & keep);                      \
                } else if (code == FG_TANH) {                                  \
                    g = dv * ((T)1 - av * av);                                 \
                } else if (code == FG_SIGMOID) {                               \
                    g = dv * (av * ((T)1 - av));                               \
                } else {                                                       \
                    g = dv;                                                    \
                }                                                              \
                if (nj < LANES) {                                              \
                    __typeof__(av > av) in_row = lane < (T)nj;                 \
                    g = (V)((__typeof__(in_row))g & in_row);                   \
                }                                                              \
                memcpy(v, &g, sizeof g);                                       \
                bsum += g;                                                     \
            } else {                                                           \
                /* (summed as scalars: a vector load of v right after these    \
                 * narrow stores would wait for them) */                       \
                ACT_GRAD(a + i * OW + j0, da + i * OW + j0, v, nj, code);      \
                for (Py_ssize_t j = nj; j < LANES; j++) v[j] = 0;              \
                for (Py_ssize_t j = 0; j < nj; j++) tail += v[j];              \
            }                                                                  \
        }                                                                      \
    }                                                                          \
    T total = 0;                                                               \
    for (int j = 0; j < LANES; j++) total += bsum[j];                          \
    return total + tail;

static inline float fg_dense_dz_f(const float *a, const float *da, Py_ssize_t OH,
                                  Py_ssize_t OW, Py_ssize_t n_jb, int code, float *out)
{
    FG_DENSE_DZ_BODY(float, fg_vf, FG_VF, fg_act_grad_to_f)
}

static inline double fg_dense_dz_d(const double *a, const double *da, Py_ssize_t OH,
                                   Py_ssize_t OW, Py_ssize_t n_jb, int code, double *out)
{
    FG_DENSE_DZ_BODY(double, fg_vd, FG_VD, fg_act_grad_to_d)
}

/* ------------------------------------------------- patch-row gradients */
/* drows[pos·ckkp + k] = Σ_f G[f·n_pos + pos] · w[f·ckkp + k] (k < ckkp) for
 * every position (the gradient of its patch row; w: the weights, rows padded
 * to ckkp with zeros): the nonzero gradients of a position gathered without
 * branches (filters in increasing order), then up to 8 vectors of its row
 * summed over them in registers (a loop without the tests when all 8 are
 * there) and stored once. gvals / fidx: room for F
 * values. ckkp is a multiple of 16. */
#define FG_DX_TERM(k)                                                          \
    if (nv > k) { memcpy(&x, w + k * fg_lanes_, sizeof x); e##k += gv * x; }
#define FG_DX_TERM8(k) { memcpy(&x, w + k * fg_lanes_, sizeof x); e##k += gv * x; }
#define FG_DX_PUT(k)                                                           \
    if (nv > k) memcpy(out + (v0 + k) * fg_lanes_, &e##k, sizeof e##k);
#define FG_DX_ALL(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define FG_DX_ROWS_BODY(T, V, LANES)                                           \
    typedef T fg_t_;                                                           \
    enum { fg_lanes_ = LANES };                                                \
    Py_ssize_t nvec = ckkp / LANES;                                            \
    for (Py_ssize_t pos = 0; pos < n_pos; pos++) {                             \
        Py_ssize_t n = 0;                                                      \
        for (Py_ssize_t f = 0; f < F; f++) {                                   \
            T gv = G[f * n_pos + pos];                                         \
            gvals[n] = gv;                                                     \
            fidx[n] = (int)f;                                                  \
            n += gv != (T)0;                                                   \
        }                                                                      \
        T *out = drows + pos * ckkp;                                           \
        for (Py_ssize_t v0 = 0; v0 < nvec; v0 += 8) {                          \
            Py_ssize_t nv = nvec - v0 < 8 ? nvec - v0 : 8;                     \
            V e0 = {0}, e1 = {0}, e2 = {0}, e3 = {0};                          \
            V e4 = {0}, e5 = {0}, e6 = {0}, e7 = {0};                          \
            V x;                                                               \
            if (nv == 8) {                                                     \
                for (Py_ssize_t j = 0; j < n; j++) {                           \
                    T gv = gvals[j];                                           \
                    const T *w = wpad + fidx[j] * ckkp + v0 * LANES;           \
                    FG_DX_ALL(FG_DX_TERM8)                                     \
                }                                                              \
            } else {                                                           \
                for (Py_ssize_t j = 0; j < n; j++) {                           \
                    T gv = gvals[j];                                           \
                    const T *w = wpad + fidx[j] * ckkp + v0 * LANES;           \
                    FG_DX_ALL(FG_DX_TERM)                                      \
                }                                                              \
            }                                                                  \
            FG_DX_ALL(FG_DX_PUT)                                               \
        }                                                                      \
    }                                                                          \
    (void)sizeof(fg_t_);

static inline void fg_dx_rows_f(const float *restrict G, Py_ssize_t F, Py_ssize_t n_pos,
                                const float *restrict wpad, Py_ssize_t ckkp,
                                float *restrict gvals, int *restrict fidx,
                                float *restrict drows)
{
    FG_DX_ROWS_BODY(float, fg_vf, FG_VF)
}

static inline void fg_dx_rows_d(const double *restrict G, Py_ssize_t F, Py_ssize_t n_pos,
                                const double *restrict wpad, Py_ssize_t ckkp,
                                double *restrict gvals, int *restrict fidx,
                                double *restrict drows)
{
    FG_DX_ROWS_BODY(double, fg_vd, FG_VD)
}

/* ------------------------------------------------ patch rows (im2col) */
/* The patch rows of one output row of a stride-1 convolution with 3-wide
 * kernels: rows[j·ckkp + 3·cp + q] = x[xoff[3·cp] + j + q] for the row's OW
 * outputs j, the n_cp channels and kernel rows cp and q < 3; zeros from
 * 3·n_cp to ckkp. Each run of three taps is one 4-value move (its fourth
 * value lands where the next run starts, or on the padding zeroed after),
 * except for the last output, whose fourth value would lie past the padded
 * sample row, and when the runs fill the row to its end. */
#define FG_PATCH_ROW3_BODY(T)                                                  \
    Py_ssize_t ckk = 3 * n_cp;                                                 \
    for (Py_ssize_t j = 0; j < OW; j++) {                                      \
        T *r = rows + j * ckkp;                                                \
        if (j + 1 < OW && ckk < ckkp) {                                        \
            for (Py_ssize_t cp = 0; cp < n_cp; cp++)                           \
                memcpy(r + 3 * cp, x + xoff[3 * cp] + j, 4 * sizeof(T));       \
        } else {                                                               \
            for (Py_ssize_t cp = 0; cp < n_cp; cp++) {                         \
                const T *src = x + xoff[3 * cp] + j;                           \
                r[3 * cp] = src[0];                                            \
                r[3 * cp + 1] = src[1];                                        \
                r[3 * cp + 2] = src[2];                                        \
            }                                                                  \
        }                                                                      \
        for (Py_ssize_t k = ckk; k < ckkp; k++) r[k] = 0;                      \
    }

static inline void fg_patch_row3_f(const float *restrict x, const Py_ssize_t *restrict xoff,
                                   Py_ssize_t n_cp, Py_ssize_t OW, Py_ssize_t ckkp,
                                   float *restrict rows)
{
    FG_PATCH_ROW3_BODY(float)
}

static inline void fg_patch_row3_d(const double *restrict x, const Py_ssize_t *restrict xoff,
                                   Py_ssize_t n_cp, Py_ssize_t OW, Py_ssize_t ckkp,
                                   double *restrict rows)
{
    FG_PATCH_ROW3_BODY(double)
}

/* ------------------------------------------------------ fold (col2im) */
/* The input gradient of one output row of a stride-1 convolution with
 * 3-wide kernels: for each channel and kernel row (n_cp of them, taps
 * 3·cp .. 3·cp + 2 of the patch rows), dxp[xoff[3·cp] + j + q] +=
 * rows[j·ckkp + 3·cp + q] over the row's OW outputs j and q < 3. Sweeping j,
 * the two partial sums still open stay in registers: one read-modify-write
 * of dxp per output instead of three. */
#define FG_FOLD_ROW3_BODY(T)                                                   \
    for (Py_ssize_t cp = 0; cp < n_cp; cp++) {                                 \
        T *d = dxp + xoff[3 * cp];                                             \
        const T *r = rows + 3 * cp;                                            \
        T s0 = 0, s1 = 0;                                                      \
        for (Py_ssize_t j = 0; j < OW; j++) {                                  \
            const T *rj = r + j * ckkp;                                        \
            d[j] += s0 + rj[0];                                                \
            s0 = s1 + rj[1];                                                   \
            s1 = rj[2];                                                        \
        }                                                                      \
        d[OW] += s0;                                                           \
        d[OW + 1] += s1;                                                       \
    }

static inline void fg_fold_row3_f(const float *restrict rows, Py_ssize_t ckkp, Py_ssize_t OW,
                                  const Py_ssize_t *xoff, Py_ssize_t n_cp,
                                  float *restrict dxp)
{
    FG_FOLD_ROW3_BODY(float)
}

static inline void fg_fold_row3_d(const double *restrict rows, Py_ssize_t ckkp, Py_ssize_t OW,
                                  const Py_ssize_t *xoff, Py_ssize_t n_cp,
                                  double *restrict dxp)
{
    FG_FOLD_ROW3_BODY(double)
}

/* ----------------------------------------------- pooled weight gradient */
/* dw[0:ckkp] += Σ_t g_t · rows[pos_t] over the n_out outputs of one filter,
 * g_t = da[t]·f'(a[t]), pos_t = am[t] (or t when am is NULL); returns Σ_t g_t,
 * the bias gradient's share. The g_t of each chunk of outputs are first
 * gathered: all of them after a pooling (am given: few are 0, a whole window
 * at or below 0, so skipping them costs more than it saves), else the
 * nonzero ones without branches (half of them are 0 after a ReLU, in no
 * predictable order); the products are then
 * summed in vector registers, up to 4 vectors of dw per pass, the even and
 * the odd terms of a chunk in two sets of sums added at its end (two
 * independent chains of additions: a fixed order, whatever the threads).
 * ckkp is a multiple of 16. */
#define FG_ROWS_CHUNK 256
#define FG_ROWS_GATHER(T, GV)                                                   \
    if (am != NULL) {                                                           \
        for (Py_ssize_t t = t0; t < stop; t++) {                                \
            gvals[t - t0] = GV;                                                 \
            offs[t - t0] = (Py_ssize_t)am[t] * ckkp;                            \
        }                                                                       \
        n = stop - t0;                                                          \
    } else {                                                                    \
        for (Py_ssize_t t = t0; t < stop; t++) {                                \
            T gv = GV;                                                          \
            gvals[n] = gv;                                                      \
            offs[n] = t * ckkp;                                                 \
            n += gv != zero;                                                    \
        }                                                                       \
    }
#define FG_ROWS_TERM(k, x, r, acc)                                              \
    if (nv > k) { memcpy(&x, (r) + k * lanes, sizeof x); acc##k += gv * x; }
#define FG_ROWS_WGRAD_BODY(T, V, LANES, SLOPE, SUM)                             \
    T bsum = 0, zero = 0, one = 1;                                              \
    T gvals[FG_ROWS_CHUNK];                                                     \
    Py_ssize_t offs[FG_ROWS_CHUNK];                                             \
    const Py_ssize_t lanes = LANES;                                             \
    Py_ssize_t nvec = ckkp / LANES;                                             \
    for (Py_ssize_t t0 = 0; t0 < n_out; t0 += FG_ROWS_CHUNK) {                  \
        Py_ssize_t stop = n_out - t0 < FG_ROWS_CHUNK ? n_out : t0 + FG_ROWS_CHUNK; \
        Py_ssize_t n = 0;                                                       \
        if (code == FG_RELU) {                                                  \
            FG_ROWS_GATHER(T, da[t] * (a[t] > zero ? one : zero))               \
        } else {                                                                \
            FG_ROWS_GATHER(T, da[t] * SLOPE(a[t], code))                        \
        }                                                                       \
        bsum += SUM(gvals, n);                                                  \
        for (Py_ssize_t v0 = 0; v0 < nvec; v0 += 4) {                           \
            Py_ssize_t nv = nvec - v0 < 4 ? nvec - v0 : 4;                      \
            T *out = dw + v0 * LANES;                                           \
            V e0 = {0}, e1 = {0}, e2 = {0}, e3 = {0};                           \
            V o0 = {0}, o1 = {0}, o2 = {0}, o3 = {0};                           \
            V x;                                                                \
            Py_ssize_t j = 0;                                                   \
            for (; j + 1 < n; j += 2) {                                         \
                T gv = gvals[j];                                                \
                const T *r = rows + offs[j] + v0 * LANES;                       \
                FG_ROWS_TERM(0, x, r, e) FG_ROWS_TERM(1, x, r, e)               \
                FG_ROWS_TERM(2, x, r, e) FG_ROWS_TERM(3, x, r, e)               \
                gv = gvals[j + 1];                                              \
                r = rows + offs[j + 1] + v0 * LANES;                            \
                FG_ROWS_TERM(0, x, r, o) FG_ROWS_TERM(1, x, r, o)               \
                FG_ROWS_TERM(2, x, r, o) FG_ROWS_TERM(3, x, r, o)               \
            }                                                                   \
            if (j < n) {                                                        \
                T gv = gvals[j];                                                \
                const T *r = rows + offs[j] + v0 * LANES;                       \
                FG_ROWS_TERM(0, x, r, e) FG_ROWS_TERM(1, x, r, e)               \
                FG_ROWS_TERM(2, x, r, e) FG_ROWS_TERM(3, x, r, e)               \
            }                                                                   \
            V d;                                                                \
            memcpy(&d, out, sizeof d); d += e0 + o0; memcpy(out, &d, sizeof d); \
            if (nv > 1) { memcpy(&d, out + LANES, sizeof d); d += e1 + o1;      \
                          memcpy(out + LANES, &d, sizeof d); }                  \
            if (nv > 2) { memcpy(&d, out + 2 * LANES, sizeof d); d += e2 + o2;  \
                          memcpy(out + 2 * LANES, &d, sizeof d); }              \
            if (nv > 3) { memcpy(&d, out + 3 * LANES, sizeof d); d += e3 + o3;  \
                          memcpy(out + 3 * LANES, &d, sizeof d); }              \
        }                                                                       \
    }                                                                           \
    return bsum;

static inline float fg_rows_wgrad_f(const float *restrict da, const float *restrict a,
                                    const int *restrict am, Py_ssize_t n_out, int code,
                                    const float *restrict rows, Py_ssize_t ckkp,
                                    float *restrict dw)
{
    FG_ROWS_WGRAD_BODY(float, fg_vf, FG_VF, fg_act_slope_f, fg_sum_f)
}

static inline double fg_rows_wgrad_d(const double *restrict da, const double *restrict a,
                                     const int *restrict am, Py_ssize_t n_out, int code,
                                     const double *restrict rows, Py_ssize_t ckkp,
                                     double *restrict dw)
{
    FG_ROWS_WGRAD_BODY(double, fg_vd, FG_VD, fg_act_slope_d, fg_sum_d)
}

/* ------------------------------------------- batch-invariant dense rows */
/* A tile of FG_DENSE_ROWS rows × 2 vectors of columns of out = x · W:
 * acc[(r·2 + v)·LANES + j] = Σ_k x[r·ldx + k] · w[k·ldw + v·LANES + j].
 * Every output is one chain of multiply-adds over k in ascending order, the
 * same instructions whichever row of the tile it is in, so a row's result
 * does not depend on the rows computed beside it (BLAS, whose blocking
 * depends on the matrix sizes and on a row's position in the call, gives
 * no such promise). w: packed weights, ldw a multiple of 2·LANES. */
#define FG_DENSE_ROWS 4
#define FG_DENSE_TILE_BODY(T, V, LANES)                                        \
    V a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0};                              \
    V a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};                              \
    const T *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;      \
    for (Py_ssize_t k = 0; k < K; k++) {                                       \
        V w0, w1;                                                              \
        memcpy(&w0, w + k * ldw, sizeof w0);                                   \
        memcpy(&w1, w + k * ldw + LANES, sizeof w1);                           \
        T v0 = x0[k], v1 = x1[k], v2 = x2[k], v3 = x3[k];                      \
        a00 += w0 * v0; a01 += w1 * v0;                                        \
        a10 += w0 * v1; a11 += w1 * v1;                                        \
        a20 += w0 * v2; a21 += w1 * v2;                                        \
        a30 += w0 * v3; a31 += w1 * v3;                                        \
    }                                                                          \
    FG_STORE_8(LANES, a00, a01, a10, a11, a20, a21, a30, a31)

static inline void fg_dense_tile_f(const float *restrict x, Py_ssize_t ldx, Py_ssize_t K,
                                   const float *restrict w, Py_ssize_t ldw,
                                   float *restrict acc)
{
    FG_DENSE_TILE_BODY(float, fg_vf, FG_VF)
}

static inline void fg_dense_tile_d(const double *restrict x, Py_ssize_t ldx, Py_ssize_t K,
                                   const double *restrict w, Py_ssize_t ldw,
                                   double *restrict acc)
{
    FG_DENSE_TILE_BODY(double, fg_vd, FG_VD)
}

/* ---------------------------------------------- narrow dense layers */
/* A dense layer with few outputs (a classifier's output layer: M of them
 * over K inputs, K large) is a poor BLAS shape: a vector of M outputs uses
 * few lanes and the products are too thin to amortise the library's
 * packing. Here the lanes run over the inputs k instead, against columns
 * of W gathered into vectors: groups of G outputs whose sums stay in
 * registers over a block of inputs (forward) or the whole batch
 * (backward). Every output is a fixed chain of multiply-adds over k, lanes
 * summed in a fixed order. */
#if FG_VEC_BYTES >= 64
#define FG_NG_MAX 8   /* forward: 2 rows × 8 outputs of sums, 8 weights */
#define FG_NGB_MAX 12 /* backward: 12 weight vectors, 12 sums, 4 more */
#else
#define FG_NG_MAX 4
#define FG_NGB_MAX 6
#endif
#define FG_NG_ALL(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

/* v = x[0 : width] with zeros past width (width ≤ LANES), and the reverse
 * store; element by element below a whole vector (no call to memcpy, which
 * would make the compiler keep a loop's sums in memory). */
#define FG_LOAD_PART(v, x, width, LANES)                                       \
    if ((width) == LANES) {                                                    \
        memcpy(&v, (x), sizeof v);                                             \
    } else {                                                                   \
        for (int j_ = 0; j_ < LANES; j_++) v[j_] = j_ < (width) ? (x)[j_] : 0; \
    }
#define FG_STORE_PART(x, v, width, LANES)                                      \
    if ((width) == LANES) {                                                    \
        memcpy((x), &v, sizeof v);                                             \
    } else {                                                                   \
        for (int j_ = 0; j_ < (width); j_++) (x)[j_] = v[j_];                  \
    }

/* The lanes of v summed in index order. */
#define FG_HSUM_FN(NAME, T, V, LANES)                                          \
    static inline T NAME(V v)                                                  \
    {                                                                          \
        T s = v[0];                                                            \
        for (int j = 1; j < LANES; j++) s += v[j];                             \
        return s;                                                              \
    }
FG_HSUM_FN(fg_hsum_vf, float, fg_vf, FG_VF)
FG_HSUM_FN(fg_hsum_vd, double, fg_vd, FG_VD)
#define FG_HSUM(v) _Generic((v), fg_vf: fg_hsum_vf, fg_vd: fg_hsum_vd)(v)

/* The vector of p[j·stride] for j < width (zeros past width). */
static inline fg_vf fg_gather_col_f(const float *p, Py_ssize_t stride, Py_ssize_t width)
{
    fg_vf v = {0};
#if defined(__AVX512F__)
    if (width == 16 && 15 * stride < (1 << 28)) {
        __m512i index = _mm512_mullo_epi32(
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            _mm512_set1_epi32((int)stride));
        __m512 g = _mm512_i32gather_ps(index, p, 4);
        memcpy(&v, &g, sizeof v);
        return v;
    }
#endif
    for (Py_ssize_t j = 0; j < width; j++) v[j] = p[j * stride];
    return v;
}

static inline fg_vd fg_gather_col_d(const double *p, Py_ssize_t stride, Py_ssize_t width)
{
    fg_vd v = {0};
    for (Py_ssize_t j = 0; j < width; j++) v[j] = p[j * stride];
    return v;
}
#define FG_GATHER_COL(p, stride, width)                                        \
    _Generic((p), const float *: fg_gather_col_f, float *: fg_gather_col_f,    \
             const double *: fg_gather_col_d, double *: fg_gather_col_d)(p, stride, width)

/* wt[m·ldwt + j] = w[j·M + m] for j < width, m < M (w: width rows of the
 * weights), zeros for width ≤ j < ldwt: a vector of j at a time. */
#define FG_TRANSPOSE_FN(NAME, T, V, LANES)                                     \
    static inline void NAME(const T *w, Py_ssize_t width, Py_ssize_t M, T *wt, \
                            Py_ssize_t ldwt)                                   \
    {                                                                          \
        for (Py_ssize_t j = 0; j < ldwt; j += LANES) {                         \
            Py_ssize_t part = width - j < LANES ? (width - j > 0 ? width - j : 0) : LANES; \
            for (Py_ssize_t m = 0; m < M; m++) {                               \
                V v = FG_GATHER_COL(w + j * M + m, M, part);                   \
                memcpy(wt + m * ldwt + j, &v, sizeof v);                       \
            }                                                                  \
        }                                                                      \
    }
FG_TRANSPOSE_FN(fg_transpose_f, float, fg_vf, FG_VF)
FG_TRANSPOSE_FN(fg_transpose_d, double, fg_vd, FG_VD)

#define FG_NF_LOAD(g)                                                          \
    fg_v_ a##g = {0}, b##g = {0};                                              \
    if (g < fg_g_ && !first) {                                                 \
        memcpy(&a##g, acc + g * fg_lanes_, sizeof a##g);                       \
        memcpy(&b##g, acc + (fg_g_ + g) * fg_lanes_, sizeof b##g);             \
    }
#define FG_NF_FMA(g)                                                           \
    if (g < fg_g_) {                                                           \
        fg_v_ w;                                                               \
        memcpy(&w, wt + g * ldwt + k0, sizeof w);                              \
        FG_IN_REGISTER(w);                                                     \
        a##g += x0 * w;                                                        \
        b##g += x1 * w;                                                        \
    }
#define FG_NF_STORE(g)                                                         \
    if (g < fg_g_) {                                                           \
        memcpy(acc + g * fg_lanes_, &a##g, sizeof a##g);                       \
        memcpy(acc + (fg_g_ + g) * fg_lanes_, &b##g, sizeof b##g);             \
    }
/* For a group of G outputs g: acc's vector g (+)= x0[k] · wt[g·ldwt + k]
 * lane by lane over the k < K, vector G + g likewise for x1 (x1 = x0 for
 * a lone row); "=" if first. wt: the group's rows of transposed weights,
 * readable (zero) up to whole vectors. fg_narrow_sums_* sums the lanes. */
#define FG_NARROW_FWD_FN(NAME, T, V, LANES, G)                                 \
    static __attribute__((noinline, unused)) void NAME(                        \
        const T *restrict x0p, const T *restrict x1p, Py_ssize_t K,            \
        const T *restrict wt, Py_ssize_t ldwt, int first, T *restrict acc)     \
    {                                                                          \
        typedef V fg_v_;                                                       \
        enum { fg_g_ = G, fg_lanes_ = LANES };                                 \
        FG_NG_ALL(FG_NF_LOAD)                                                  \
        Py_ssize_t k0 = 0;                                                     \
        for (; k0 + LANES <= K; k0 += LANES) {                                 \
            V x0, x1;                                                          \
            memcpy(&x0, x0p + k0, sizeof x0);                                  \
            memcpy(&x1, x1p + k0, sizeof x1);                                  \
            FG_NG_ALL(FG_NF_FMA)                                               \
        }                                                                      \
        if (k0 < K) {                                                          \
            V x0, x1;                                                          \
            FG_LOAD_PART(x0, x0p + k0, K - k0, LANES)                          \
            FG_LOAD_PART(x1, x1p + k0, K - k0, LANES)                          \
            FG_NG_ALL(FG_NF_FMA)                                               \
        }                                                                      \
        FG_NG_ALL(FG_NF_STORE)                                                 \
    }

/* out0[g] = lanes of acc's vector g summed, out1[g] those of vector G + g,
 * for g < min(G, n_out). */
#define FG_NARROW_SUMS_FN(NAME, T, V, LANES)                                   \
    static inline void NAME(const T *acc, int G, Py_ssize_t n_out, T *out0, T *out1) \
    {                                                                          \
        for (int g = 0; g < G && g < n_out; g++) {                             \
            V a, b;                                                            \
            memcpy(&a, acc + g * LANES, sizeof a);                             \
            memcpy(&b, acc + (G + g) * LANES, sizeof b);                       \
            out0[g] = FG_HSUM(a);                                              \
            out1[g] = FG_HSUM(b);                                              \
        }                                                                      \
    }
FG_NARROW_SUMS_FN(fg_narrow_sums_f, float, fg_vf, FG_VF)
FG_NARROW_SUMS_FN(fg_narrow_sums_d, double, fg_vd, FG_VD)

#define FG_NB_INIT(g)                                                          \
    fg_v_ w##g = {0}, s##g = {0};                                              \
    if (g < fg_g_ && g < n_out) w##g = FG_GATHER_COL(w + g, ldw, width);
#define FG_NB_FMA(g)                                                           \
    if (g < fg_g_) {                                                           \
        fg_t_ d = dzr[g];                                                      \
        s##g += x * d;                                                         \
        if (g % 2 == 0) dxa += w##g * d; else dxb += w##g * d;                \
    }
#define FG_NB_PUT(g)                                                           \
    if (g < fg_g_ && g < n_out) {                                              \
        for (Py_ssize_t j = 0; j < width; j++) dw[j * ldw + g] = s##g[j];      \
    }
/* For the inputs k0 .. k0 + width (width ≤ LANES) and one group of G outputs
 * (the first min(n_out, G) real): dw[j·ldw + g] = Σ_r x[r·K + k0 + j] ·
 * dz[r·ldz + g] over the n rows, and, unless dx is NULL, dx[r·K + k0 + j]
 * (+)= Σ_g dz[r·ldz + g] · w[j·ldw + g] ("=" if first); w and dw point at
 * row k0, column g0 of the weights and of their gradient (ldw columns). dz
 * has G readable values per row (zeros past the outputs). The group's
 * weights stay in registers for the whole batch. */
#define FG_NARROW_BWD_FN(NAME, T, V, LANES, G)                                 \
    static __attribute__((noinline, unused)) void NAME(                        \
        const T *restrict X, Py_ssize_t n, Py_ssize_t K, Py_ssize_t k0,        \
        Py_ssize_t width, const T *restrict dz, Py_ssize_t ldz,                \
        const T *restrict w, Py_ssize_t n_out, T *restrict dw, Py_ssize_t ldw, \
        T *restrict dx, int first)                                             \
    {                                                                          \
        typedef T fg_t_;                                                       \
        typedef V fg_v_;                                                       \
        enum { fg_g_ = G };                                                    \
        FG_NG_ALL(FG_NB_INIT)                                                  \
        for (Py_ssize_t r = 0; r < n; r++) {                                   \
            const T *dzr = dz + r * ldz;                                       \
            V x, dxa = {0}, dxb = {0};                                         \
            FG_LOAD_PART(x, X + r * K + k0, width, LANES)                      \
            FG_NG_ALL(FG_NB_FMA)                                               \
            if (dx != NULL) {                                                  \
                T *dxr = dx + r * K + k0;                                      \
                V sum = dxa + dxb;                                             \
                if (!first) {                                                  \
                    V old;                                                     \
                    FG_LOAD_PART(old, dxr, width, LANES)                       \
                    sum += old;                                                \
                }                                                              \
                FG_STORE_PART(dxr, sum, width, LANES)                          \
            }                                                                  \
        }                                                                      \
        FG_NG_ALL(FG_NB_PUT)                                                   \
    }

#define FG_NARROW_VARIANTS(G)                                                  \
    FG_NARROW_FWD_FN(fg_narrow_fwd##G##_f, float, fg_vf, FG_VF, G)             \
    FG_NARROW_FWD_FN(fg_narrow_fwd##G##_d, double, fg_vd, FG_VD, G)            \
    FG_NARROW_BWD_FN(fg_narrow_bwd##G##_f, float, fg_vf, FG_VF, G)             \
    FG_NARROW_BWD_FN(fg_narrow_bwd##G##_d, double, fg_vd, FG_VD, G)
#define FG_NARROW_BWD_VARIANTS(G)                                              \
    FG_NARROW_BWD_FN(fg_narrow_bwd##G##_f, float, fg_vf, FG_VF, G)             \
    FG_NARROW_BWD_FN(fg_narrow_bwd##G##_d, double, fg_vd, FG_VD, G)
FG_NARROW_VARIANTS(1)
FG_NARROW_VARIANTS(2)
FG_NARROW_VARIANTS(3)
FG_NARROW_VARIANTS(4)
#if FG_VEC_BYTES >= 64
FG_NARROW_VARIANTS(5)
FG_NARROW_VARIANTS(6)
FG_NARROW_VARIANTS(7)
FG_NARROW_VARIANTS(8)
FG_NARROW_BWD_VARIANTS(9)
FG_NARROW_BWD_VARIANTS(10)
FG_NARROW_BWD_VARIANTS(11)
FG_NARROW_BWD_VARIANTS(12)
#else
FG_NARROW_BWD_VARIANTS(5)
FG_NARROW_BWD_VARIANTS(6)
#endif

/* Outputs per group for M outputs when at most `most` fit the registers:
 * as few groups as that allows, of equal size (10 outputs, 8 at most: two
 * groups of 5, not 8 + 2). */
static inline int fg_narrow_group(Py_ssize_t M, int most)
{
    Py_ssize_t groups = (M + most - 1) / most;
    return (int)((M + groups - 1) / groups);
}
static inline int fg_narrow_fwd_group(Py_ssize_t M) { return fg_narrow_group(M, FG_NG_MAX); }
static inline int fg_narrow_bwd_group(Py_ssize_t M) { return fg_narrow_group(M, FG_NGB_MAX); }

/* The variant of G outputs (1 ≤ G ≤ FG_NG_MAX forward, FG_NGB_MAX backward). */
#define FG_NARROW_CASE(G, KIND, SUFFIX, ARGS)                                  \
    case G: fg_narrow_##KIND##G##_##SUFFIX ARGS; break;
#define FG_NARROW_CASES_4(KIND, SUFFIX, ARGS)                                  \
    FG_NARROW_CASE(1, KIND, SUFFIX, ARGS) FG_NARROW_CASE(2, KIND, SUFFIX, ARGS) \
    FG_NARROW_CASE(3, KIND, SUFFIX, ARGS) FG_NARROW_CASE(4, KIND, SUFFIX, ARGS)
#define FG_NARROW_CASES_5_8(KIND, SUFFIX, ARGS)                                \
    FG_NARROW_CASE(5, KIND, SUFFIX, ARGS) FG_NARROW_CASE(6, KIND, SUFFIX, ARGS) \
    FG_NARROW_CASE(7, KIND, SUFFIX, ARGS) FG_NARROW_CASE(8, KIND, SUFFIX, ARGS)
#define FG_NARROW_CASES_9_12(KIND, SUFFIX, ARGS)                               \
    FG_NARROW_CASE(9, KIND, SUFFIX, ARGS) FG_NARROW_CASE(10, KIND, SUFFIX, ARGS) \
    FG_NARROW_CASE(11, KIND, SUFFIX, ARGS) FG_NARROW_CASE(12, KIND, SUFFIX, ARGS)
#if FG_VEC_BYTES >= 64
#define FG_NARROW_FWD_SWITCH(SUFFIX, ARGS)                                     \
    switch (G) { FG_NARROW_CASES_4(fwd, SUFFIX, ARGS) FG_NARROW_CASES_5_8(fwd, SUFFIX, ARGS) }
#define FG_NARROW_BWD_SWITCH(SUFFIX, ARGS)                                     \
    switch (G) {                                                               \
        FG_NARROW_CASES_4(bwd, SUFFIX, ARGS) FG_NARROW_CASES_5_8(bwd, SUFFIX, ARGS) \
        FG_NARROW_CASES_9_12(bwd, SUFFIX, ARGS)                                \
    }
#else
#define FG_NARROW_FWD_SWITCH(SUFFIX, ARGS) switch (G) { FG_NARROW_CASES_4(fwd, SUFFIX, ARGS) }
#define FG_NARROW_BWD_SWITCH(SUFFIX, ARGS)                                     \
    switch (G) {                                                               \
        FG_NARROW_CASES_4(bwd, SUFFIX, ARGS)                                   \
        FG_NARROW_CASE(5, bwd, SUFFIX, ARGS) FG_NARROW_CASE(6, bwd, SUFFIX, ARGS) \
    }
#endif
#define FG_NARROW_FWD_ARGS (x0p, x1p, K, wt, ldwt, first, acc)
#define FG_NARROW_BWD_ARGS (X, n, K, k0, width, dz, ldz, w, n_out, dw, ldw, dx, first)

#define FG_NARROW_DISPATCH_FNS(T, SUFFIX)                                      \
    static inline void fg_narrow_fwd_##SUFFIX(int G, const T *x0p, const T *x1p, \
                                              Py_ssize_t K, const T *wt,       \
                                              Py_ssize_t ldwt, int first, T *acc) \
    {                                                                          \
        FG_NARROW_FWD_SWITCH(SUFFIX, FG_NARROW_FWD_ARGS)                       \
    }                                                                          \
    static inline void fg_narrow_bwd_##SUFFIX(                                 \
        int G, const T *X, Py_ssize_t n, Py_ssize_t K, Py_ssize_t k0,          \
        Py_ssize_t width, const T *dz, Py_ssize_t ldz, const T *w,             \
        Py_ssize_t n_out, T *dw, Py_ssize_t ldw, T *dx, int first)             \
    {                                                                          \
        FG_NARROW_BWD_SWITCH(SUFFIX, FG_NARROW_BWD_ARGS)                       \
    }
FG_NARROW_DISPATCH_FNS(float, f)
FG_NARROW_DISPATCH_FNS(double, d)

#endif
