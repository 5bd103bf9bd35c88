/* The per-batch arithmetic of the network trainer (_train_steps.pxi): the
 * optimizer updates of a flat parameter buffer and the output losses.
 *
 * Ahead-of-time code, so that a network fit made only of ahead-of-time
 * layers never imports Numba. Each formula is written as the Numba kernels
 * of the linear engine write it (fastgd/_kernels/common/optimizers.py:
 * the same operations in the same order, in the buffers' type), and
 * multiply-adds are not fused in this file, so an update gives the same
 * bits as theirs and as the row-sparse steps of a sparse first layer.
 * Codes match fastgd/_kernels/runtime/codes.py (tested).
 */
#ifndef FASTGD_TRAIN_STEPS_H
#define FASTGD_TRAIN_STEPS_H

#include <math.h>

#define FG_SGD 0
#define FG_MOMENTUM 1
#define FG_NESTEROV 2
#define FG_ADAGRAD 3
#define FG_RMSPROP 4
#define FG_ADAM 5

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
/* No fused multiply-adds: they round once where the reference rounds twice.
 * (setup.py builds without errno for sqrt, so that the loops vectorise.) */
#pragma GCC optimize("fp-contract=off")
#endif

/* The constants of one update, in the buffers' type (computed by the caller
 * in double precision from the optimizer's settings, then rounded). */
#define FG_STEP_BODY(T, SQRT)                                                  \
    if (optimizer == FG_SGD) {                                                 \
        for (Py_ssize_t j = 0; j < n; j++) p[j] -= lr * g[j];                  \
    } else if (optimizer == FG_MOMENTUM) {                                     \
        for (Py_ssize_t j = 0; j < n; j++) {                                   \
            T v = mu * s1[j] - lr * g[j];                                      \
            s1[j] = v;                                                         \
            p[j] += v;                                                         \
        }                                                                      \
    } else if (optimizer == FG_NESTEROV) {                                     \
        for (Py_ssize_t j = 0; j < n; j++) {                                   \
            T gj = g[j];                                                       \
            T v = mu * s1[j] - lr * gj;                                        \
            s1[j] = v;                                                         \
            p[j] = p[j] + mu * v - lr * gj;                                    \
        }                                                                      \
    } else if (optimizer == FG_ADAGRAD) {                                      \
        for (Py_ssize_t j = 0; j < n; j++) {                                   \
            T gj = g[j];                                                       \
            T s = s2[j] + gj * gj;                                             \
            s2[j] = s;                                                         \
            p[j] -= lr / (SQRT(s) + eps) * gj;                                 \
        }                                                                      \
    } else if (optimizer == FG_RMSPROP) {                                      \
        for (Py_ssize_t j = 0; j < n; j++) {                                   \
            T gj = g[j];                                                       \
            T s = b2 * s2[j] + c2 * gj * gj;                                   \
            s2[j] = s;                                                         \
            p[j] -= lr / (SQRT(s) + eps) * gj;                                 \
        }                                                                      \
    } else { /* Adam, bias corrections folded into step and inv_bias_2 */     \
        for (Py_ssize_t j = 0; j < n; j++) {                                   \
            T gj = g[j];                                                       \
            T m = b1 * s1[j] + c1 * gj;                                        \
            T v = b2 * s2[j] + c2 * gj * gj;                                   \
            s1[j] = m;                                                         \
            s2[j] = v;                                                         \
            p[j] -= step * m / (SQRT(v * inv_bias_2) + eps);                   \
        }                                                                      \
    }

/* One update of p[0:n] from its gradient g and state s1, s2 (see
 * optimizers.py for the rules): lr the learning rate, mu the momentum,
 * b1 = β₁, c1 = 1 − β₁, b2 = β₂, c2 = 1 − β₂, step = lr / (1 − β₁ᵗ),
 * inv_bias_2 = 1 / (1 − β₂ᵗ). */
static void fg_optimizer_step_f(float *restrict p, const float *restrict g,
                                float *restrict s1, float *restrict s2, Py_ssize_t n,
                                int optimizer, float lr, float mu, float b1, float c1,
                                float b2, float c2, float eps, float step, float inv_bias_2)
{
    FG_STEP_BODY(float, sqrtf)
}

static void fg_optimizer_step_d(double *restrict p, const double *restrict g,
                                double *restrict s1, double *restrict s2, Py_ssize_t n,
                                int optimizer, double lr, double mu, double b1, double c1,
                                double b2, double c2, double eps, double step,
                                double inv_bias_2)
{
    FG_STEP_BODY(double, sqrt)
}

/* ------------------------------------------------------------- softmax */
/* m = the largest of the row's K scores s. */
#define FG_ROW_MAX(T)                                                          \
    T m = s[0];                                                                \
    for (Py_ssize_t k = 1; k < K; k++)                                         \
        if (s[k] > m) m = s[k];

/* p = softmax(s) of one row of K scores (stable: the row maximum m is
 * subtracted first; the sum of the exponentials in double precision);
 * *lse = log Σ exp(s − m), *max = m, unless they are NULL. */
#define FG_SOFTMAX_ROW_BODY(T, EXP)                                            \
    FG_ROW_MAX(T)                                                              \
    double total = 0.0;                                                        \
    for (Py_ssize_t k = 0; k < K; k++) {                                       \
        T e = EXP(s[k] - m);                                                   \
        p[k] = e;                                                              \
        total += e;                                                            \
    }                                                                          \
    double inv = 1.0 / total;                                                  \
    for (Py_ssize_t k = 0; k < K; k++) p[k] = (T)(p[k] * inv);                 \
    if (lse != NULL) *lse = log(total);                                        \
    if (max != NULL) *max = m;

static inline void fg_softmax_row_f(const float *s, float *p, Py_ssize_t K, double *lse,
                                    double *max)
{
    FG_SOFTMAX_ROW_BODY(float, expf)
}

static inline void fg_softmax_row_d(const double *s, double *p, Py_ssize_t K, double *lse,
                                    double *max)
{
    FG_SOFTMAX_ROW_BODY(double, exp)
}

/* o = log-softmax(s) of one row: s − (m + log Σ exp(s − m)). */
#define FG_LOG_SOFTMAX_ROW_BODY(T, EXP)                                        \
    FG_ROW_MAX(T)                                                              \
    double total = 0.0;                                                        \
    for (Py_ssize_t k = 0; k < K; k++) total += EXP(s[k] - m);                 \
    double shift = m + log(total);                                             \
    for (Py_ssize_t k = 0; k < K; k++) o[k] = (T)(s[k] - shift);

static inline void fg_log_softmax_row_f(const float *s, float *o, Py_ssize_t K)
{
    FG_LOG_SOFTMAX_ROW_BODY(float, expf)
}

static inline void fg_log_softmax_row_d(const double *s, double *o, Py_ssize_t K)
{
    FG_LOG_SOFTMAX_ROW_BODY(double, exp)
}

/* The weighted mean log-loss of B rows of K scores (row i's class y[i],
 * weight w[i], or 1 when w is NULL); proba gets the softmax, dscores the
 * gradient w_i (proba_i − onehot(y_i)) / Σ w (dscores may be scores: each
 * row is read before it is written). Returns −1 (nothing written past the
 * row) when a class index is outside [0, K), else 0; *loss gets the loss. */
#define FG_SOFTMAX_XENT_BODY(T, ROW)                                           \
    double w_sum = 0.0;                                                        \
    if (w != NULL) {                                                           \
        for (Py_ssize_t i = 0; i < B; i++) w_sum += w[i];                      \
    } else {                                                                   \
        w_sum = (double)B;                                                     \
    }                                                                          \
    double inv_w = w_sum > 0.0 ? 1.0 / w_sum : 0.0;                            \
    double total = 0.0;                                                        \
    for (Py_ssize_t i = 0; i < B; i++) {                                       \
        long long yi = y[i];                                                   \
        if (yi < 0 || yi >= K) return -1;                                      \
        double wi = w != NULL ? (double)w[i] : 1.0;                            \
        const T *s = scores + i * K;                                           \
        T *p = proba + i * K, *d = dscores + i * K;                            \
        double s_y = s[yi], lse, m;                                            \
        ROW(s, p, K, &lse, &m);                                                \
        if (wi != 0.0) total += wi * (lse - (s_y - m));                        \
        double gi = wi * inv_w;                                                \
        for (Py_ssize_t k = 0; k < K; k++) d[k] = (T)(gi * p[k]);              \
        d[yi] = (T)(gi * (p[yi] - 1.0));                                       \
    }                                                                          \
    *loss = total * inv_w;                                                     \
    return 0;

static int fg_softmax_xent_f(const float *scores, const long long *y, const float *w,
                             Py_ssize_t B, Py_ssize_t K, float *proba, float *dscores,
                             double *loss)
{
    FG_SOFTMAX_XENT_BODY(float, fg_softmax_row_f)
}

static int fg_softmax_xent_d(const double *scores, const long long *y, const double *w,
                             Py_ssize_t B, Py_ssize_t K, double *proba, double *dscores,
                             double *loss)
{
    FG_SOFTMAX_XENT_BODY(double, fg_softmax_row_d)
}

/* ------------------------------------------------ masked regression loss */
/* Σ_t λ_t L_t over T tasks of B rows (row-major (B, T) arrays), with
 * L_t = Σ_i mask·ℓ(pred − y) / max(1, Σ_i mask), ℓ the squared error ½ r²
 * (huber 0) or Huber with width delta; dpred = ∂/∂pred, exactly 0 where the
 * mask is 0 (y is never read there); task_losses[t] = L_t. */
#define FG_MASKED_LOSS_BODY(T_)                                                \
    double total = 0.0;                                                        \
    for (Py_ssize_t t = 0; t < T; t++) {                                       \
        double count = 0.0;                                                    \
        for (Py_ssize_t i = 0; i < B; i++) count += mask[i * T + t];           \
        double inv = 1.0 / (count > 1.0 ? count : 1.0);                        \
        double lam = lambdas[t];                                               \
        double loss_t = 0.0;                                                   \
        for (Py_ssize_t i = 0; i < B; i++) {                                   \
            Py_ssize_t at = i * T + t;                                         \
            double m = mask[at];                                               \
            if (m == 0.0) {                                                    \
                dpred[at] = 0;                                                 \
                continue;                                                      \
            }                                                                  \
            double r = (double)pred[at] - (double)y[at], g;                    \
            if (huber && fabs(r) > delta) {                                    \
                loss_t += m * delta * (fabs(r) - 0.5 * delta);                 \
                g = r > 0.0 ? delta : -delta;                                  \
            } else {                                                           \
                loss_t += m * 0.5 * r * r;                                     \
                g = r;                                                         \
            }                                                                  \
            dpred[at] = (T_)(lam * m * g * inv);                               \
        }                                                                      \
        loss_t *= inv;                                                         \
        task_losses[t] = loss_t;                                               \
        total += lam * loss_t;                                                 \
    }                                                                          \
    return total;

static double fg_masked_loss_f(const float *pred, const float *y, const float *mask,
                               const float *lambdas, Py_ssize_t B, Py_ssize_t T, int huber,
                               double delta, float *dpred, double *task_losses)
{
    FG_MASKED_LOSS_BODY(float)
}

static double fg_masked_loss_d(const double *pred, const double *y, const double *mask,
                               const double *lambdas, Py_ssize_t B, Py_ssize_t T, int huber,
                               double delta, double *dpred, double *task_losses)
{
    FG_MASKED_LOSS_BODY(double)
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif
