# Network kernels compiled ahead of time (Cython + C vector extensions).
#
# Included by _network_fast_generic.pyx, _network_fast_avx2.pyx and
# _network_fast_avx512.pyx, which setup.py compiles with different
# instruction sets (FG_VEC_BYTES = vector width); fastgd/_kernels/network/native.py
# imports the best one the CPU runs. Layout NCHW, weights (F, C, KH, KW).
#
# * conv2d_forward: direct convolution (no im2col): each output tile of FG_FB
#   filters × one vector of output columns is accumulated in registers over
#   the C·KH·KW taps of a zero-padded copy of the sample; bias and activation
#   fused. Samples run in parallel; each is computed alone, so a sample's
#   output does not depend on the rest of the batch.
# * conv2d_pool_forward: the same followed by max pooling, one sample at a
#   time through a per-thread buffer; keeps the pooled position (index into
#   the conv plane) of each maximum for the backward pass.
# * conv2d_backward: weight, bias and (optionally) input gradients, from the
#   gradient of the conv output or, after a fused pooling, of the pooled
#   output (only the pooled positions get a gradient). The weight gradient
#   either from the dense output gradient (register tiles of FG_FB filters ×
#   3 taps over vectors of output columns) or from per-sample patch rows
#   (the receptive field of each output, C·KH·KW values): each nonzero
#   output gradient adds g·patch to its filter's gradient. The input
#   gradient: each output's patch-row gradient Σ_f g_f·W[f] summed in
#   registers over its nonzero gradients, then folded back onto the input.
#   Samples are grouped in fixed blocks of GRAD_BLOCK whose partials are
#   summed in block order: results do not depend on the thread count.
# * dense_rows_forward: act(X @ W + b) with every row computed alone (tiles
#   of FG_DENSE_ROWS rows), for predictions that do not depend on the other
#   rows of the call.
# * narrow_dense_forward / narrow_dense_backward: a dense layer with few
#   outputs (a classifier's output layer) for training, lanes over the
#   inputs against columns of the weights gathered into vectors.

from cython.parallel cimport prange, threadid
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

import numpy as np

ctypedef fused floating:
    float
    double

cdef extern from "_simd.h" nogil:
    int FG_FB
    int FG_POOL_SLACK
    int FG_VF
    int FG_VD
    int fg_vec_bytes()
    int fg_cpu_level()
    void fg_conv_row_f(const float *x, const Py_ssize_t *xoff, Py_ssize_t ckk,
                       const float *w, Py_ssize_t stride, Py_ssize_t OW, const float *bias,
                       int n_f, int code, float *out, Py_ssize_t ldf, int spill)
    void fg_conv_row_d(const double *x, const Py_ssize_t *xoff, Py_ssize_t ckk,
                       const double *w, Py_ssize_t stride, Py_ssize_t OW, const double *bias,
                       int n_f, int code, double *out, Py_ssize_t ldf, int spill)
    void fg_wgrad_taps_f(const float *x, const Py_ssize_t *off, Py_ssize_t n, const float *dz,
                         Py_ssize_t OH, Py_ssize_t n_jb, Py_ssize_t WP, Py_ssize_t stride,
                         float *acc)
    void fg_wgrad_taps_d(const double *x, const Py_ssize_t *off, Py_ssize_t n,
                         const double *dz, Py_ssize_t OH, Py_ssize_t n_jb, Py_ssize_t WP,
                         Py_ssize_t stride, double *acc)
    float fg_sum_f(const float *x, Py_ssize_t n)
    double fg_sum_d(const double *x, Py_ssize_t n)
    float fg_rows_wgrad_f(const float *da, const float *a, const int *am, Py_ssize_t n_out,
                          int code, const float *rows, Py_ssize_t ckkp, float *dw)
    double fg_rows_wgrad_d(const double *da, const double *a, const int *am,
                           Py_ssize_t n_out, int code, const double *rows, Py_ssize_t ckkp,
                           double *dw)
    void fg_bias_act_f(float *z, Py_ssize_t n, float bias, int code)
    void fg_bias_act_d(double *z, Py_ssize_t n, double bias, int code)
    void fg_bias_act_rows_f(float *z, Py_ssize_t n_rows, Py_ssize_t n_cols, const float *b,
                            int code)
    void fg_bias_act_rows_d(double *z, Py_ssize_t n_rows, Py_ssize_t n_cols, const double *b,
                            int code)
    void fg_act_grad_f(const float *a, float *da, Py_ssize_t n, int code)
    void fg_act_grad_d(const double *a, double *da, Py_ssize_t n, int code)
    void fg_dx_rows_f(const float *G, Py_ssize_t F, Py_ssize_t n_pos, const float *wpad,
                      Py_ssize_t ckkp, float *gvals, int *fidx, float *drows)
    void fg_dx_rows_d(const double *G, Py_ssize_t F, Py_ssize_t n_pos, const double *wpad,
                      Py_ssize_t ckkp, double *gvals, int *fidx, double *drows)
    void fg_patch_row3_f(const float *x, const Py_ssize_t *xoff, Py_ssize_t n_cp,
                         Py_ssize_t OW, Py_ssize_t ckkp, float *rows)
    void fg_patch_row3_d(const double *x, const Py_ssize_t *xoff, Py_ssize_t n_cp,
                         Py_ssize_t OW, Py_ssize_t ckkp, double *rows)
    void fg_fold_row3_f(const float *rows, Py_ssize_t ckkp, Py_ssize_t OW,
                        const Py_ssize_t *xoff, Py_ssize_t n_cp, float *dxp)
    void fg_fold_row3_d(const double *rows, Py_ssize_t ckkp, Py_ssize_t OW,
                        const Py_ssize_t *xoff, Py_ssize_t n_cp, double *dxp)
    float fg_dense_dz_f(const float *a, const float *da, Py_ssize_t OH, Py_ssize_t OW,
                        Py_ssize_t n_jb, int code, float *out)
    double fg_dense_dz_d(const double *a, const double *da, Py_ssize_t OH, Py_ssize_t OW,
                         Py_ssize_t n_jb, int code, double *out)
    float fg_act_slope_f(float a, int code)
    double fg_act_slope_d(double a, int code)
    float fg_tanh_f(float x)
    double fg_tanh_d(double x)
    float fg_sigmoid_f(float x)
    double fg_sigmoid_d(double x)
    void fg_maxpool_plane_f(const float *a, Py_ssize_t lda, Py_ssize_t W, Py_ssize_t ph,
                            Py_ssize_t pw, Py_ssize_t ps, Py_ssize_t PH, Py_ssize_t PW,
                            float *out, int *idx)
    void fg_maxpool_plane_d(const double *a, Py_ssize_t lda, Py_ssize_t W, Py_ssize_t ph,
                            Py_ssize_t pw, Py_ssize_t ps, Py_ssize_t PH, Py_ssize_t PW,
                            double *out, int *idx)
    int FG_DENSE_ROWS
    void fg_dense_tile_f(const float *x, Py_ssize_t ldx, Py_ssize_t K, const float *w,
                         Py_ssize_t ldw, float *acc)
    void fg_dense_tile_d(const double *x, Py_ssize_t ldx, Py_ssize_t K, const double *w,
                         Py_ssize_t ldw, double *acc)
    int fg_narrow_fwd_group(Py_ssize_t M)
    int fg_narrow_bwd_group(Py_ssize_t M)
    void fg_transpose_f(const float *w, Py_ssize_t width, Py_ssize_t M, float *wt,
                        Py_ssize_t ldwt)
    void fg_transpose_d(const double *w, Py_ssize_t width, Py_ssize_t M, double *wt,
                        Py_ssize_t ldwt)
    void fg_narrow_fwd_f(int G, const float *x0, const float *x1, Py_ssize_t K,
                         const float *wt, Py_ssize_t ldwt, int first, float *acc)
    void fg_narrow_fwd_d(int G, const double *x0, const double *x1, Py_ssize_t K,
                         const double *wt, Py_ssize_t ldwt, int first, double *acc)
    void fg_narrow_sums_f(const float *acc, int G, Py_ssize_t n_out, float *out0, float *out1)
    void fg_narrow_sums_d(const double *acc, int G, Py_ssize_t n_out, double *out0,
                          double *out1)
    void fg_narrow_bwd_f(int G, const float *X, Py_ssize_t n, Py_ssize_t K, Py_ssize_t k0,
                         Py_ssize_t width, const float *dz, Py_ssize_t ldz, const float *w,
                         Py_ssize_t n_out, float *dw, Py_ssize_t ldw, float *dx, int first)
    void fg_narrow_bwd_d(int G, const double *X, Py_ssize_t n, Py_ssize_t K, Py_ssize_t k0,
                         Py_ssize_t width, const double *dz, Py_ssize_t ldz, const double *w,
                         Py_ssize_t n_out, double *dw, Py_ssize_t ldw, double *dx, int first)

# Samples per block of the gradient partials (fixes the arithmetic).
GRAD_BLOCK = 4
cdef Py_ssize_t _GRAD_BLOCK = GRAD_BLOCK
# Filters per register tile of the direct convolution.
FILTERS_PER_TILE = FG_FB


def vector_bytes():
    """Width in bytes of the vector registers this variant was compiled for."""
    return fg_vec_bytes()


def cpu_level():
    """0: generic, 1: AVX2 + FMA, 2: AVX-512 (what this CPU runs)."""
    return fg_cpu_level()


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fg_openmp_threads(void) { return omp_get_max_threads(); }
    #else
    static int fg_openmp_threads(void) { return 1; }
    #endif
    """
    int fg_openmp_threads() nogil


def openmp_threads():
    """OpenMP's thread limit for a parallel region started by the calling thread.

    ``OMP_NUM_THREADS`` sets it, and ``threadpoolctl.threadpool_limits`` (or
    ``torch.set_num_threads``) changes it; 1 where the variant was compiled
    without OpenMP.
    """
    return fg_openmp_threads()


cdef struct Geometry:
    Py_ssize_t C, H, W, F, KH, KW, stride, pad_top, pad_left, OH, OW
    Py_ssize_t lanes    # outputs per register tile row
    Py_ssize_t n_jb     # register tiles per output row
    Py_ssize_t ldp      # row stride of a conv plane padded to whole tiles, n_jb·lanes
    Py_ssize_t HP, WP   # padded sample plane
    Py_ssize_t ckk      # taps per filter, C·KH·KW
    Py_ssize_t ckkp     # ckk rounded up to a multiple of 16 (patch rows)
    Py_ssize_t n_fb     # filter tiles
    Py_ssize_t plane    # C·HP·WP
    Py_ssize_t n_pos    # output positions, OH·OW
    Py_ssize_t dz_tile  # a filter tile's dense output gradient, OH·n_jb·FG_FB·lanes
    Py_ssize_t dz_size  # n_fb of them
    Py_ssize_t acc_size # lane sums of the dense weight gradient, ckk·n_fb·FG_FB vectors


cdef Geometry _geometry(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F, Py_ssize_t KH,
                        Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t pad_top,
                        Py_ssize_t pad_left, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t itemsize):
    cdef Geometry g
    g.C, g.H, g.W, g.F, g.KH, g.KW = C, H, W, F, KH, KW
    g.stride, g.pad_top, g.pad_left, g.OH, g.OW = stride, pad_top, pad_left, OH, OW
    g.lanes = fg_vec_bytes() // itemsize
    g.n_jb = (OW + g.lanes - 1) // g.lanes
    g.ldp = g.n_jb * g.lanes
    g.HP = (OH - 1) * stride + KH
    # Room for every lane of the last tile of a row (their outputs are discarded).
    g.WP = (g.ldp - 1) * stride + KW
    g.ckk = C * KH * KW
    g.ckkp = (g.ckk + 15) // 16 * 16
    g.n_fb = (F + FG_FB - 1) // FG_FB
    g.plane = C * g.HP * g.WP
    g.n_pos = OH * OW
    g.dz_tile = OH * g.n_jb * FG_FB * g.lanes
    g.dz_size = g.n_fb * g.dz_tile
    g.acc_size = g.ckk * g.n_fb * FG_FB * g.lanes
    return g


cdef int _check_geometry(Py_ssize_t C, Py_ssize_t H, Py_ssize_t Wd, Py_ssize_t F,
                        Py_ssize_t C2, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t n_bias,
                        Py_ssize_t stride, Py_ssize_t pad_top, Py_ssize_t pad_left,
                        Py_ssize_t OH, Py_ssize_t OW) except -1:
    if C2 != C:
        raise ValueError("conv2d: W.shape[1] must equal the input channels")
    if n_bias != F:
        raise ValueError("conv2d: b must have W.shape[0] entries")
    if stride < 1 or pad_top < 0 or pad_left < 0:
        raise ValueError("conv2d: stride must be >= 1 and padding >= 0")
    if OH < 1 or OW < 1:
        raise ValueError("conv2d: empty output")
    if (OH - 1) * stride - pad_top >= H or (OW - 1) * stride - pad_left >= Wd:
        raise ValueError("conv2d: output size too large for input and padding")
    if pad_top >= KH + H or pad_left >= KW + Wd:
        raise ValueError("conv2d: padding larger than kernel + input")
    return 0


cdef bint _same_shape(Py_ssize_t* a, Py_ssize_t* b, int ndim):
    cdef int i
    for i in range(ndim):
        if a[i] != b[i]:
            return False
    return True


cdef Py_ssize_t _dx_size(Geometry* g):
    """Workspace values of the input gradient (see :func:`workspace_sizes`)."""
    return g.OH * g.OW * g.ckkp + g.plane + g.F * g.OH * g.OW + g.F * g.ckkp + 2 * g.F


def workspace_sizes(C, H, W, F, KH, KW, stride, pad_top, pad_left, OH, OW, itemsize,
                    pooled, need_dx):
    """Values per thread of the forward and backward workspaces, and per gradient block.

    Returns
    -------
    (forward, backward, partial) : tuple of int
        ``forward``: padded sample plus (``pooled``) the sample's conv
        output and the few values the vectorised pooling reads past it;
        ``backward``: padded sample, patch rows, the dense output gradient
        and, with ``need_dx``, the patch rows' gradient, the padded input
        gradient, the output gradient by filter, the padded weights and
        room for one position's nonzero gradients;
        ``partial``: one block's weight and bias gradient partial.
    """
    cdef Geometry g = _geometry(C, H, W, F, KH, KW, stride, pad_top, pad_left, OH, OW,
                                itemsize)
    forward = g.plane + (F * OH * g.ldp + FG_POOL_SLACK if pooled else 0)
    backward = g.plane + OH * OW * g.ckkp + g.dz_size + g.acc_size
    if need_dx:
        backward += _dx_size(&g)
    return forward, backward, F * g.ckkp + F


def packed_weights_size(F, C, KH, KW):
    """Values of the filter-tile copy of the weights :func:`pack_weights` fills."""
    n_fb = (F + FG_FB - 1) // FG_FB
    return n_fb * C * KH * KW * FG_FB


cdef void _fill_offsets(Geometry* g, Py_ssize_t* xoff) noexcept nogil:
    cdef Py_ssize_t c, p, q, k = 0
    for c in range(g.C):
        for p in range(g.KH):
            for q in range(g.KW):
                xoff[k] = (c * g.HP + p) * g.WP + q
                k += 1


cdef void _pad_copy(const floating* x, floating* xp, Geometry* g) noexcept nogil:
    """xp (C, HP, WP) = the sample x (C, H, W) shifted by the padding, zeros around."""
    cdef Py_ssize_t c, h, rows, cols
    memset(xp, 0, g.plane * sizeof(floating))
    rows = min(g.H, g.HP - g.pad_top)
    cols = min(g.W, g.WP - g.pad_left)
    if cols <= 0:
        return
    for c in range(g.C):
        for h in range(rows):
            memcpy(xp + (c * g.HP + g.pad_top + h) * g.WP + g.pad_left,
                   x + (c * g.H + h) * g.W, cols * sizeof(floating))


cdef void _crop_add(const floating* dxp, floating* dx, Geometry* g) noexcept nogil:
    """dx (C, H, W) = the padded gradient dxp cropped (zeros where no window reached)."""
    cdef Py_ssize_t c, h, w, rows, cols
    memset(dx, 0, g.C * g.H * g.W * sizeof(floating))
    rows = min(g.H, g.HP - g.pad_top)
    cols = min(g.W, g.WP - g.pad_left)
    if cols <= 0:
        return
    for c in range(g.C):
        for h in range(rows):
            memcpy(dx + (c * g.H + h) * g.W,
                   dxp + (c * g.HP + g.pad_top + h) * g.WP + g.pad_left,
                   cols * sizeof(floating))


cdef void _conv_sample(const floating* x, floating* xp, const floating* wp, const floating* b,
                       const Py_ssize_t* xoff, Geometry* g, floating* out, Py_ssize_t ldo,
                       int code) noexcept nogil:
    """out (F, OH rows ldo apart) = act(conv(x) + b) for one sample, via the padded copy xp."""
    cdef Py_ssize_t fb, i, n_f
    cdef Py_ssize_t s = g.stride
    cdef Py_ssize_t ldf = g.OH * ldo
    # Values a row's last whole vector writes past the row (kept inside the
    # filter's plane, whose later rows overwrite them).
    cdef Py_ssize_t overrun = g.ldp - g.OW
    cdef int spill
    cdef const floating* wblk
    _pad_copy(x, xp, g)
    for fb in range(g.n_fb):
        wblk = wp + fb * g.ckk * FG_FB
        n_f = min(<Py_ssize_t>FG_FB, g.F - fb * FG_FB)
        for i in range(g.OH):
            spill = (g.OH - 1 - i) * ldo + ldo - g.OW >= overrun
            if floating is float:
                fg_conv_row_f(xp + i * s * g.WP, xoff, g.ckk, wblk, s, g.OW, b + fb * FG_FB,
                              n_f, code, out + fb * FG_FB * ldf + i * ldo, ldf, spill)
            else:
                fg_conv_row_d(xp + i * s * g.WP, xoff, g.ckk, wblk, s, g.OW, b + fb * FG_FB,
                              n_f, code, out + fb * FG_FB * ldf + i * ldo, ldf, spill)


def pack_weights(floating[:, :, :, ::1] W, floating[::1] packed):
    """Copy W (F, C, KH, KW) into filter tiles: ``packed[fb, k, f] = W[fb·FB + f, k]``.

    Filters past F are zero. Call once per parameter update (the kernels
    read the tiles).
    """
    cdef Py_ssize_t F = W.shape[0]
    cdef Py_ssize_t ckk = W.shape[1] * W.shape[2] * W.shape[3]
    cdef Py_ssize_t n_fb = (F + FG_FB - 1) // FG_FB
    cdef Py_ssize_t fb, k, f, fo
    cdef const floating* w = &W[0, 0, 0, 0]
    if packed.shape[0] < n_fb * ckk * FG_FB:
        raise ValueError("pack_weights: packed is too small")
    with nogil:
        for fb in range(n_fb):
            for k in range(ckk):
                for f in range(FG_FB):
                    fo = fb * FG_FB + f
                    packed[(fb * ckk + k) * FG_FB + f] = w[fo * ckk + k] if fo < F else 0


def conv2d_forward(floating[:, :, :, ::1] X, floating[:, :, :, ::1] W, floating[::1] b,
                   Py_ssize_t stride, Py_ssize_t pad_top, Py_ssize_t pad_left,
                   floating[:, :, :, ::1] out, int code, floating[::1] packed,
                   floating[:, ::1] workspace, int n_threads):
    """``out = act(conv(X, W) + b)`` (direct convolution, bias and activation fused).

    Parameters
    ----------
    X : ndarray (B, C, H, W), C-contiguous
    W : ndarray (F, C, KH, KW), C-contiguous
    b : ndarray (F,)
    stride, pad_top, pad_left : int
        As in :func:`fastgd._kernels.network.conv2d.conv2d_forward`.
    out : ndarray (B, F, OH, OW), C-contiguous; its shape sets OH, OW
    code : int
        Activation code.
    packed : ndarray
        The weights as :func:`pack_weights` left them (for this W).
    workspace : ndarray (n_threads, forward size of :func:`workspace_sizes`)
    n_threads : int
        Threads over the samples (results do not depend on it).
    """
    _check_geometry(X.shape[1], X.shape[2], X.shape[3], W.shape[0], W.shape[1], W.shape[2],
                    W.shape[3], b.shape[0], stride, pad_top, pad_left, out.shape[2],
                    out.shape[3])
    cdef Py_ssize_t B = X.shape[0]
    if out.shape[0] != B or out.shape[1] != W.shape[0]:
        raise ValueError("conv2d: out must have shape (B, F, OH, OW)")
    cdef Geometry g = _geometry(X.shape[1], X.shape[2], X.shape[3], W.shape[0], W.shape[2],
                                W.shape[3], stride, pad_top, pad_left, out.shape[2],
                                out.shape[3], sizeof(floating))
    if workspace.shape[0] < n_threads or workspace.shape[1] < g.plane:
        raise ValueError("conv2d_forward: workspace too small")
    if packed.shape[0] < g.n_fb * g.ckk * FG_FB:
        raise ValueError("conv2d_forward: packed weights too small")
    if B == 0:
        return
    cdef Py_ssize_t n, t
    cdef Py_ssize_t in_size = g.C * g.H * g.W
    cdef Py_ssize_t out_size = g.F * g.OH * g.OW
    cdef Py_ssize_t* xoff = <Py_ssize_t*>malloc(g.ckk * sizeof(Py_ssize_t))
    if xoff == NULL:
        raise MemoryError()
    _fill_offsets(&g, xoff)
    cdef floating* xs = &X[0, 0, 0, 0]
    cdef floating* os = &out[0, 0, 0, 0]
    cdef floating* ws = &workspace[0, 0]
    cdef Py_ssize_t ws_stride = workspace.shape[1]
    try:
        for n in prange(B, nogil=True, num_threads=n_threads, schedule="static"):
            t = threadid()
            _conv_sample(xs + n * in_size, ws + t * ws_stride, &packed[0], &b[0], xoff, &g,
                         os + n * out_size, g.OW, code)
    finally:
        free(xoff)


def conv2d_pool_forward(floating[:, :, :, ::1] X, floating[:, :, :, ::1] W, floating[::1] b,
                        Py_ssize_t stride, Py_ssize_t pad_top, Py_ssize_t pad_left,
                        Py_ssize_t OH, Py_ssize_t OW, int code, Py_ssize_t pool_h,
                        Py_ssize_t pool_w, Py_ssize_t pool_stride,
                        floating[:, :, :, ::1] out, int[:, :, :, ::1] argmax,
                        floating[::1] packed, floating[:, ::1] workspace, int n_threads):
    """Convolution, activation and max pooling fused: ``out = maxpool(act(conv(X) + b))``.

    The (OH, OW) conv output of each sample lives only in a per-thread
    buffer. ``argmax[n, f, i, j]`` receives the flat index ``h·OW + w`` in
    the conv plane of each maximum (the first in row-major order; a NaN
    wins), as :func:`fastgd._kernels.network.pooling.maxpool2d_forward`
    gives it. ``out`` (B, F, PH, PW) sets the pooled size. Other parameters
    as in :func:`conv2d_forward` (``workspace``: the pooled forward size of
    :func:`workspace_sizes`).
    """
    _check_geometry(X.shape[1], X.shape[2], X.shape[3], W.shape[0], W.shape[1], W.shape[2],
                    W.shape[3], b.shape[0], stride, pad_top, pad_left, OH, OW)
    cdef Py_ssize_t B = X.shape[0]
    cdef Py_ssize_t PH = out.shape[2]
    cdef Py_ssize_t PW = out.shape[3]
    if out.shape[0] != B or out.shape[1] != W.shape[0]:
        raise ValueError("conv2d_pool_forward: out must have shape (B, F, PH, PW)")
    if not _same_shape(argmax.shape, out.shape, 4):
        raise ValueError("conv2d_pool_forward: argmax must have out's shape")
    if pool_h < 1 or pool_w < 1 or pool_stride < 1:
        raise ValueError("conv2d_pool_forward: pool size and stride must be >= 1")
    if (PH - 1) * pool_stride + pool_h > OH or (PW - 1) * pool_stride + pool_w > OW:
        raise ValueError("conv2d_pool_forward: pooled size too large for the conv output")
    cdef Geometry g = _geometry(X.shape[1], X.shape[2], X.shape[3], W.shape[0], W.shape[2],
                                W.shape[3], stride, pad_top, pad_left, OH, OW,
                                sizeof(floating))
    if workspace.shape[0] < n_threads or \
            workspace.shape[1] < g.plane + g.F * OH * g.ldp + FG_POOL_SLACK:
        raise ValueError("conv2d_pool_forward: workspace too small")
    if packed.shape[0] < g.n_fb * g.ckk * FG_FB:
        raise ValueError("conv2d_pool_forward: packed weights too small")
    if B == 0:
        return
    cdef Py_ssize_t n, t, f
    cdef Py_ssize_t in_size = g.C * g.H * g.W
    cdef Py_ssize_t pooled = PH * PW
    cdef Py_ssize_t plane_values = OH * g.ldp
    cdef Py_ssize_t* xoff = <Py_ssize_t*>malloc(g.ckk * sizeof(Py_ssize_t))
    if xoff == NULL:
        raise MemoryError()
    _fill_offsets(&g, xoff)
    cdef floating* xs = &X[0, 0, 0, 0]
    cdef floating* os = &out[0, 0, 0, 0]
    cdef int* am = &argmax[0, 0, 0, 0]
    cdef floating* ws = &workspace[0, 0]
    cdef floating* plane
    cdef Py_ssize_t ws_stride = workspace.shape[1]
    try:
        for n in prange(B, nogil=True, num_threads=n_threads, schedule="static"):
            t = threadid()
            plane = ws + t * ws_stride + g.plane
            _conv_sample(xs + n * in_size, ws + t * ws_stride, &packed[0], &b[0], xoff, &g,
                         plane, g.ldp, code)
            for f in range(g.F):
                if floating is float:
                    fg_maxpool_plane_f(plane + f * plane_values, g.ldp, OW, pool_h, pool_w,
                                       pool_stride, PH, PW, os + (n * g.F + f) * pooled,
                                       am + (n * g.F + f) * pooled)
                else:
                    fg_maxpool_plane_d(plane + f * plane_values, g.ldp, OW, pool_h, pool_w,
                                       pool_stride, PH, PW, os + (n * g.F + f) * pooled,
                                       am + (n * g.F + f) * pooled)
    finally:
        free(xoff)


cdef void _patches(const floating* xp, const Py_ssize_t* xoff, Geometry* g,
                   floating* rows) noexcept nogil:
    """rows[pos, k] = the k-th tap of output pos's receptive field (zeros past ckk).

    The taps of one channel and kernel row are KW neighbours in the padded
    sample: copied KW at a time (xoff[k] for k = (c·KH + p)·KW is their start);
    stride 1 and 3-wide kernels (the common case) a row of outputs at a time
    (:c:func:`fg_patch_row3_f`).
    """
    cdef Py_ssize_t i, j, k, cp, q, base
    cdef floating* r
    cdef const floating* src
    if g.stride == 1 and g.KW == 3:
        for i in range(g.OH):
            if floating is float:
                fg_patch_row3_f(xp + i * g.WP, xoff, g.C * g.KH, g.OW, g.ckkp,
                                rows + i * g.OW * g.ckkp)
            else:
                fg_patch_row3_d(xp + i * g.WP, xoff, g.C * g.KH, g.OW, g.ckkp,
                                rows + i * g.OW * g.ckkp)
        return
    for i in range(g.OH):
        for j in range(g.OW):
            base = i * g.stride * g.WP + j * g.stride
            r = rows + (i * g.OW + j) * g.ckkp
            for cp in range(g.C * g.KH):
                k = cp * g.KW
                src = xp + base + xoff[k]
                for q in range(g.KW):
                    r[k + q] = src[q]
            for k in range(g.ckk, g.ckkp):
                r[k] = 0


cdef void _fold_patches(const floating* rows, const Py_ssize_t* xoff, Geometry* g,
                        floating* dxp) noexcept nogil:
    """dxp (padded plane) = Σ over outputs of their patch-row gradients, at their taps.

    Stride 1 and 3-wide kernels (the common case) a row of outputs at a time
    (:c:func:`fg_fold_row3_f`), else one tap at a time.
    """
    cdef Py_ssize_t i, j, k, base
    cdef const floating* r
    memset(dxp, 0, g.plane * sizeof(floating))
    if g.stride == 1 and g.KW == 3:
        for i in range(g.OH):
            if floating is float:
                fg_fold_row3_f(rows + i * g.OW * g.ckkp, g.ckkp, g.OW, xoff, g.C * g.KH,
                               dxp + i * g.WP)
            else:
                fg_fold_row3_d(rows + i * g.OW * g.ckkp, g.ckkp, g.OW, xoff, g.C * g.KH,
                               dxp + i * g.WP)
        return
    for i in range(g.OH):
        for j in range(g.OW):
            base = i * g.stride * g.WP + j * g.stride
            r = rows + (i * g.OW + j) * g.ckkp
            for k in range(g.ckk):
                dxp[base + xoff[k]] += r[k]


cdef inline Py_ssize_t _dz_at(Geometry* g, Py_ssize_t f, Py_ssize_t i,
                              Py_ssize_t j) noexcept nogil:
    """Where output (i, j) of filter f is in the interleaved dense output gradient."""
    return (((f // FG_FB * g.OH + i) * g.n_jb + j // g.lanes) * FG_FB + f % FG_FB) * g.lanes \
        + j % g.lanes


cdef void _dense_weight_grad(const floating* xp, const floating* dz, const Py_ssize_t* xoff,
                             Geometry* g, floating* acc) noexcept nogil:
    """acc (lane sums) += Σ over positions of dz[f, pos] · tap k of pos's window.

    One register tile per filter tile and three taps, over the whole sample
    (:c:func:`fg_wgrad_taps_f`); ``acc`` holds a vector per tap and filter,
    filter tile by filter tile (see :func:`_sum_lanes`).
    """
    cdef Py_ssize_t fb
    cdef Py_ssize_t tile = g.ckk * FG_FB * g.lanes
    for fb in range(g.n_fb):
        if floating is float:
            fg_wgrad_taps_f(xp, xoff, g.ckk, dz + fb * g.dz_tile, g.OH, g.n_jb, g.WP,
                            g.stride, acc + fb * tile)
        else:
            fg_wgrad_taps_d(xp, xoff, g.ckk, dz + fb * g.dz_tile, g.OH, g.n_jb, g.WP,
                            g.stride, acc + fb * tile)


cdef void _sum_lanes(const floating* acc, Geometry* g, floating* dwp) noexcept nogil:
    """dwp[f, k] += the lanes of acc's vector for tap k and filter f, in lane order."""
    cdef Py_ssize_t k, f, j
    cdef const floating* v
    cdef floating total
    for f in range(g.F):
        for k in range(g.ckk):
            v = acc + (((f // FG_FB) * g.ckk + k) * FG_FB + f % FG_FB) * g.lanes
            total = 0
            for j in range(g.lanes):
                total += v[j]
            dwp[f * g.ckkp + k] += total


cdef void _backward_sample(const floating* x, const floating* wflat, const floating* a,
                           floating* da, const int* am, Py_ssize_t n_out, int code,
                           bint dense, const Py_ssize_t* xoff, Geometry* g, floating* ws,
                           floating* dwp, floating* dbp, floating* dx) noexcept nogil:
    """Add one sample's weight and bias gradients to dwp / dbp; its input gradient to dx.

    ``a`` / ``da``: the output (conv or pooled) and its gradient, ``n_out``
    values per filter; ``am``: for each of them the conv position it came
    from (None: the conv output itself). ``dense``: the weight gradient
    from the dense output gradient (every position, register tiles), else
    one patch row per nonzero output gradient.
    """
    cdef floating* xp = ws
    cdef floating* rows = ws + g.plane
    cdef floating* dz = rows + g.OH * g.OW * g.ckkp
    cdef floating* acc = dz + g.dz_size
    cdef floating* drows = acc + g.acc_size
    cdef floating* dxp = drows + g.OH * g.OW * g.ckkp
    cdef floating* gplane = dxp + g.plane
    cdef floating* wpad = gplane + g.F * g.n_pos
    cdef floating* gvals = wpad + g.F * g.ckkp
    cdef int* fidx = <int*>(gvals + g.F)
    cdef Py_ssize_t f, t, pos, i, j
    cdef floating gv
    cdef floating zero = 0
    _pad_copy(x, xp, g)
    if not dense:
        _patches(xp, xoff, g, rows)
    elif am != NULL:
        memset(dz, 0, g.dz_size * sizeof(floating))
    else:
        # The gradient at every position (zero for the filters past F of the last tile).
        for f in range(g.F):
            if floating is float:
                dbp[f] += fg_dense_dz_f(a + f * n_out, da + f * n_out, g.OH, g.OW, g.n_jb,
                                        code, dz + _dz_at(g, f, 0, 0))
            else:
                dbp[f] += fg_dense_dz_d(a + f * n_out, da + f * n_out, g.OH, g.OW, g.n_jb,
                                        code, dz + _dz_at(g, f, 0, 0))
        for f in range(g.F, g.n_fb * FG_FB):
            for i in range(g.OH):
                for j in range(g.n_jb):
                    memset(dz + _dz_at(g, f, i, j * g.lanes), 0, g.lanes * sizeof(floating))
    if dx != NULL:
        # The gradient by filter and position, and the weights padded to ckkp.
        memset(gplane, 0, g.F * g.n_pos * sizeof(floating))
        for f in range(g.F):
            memcpy(wpad + f * g.ckkp, wflat + f * g.ckk, g.ckk * sizeof(floating))
            memset(wpad + f * g.ckkp + g.ckk, 0, (g.ckkp - g.ckk) * sizeof(floating))
    for f in range(g.F):
        if not dense:
            # Patch rows: the weight gradient summed in registers, then the
            # rows' gradient (for the input gradient) one output at a time.
            if floating is float:
                dbp[f] += fg_rows_wgrad_f(da + f * n_out, a + f * n_out,
                                          (am + f * n_out) if am != NULL else NULL, n_out,
                                          code, rows, g.ckkp, dwp + f * g.ckkp)
            else:
                dbp[f] += fg_rows_wgrad_d(da + f * n_out, a + f * n_out,
                                          (am + f * n_out) if am != NULL else NULL, n_out,
                                          code, rows, g.ckkp, dwp + f * g.ckkp)
            if dx == NULL:
                continue
            for t in range(n_out):
                if floating is float:
                    gv = da[f * n_out + t] * fg_act_slope_f(a[f * n_out + t], code)
                else:
                    gv = da[f * n_out + t] * fg_act_slope_d(a[f * n_out + t], code)
                # Overlapping pooling windows can share a maximum.
                pos = am[f * n_out + t] if am != NULL else t
                gplane[f * g.n_pos + pos] += gv
            continue
        if am != NULL:
            # Dense path after a pooling: scatter the pooled gradients.
            for t in range(n_out):
                if floating is float:
                    gv = da[f * n_out + t] * fg_act_slope_f(a[f * n_out + t], code)
                else:
                    gv = da[f * n_out + t] * fg_act_slope_d(a[f * n_out + t], code)
                dbp[f] += gv
                if gv == zero:
                    continue
                # Overlapping pooling windows can share a maximum.
                pos = am[f * n_out + t]
                dz[_dz_at(g, f, pos // g.OW, pos % g.OW)] += gv
        if dx != NULL:
            for i in range(g.OH):
                for j in range(g.OW):
                    gplane[f * g.n_pos + i * g.OW + j] = dz[_dz_at(g, f, i, j)]
    if dense:
        _dense_weight_grad(xp, dz, xoff, g, acc)
    if dx != NULL:
        if floating is float:
            fg_dx_rows_f(gplane, g.F, g.n_pos, wpad, g.ckkp, gvals, fidx, drows)
        else:
            fg_dx_rows_d(gplane, g.F, g.n_pos, wpad, g.ckkp, gvals, fidx, drows)
        _fold_patches(drows, xoff, g, dxp)
        _crop_add(dxp, dx, g)


def conv2d_backward(floating[:, :, :, ::1] X, floating[:, :, :, ::1] W,
                    floating[:, :, :, ::1] A, floating[:, :, :, ::1] dA, argmax, int code,
                    Py_ssize_t stride, Py_ssize_t pad_top, Py_ssize_t pad_left,
                    Py_ssize_t OH, Py_ssize_t OW, floating[:, :, :, ::1] dW,
                    floating[::1] db, dX, floating[:, ::1] workspace,
                    floating[:, ::1] partials, int n_threads, bint dense_weight_grad=False):
    """Gradients of a convolution (optionally followed by a fused max pooling).

    Parameters
    ----------
    X, W : the forward pass's input and weights
    A, dA : ndarray (B, F, ·, ·)
        The layer's output and the gradient of the loss with respect to it:
        the conv output (B, F, OH, OW), or the pooled output when
        ``argmax`` (int32, A's shape, from :func:`conv2d_pool_forward`) is
        given. Not modified.
    code : int
        Activation code.
    stride, pad_top, pad_left, OH, OW : int
        Convolution geometry.
    dW, db : filled with the weight and bias gradients (overwritten)
    dX : ndarray (B, C, H, W) or None
        Filled with the input gradient; None for a first layer.
    workspace : ndarray (n_threads, backward size of :func:`workspace_sizes`)
    partials : ndarray (ceil(B / GRAD_BLOCK), partial size of :func:`workspace_sizes`)
    n_threads : int
        Threads over the sample blocks (results do not depend on it).
    dense_weight_grad : bool
        How the weight gradient is formed (the same to rounding either way;
        the bias and input gradients are the same bit for bit): from the
        dense output gradient in register tiles, every output position
        (pays when most positions have a gradient: no pooling, few input
        channels), or one patch row per nonzero output gradient (pays after
        a max pooling, which leaves most positions without one).
    """
    cdef Py_ssize_t B = X.shape[0]
    cdef Py_ssize_t F = W.shape[0]
    if A.shape[0] != B or A.shape[1] != F or not _same_shape(dA.shape, A.shape, 4):
        raise ValueError("conv2d_backward: A and dA must have shape (B, F, ., .)")
    if not _same_shape(dW.shape, W.shape, 4) or db.shape[0] != F:
        raise ValueError("conv2d_backward: dW / db do not match W")
    cdef Geometry g = _geometry(X.shape[1], X.shape[2], X.shape[3], F, W.shape[2], W.shape[3],
                                stride, pad_top, pad_left, OH, OW, sizeof(floating))
    cdef int[:, :, :, ::1] am_view
    cdef const int* am = NULL
    cdef Py_ssize_t n_out = A.shape[2] * A.shape[3]
    if argmax is None:
        if A.shape[2] != OH or A.shape[3] != OW:
            raise ValueError("conv2d_backward: A must have shape (B, F, OH, OW)")
    else:
        am_view = argmax
        if not _same_shape(am_view.shape, A.shape, 4):
            raise ValueError("conv2d_backward: argmax must have A's shape")
    cdef floating[:, :, :, ::1] dx_view
    cdef floating* dxs = NULL
    if dX is not None:
        dx_view = dX
        if not _same_shape(dx_view.shape, X.shape, 4):
            raise ValueError("conv2d_backward: dX must have the shape of X")
    cdef Py_ssize_t need = g.plane + OH * OW * g.ckkp + g.dz_size + g.acc_size
    if dX is not None:
        need += _dx_size(&g)
    if workspace.shape[0] < n_threads or workspace.shape[1] < need:
        raise ValueError("conv2d_backward: workspace too small")
    cdef Py_ssize_t n_blocks = (B + _GRAD_BLOCK - 1) // _GRAD_BLOCK
    cdef Py_ssize_t part = F * g.ckkp + F
    if partials.shape[0] < n_blocks or partials.shape[1] < part:
        raise ValueError("conv2d_backward: partials too small")
    cdef Py_ssize_t blk, n, t, f, k, n_stop
    cdef Py_ssize_t in_size = g.C * g.H * g.W
    cdef Py_ssize_t out_size = F * n_out
    if B == 0:
        dW[...] = 0
        db[...] = 0
        return
    if argmax is not None:
        am = &am_view[0, 0, 0, 0]
    if dX is not None:
        dxs = &dx_view[0, 0, 0, 0]
    cdef floating* xs = &X[0, 0, 0, 0]
    cdef floating* wflat = &W[0, 0, 0, 0]
    cdef floating* As = &A[0, 0, 0, 0]
    cdef floating* dAs = &dA[0, 0, 0, 0]
    cdef Py_ssize_t* xoff = <Py_ssize_t*>malloc(g.ckk * sizeof(Py_ssize_t))
    if xoff == NULL:
        raise MemoryError()
    _fill_offsets(&g, xoff)
    cdef floating* ws = &workspace[0, 0]
    cdef floating* ps = &partials[0, 0]
    cdef Py_ssize_t ws_stride = workspace.shape[1]
    cdef Py_ssize_t p_stride = partials.shape[1]
    # Where _backward_sample keeps the dense weight gradient's lane sums.
    cdef Py_ssize_t acc_at = g.plane + OH * OW * g.ckkp + g.dz_size
    cdef floating* dw = &dW[0, 0, 0, 0]
    try:
        for blk in prange(n_blocks, nogil=True, num_threads=n_threads, schedule="static"):
            t = threadid()
            memset(ps + blk * p_stride, 0, part * sizeof(floating))
            if dense_weight_grad:
                memset(ws + t * ws_stride + acc_at, 0, g.acc_size * sizeof(floating))
            n_stop = min(B, (blk + 1) * _GRAD_BLOCK)
            for n in range(blk * _GRAD_BLOCK, n_stop):
                _backward_sample(
                    xs + n * in_size, wflat, As + n * out_size, dAs + n * out_size,
                    (am + n * out_size) if am != NULL else NULL, n_out, code,
                    dense_weight_grad, xoff, &g,
                    ws + t * ws_stride, ps + blk * p_stride, ps + blk * p_stride + F * g.ckkp,
                    (dxs + n * in_size) if dxs != NULL else NULL,
                )
            if dense_weight_grad:
                _sum_lanes(ws + t * ws_stride + acc_at, &g, ps + blk * p_stride)
        # Fixed-order sum of the block partials.
        with nogil:
            for f in range(F):
                for k in range(g.ckk):
                    dw[f * g.ckk + k] = 0
                db[f] = 0
            for blk in range(n_blocks):
                for f in range(F):
                    for k in range(g.ckk):
                        dw[f * g.ckk + k] += ps[blk * p_stride + f * g.ckkp + k]
                    db[f] += ps[blk * p_stride + F * g.ckkp + f]
    finally:
        free(xoff)


# ------------------------------------------------ batch-invariant dense
cdef void _dense_row_tile(const floating* x, Py_ssize_t n_rows, Py_ssize_t K, Py_ssize_t M,
                          const floating* packed, Py_ssize_t ldw,
                          floating* out) noexcept nogil:
    """``out[:n_rows] = x @ W`` for one tile of FG_DENSE_ROWS rows of ``x`` (K values each).

    ``n_rows`` of them are written out; a short tile's ``x`` holds zero rows
    after its own.
    """
    # FG_DENSE_ROWS (4) rows × 2 vectors of at most 16 values (float32, AVX-512).
    cdef floating acc[4 * 2 * 16]
    cdef Py_ssize_t width = 2 * fg_vec_bytes() // sizeof(floating)
    cdef Py_ssize_t j0, r, nj
    j0 = 0
    while j0 < M:
        if floating is float:
            fg_dense_tile_f(x, K, K, packed + j0, ldw, acc)
        else:
            fg_dense_tile_d(x, K, K, packed + j0, ldw, acc)
        nj = min(width, M - j0)
        for r in range(n_rows):
            memcpy(out + r * M + j0, acc + r * width, nj * sizeof(floating))
        j0 += width


def dense_rows_forward(const floating[:, ::1] X, const floating[:, ::1] W,
                       const floating[::1] b, floating[:, ::1] out, int code, int n_threads):
    """``out = act(X @ W + b)``, each row computed the same way whatever the rest of X.

    A row's outputs are sums over the inputs in a fixed order, in a tile
    whose other rows do not enter them, so a prediction does not depend on
    the other rows of the call (BLAS's products do: their blocking follows
    the matrix sizes and a row's position). For predictions; training keeps
    BLAS.

    Parameters
    ----------
    X : ndarray (n, K), C-contiguous
    W : ndarray (K, M), C-contiguous
    b : ndarray (M,)
    out : ndarray (n, M), C-contiguous
    code : int
        Activation code.
    n_threads : int
        Threads over the row tiles (results do not depend on it).
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t K = X.shape[1]
    cdef Py_ssize_t M = W.shape[1]
    if W.shape[0] != K or b.shape[0] != M or out.shape[0] != n or out.shape[1] != M:
        raise ValueError("dense_rows_forward: shapes of X (n, K), W (K, M), b (M,) and "
                         "out (n, M) do not agree")
    if n == 0 or M == 0:
        return
    cdef Py_ssize_t width = 2 * fg_vec_bytes() // sizeof(floating)
    cdef Py_ssize_t ldw = (M + width - 1) // width * width
    cdef Py_ssize_t n_full = n // FG_DENSE_ROWS
    cdef Py_ssize_t n_tail = n - n_full * FG_DENSE_ROWS
    cdef Py_ssize_t k, tile
    cdef const floating* xs = &X[0, 0]
    cdef floating* os = &out[0, 0]
    # W with its rows padded to whole tiles of columns (zeros past M), and the
    # last rows of X padded with zero rows to a whole tile.
    cdef floating* packed = <floating*>calloc(max(K, 1) * ldw, sizeof(floating))
    cdef floating* tail = <floating*>calloc(max(K, 1) * FG_DENSE_ROWS, sizeof(floating))
    try:
        if packed == NULL or tail == NULL:
            raise MemoryError()
        with nogil:
            for k in range(K):
                memcpy(packed + k * ldw, &W[k, 0], M * sizeof(floating))
            memcpy(tail, xs + n_full * FG_DENSE_ROWS * K, n_tail * K * sizeof(floating))
        for tile in prange(n_full, nogil=True, num_threads=n_threads, schedule="static"):
            _dense_row_tile(xs + tile * FG_DENSE_ROWS * K, FG_DENSE_ROWS, K, M, packed, ldw,
                            os + tile * FG_DENSE_ROWS * M)
        if n_tail > 0:
            with nogil:
                _dense_row_tile(tail, n_tail, K, M, packed, ldw,
                                os + n_full * FG_DENSE_ROWS * M)
    finally:
        free(packed)
        free(tail)
    bias_activation_rows(out, b, code)

# ---------------------------------------------------- narrow dense layers

# Inputs per block of the narrow forward pass (fixes the arithmetic): a
# block of the transposed weights (16 outputs in float32: 32 KiB) stays in
# L1 while the thread's rows pass through it.
NARROW_BLOCK = 512
cdef Py_ssize_t _NARROW_BLOCK = NARROW_BLOCK


cdef int _check_narrow(const char* name, Py_ssize_t n, Py_ssize_t K, Py_ssize_t M,
                       Py_ssize_t rows_x, Py_ssize_t cols_x, Py_ssize_t rows_g,
                       Py_ssize_t cols_g) except -1:
    if rows_x != n or cols_x != K or rows_g != n or cols_g != M:
        raise ValueError(f"{name.decode()}: shapes of X (n, K), W (K, M) and the (n, M) "
                         "output or its gradient do not agree")
    return 0


def narrow_dense_forward(const floating[:, ::1] X, const floating[:, ::1] W,
                         const floating[::1] b, floating[:, ::1] out, int code, int n_threads):
    """``out = act(X @ W + b)`` for a layer with few outputs, in training.

    Each thread takes its rows two at a time through fixed blocks of the
    inputs, against its own transposed copy of the block's weights; each
    group of outputs is summed in registers, lanes over the inputs, and
    the lanes are summed at the end.

    Parameters
    ----------
    X : ndarray (n, K), C-contiguous
    W : ndarray (K, M), C-contiguous
    b : ndarray (M,)
    out : ndarray (n, M), C-contiguous
    code : int
        Activation code.
    n_threads : int
        Threads over the rows (results do not depend on it).
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t K = W.shape[0]
    cdef Py_ssize_t M = W.shape[1]
    _check_narrow(b"narrow_dense_forward", n, K, M, X.shape[0], X.shape[1], out.shape[0],
                  out.shape[1])
    if b.shape[0] != M:
        raise ValueError("narrow_dense_forward: b must have one value per output")
    if n == 0 or M == 0:
        return
    if K == 0:
        out[:, :] = 0
        bias_activation_rows(out, b, code)
        return
    cdef int group = fg_narrow_fwd_group(M)
    cdef Py_ssize_t n_groups = (M + group - 1) // group
    cdef Py_ssize_t lanes = fg_vec_bytes() // sizeof(floating)
    cdef Py_ssize_t n_blocks = (K + _NARROW_BLOCK - 1) // _NARROW_BLOCK
    cdef Py_ssize_t n_pairs = (n + 1) // 2
    # Per pair of rows and group of outputs: the 2·group vectors of sums.
    cdef Py_ssize_t acc_size = 2 * group * lanes
    # Per thread: a block of transposed weights, whole groups of rows.
    cdef Py_ssize_t wt_size = n_groups * group * _NARROW_BLOCK
    cdef Py_ssize_t per_thread
    cdef Py_ssize_t t, blk, k0, width, pair, lo, hi, r0, r1, gi
    cdef const floating* xs = &X[0, 0]
    cdef const floating* ws = &W[0, 0]
    cdef floating* os = &out[0, 0]
    cdef const floating* bs = &b[0]
    cdef floating* wt
    n_threads = max(1, min(n_threads, n_pairs))
    per_thread = (n_pairs + n_threads - 1) // n_threads
    cdef floating* acc = <floating*>malloc(n_pairs * n_groups * acc_size * sizeof(floating))
    cdef floating* wts = <floating*>calloc(n_threads * wt_size, sizeof(floating))
    try:
        if acc == NULL or wts == NULL:
            raise MemoryError()
        for t in prange(n_threads, nogil=True, num_threads=n_threads, schedule="static"):
            lo = t * per_thread
            hi = min(n_pairs, lo + per_thread)
            wt = wts + t * wt_size
            for blk in range(n_blocks):
                k0 = blk * _NARROW_BLOCK
                width = min(_NARROW_BLOCK, K - k0)
                if floating is float:
                    fg_transpose_f(ws + k0 * M, width, M, wt, _NARROW_BLOCK)
                else:
                    fg_transpose_d(ws + k0 * M, width, M, wt, _NARROW_BLOCK)
                for pair in range(lo, hi):
                    r0 = 2 * pair
                    r1 = min(r0 + 1, n - 1)
                    for gi in range(n_groups):
                        if floating is float:
                            fg_narrow_fwd_f(group, xs + r0 * K + k0, xs + r1 * K + k0, width,
                                            wt + gi * group * _NARROW_BLOCK, _NARROW_BLOCK,
                                            blk == 0, acc + (pair * n_groups + gi) * acc_size)
                        else:
                            fg_narrow_fwd_d(group, xs + r0 * K + k0, xs + r1 * K + k0, width,
                                            wt + gi * group * _NARROW_BLOCK, _NARROW_BLOCK,
                                            blk == 0, acc + (pair * n_groups + gi) * acc_size)
            for pair in range(lo, hi):
                r0 = 2 * pair
                r1 = min(r0 + 1, n - 1)
                for gi in range(n_groups):
                    if floating is float:
                        fg_narrow_sums_f(acc + (pair * n_groups + gi) * acc_size, group,
                                         M - gi * group, os + r0 * M + gi * group,
                                         os + r1 * M + gi * group)
                    else:
                        fg_narrow_sums_d(acc + (pair * n_groups + gi) * acc_size, group,
                                         M - gi * group, os + r0 * M + gi * group,
                                         os + r1 * M + gi * group)
            if hi > lo:
                r0 = 2 * lo
                r1 = min(2 * hi, n)
                if floating is float:
                    fg_bias_act_rows_f(os + r0 * M, r1 - r0, M, bs, code)
                else:
                    fg_bias_act_rows_d(os + r0 * M, r1 - r0, M, bs, code)
    finally:
        free(acc)
        free(wts)


def narrow_dense_backward(const floating[:, ::1] X, const floating[:, ::1] dZ,
                          const floating[:, ::1] W, floating[:, ::1] dW, dX, int n_threads):
    """Weight and input gradients of a layer with few outputs: ``dW = Xᵀ dZ``, ``dX = dZ Wᵀ``.

    The inputs are split in fixed blocks of one vector; a block's weights
    and its weight-gradient sums stay in registers for the whole batch
    (results do not depend on the thread count).

    Parameters
    ----------
    X : ndarray (n, K), C-contiguous
        The layer's input.
    dZ : ndarray (n, M), C-contiguous
        Gradient of the pre-activation output.
    W : ndarray (K, M), C-contiguous
    dW : ndarray (K, M), C-contiguous
        Overwritten with the weight gradient.
    dX : ndarray (n, K), C-contiguous, or None
        Overwritten with the input gradient unless None.
    n_threads : int
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t K = W.shape[0]
    cdef Py_ssize_t M = W.shape[1]
    _check_narrow(b"narrow_dense_backward", n, K, M, X.shape[0], X.shape[1], dZ.shape[0],
                  dZ.shape[1])
    if dW.shape[0] != K or dW.shape[1] != M:
        raise ValueError("narrow_dense_backward: dW must have the shape of W")
    cdef floating[:, ::1] dx_view
    cdef floating* dxs = NULL
    if dX is not None:
        dx_view = dX
        if dx_view.shape[0] != n or dx_view.shape[1] != K:
            raise ValueError("narrow_dense_backward: dX must have the shape of X")
        if n > 0 and K > 0:
            dxs = &dx_view[0, 0]
    if K == 0 or M == 0:
        return
    if n == 0:
        dW[:, :] = 0
        return
    cdef int group = fg_narrow_bwd_group(M)
    cdef Py_ssize_t ldz = (M + group - 1) // group * group
    cdef Py_ssize_t lanes = fg_vec_bytes() // sizeof(floating)
    cdef Py_ssize_t n_blocks = (K + lanes - 1) // lanes
    cdef Py_ssize_t blk, k0, width, g0, r
    cdef const floating* xs = &X[0, 0]
    cdef const floating* ws = &W[0, 0]
    cdef floating* dws = &dW[0, 0]
    # dZ with its rows padded with zeros to whole groups of outputs.
    cdef floating* dz = <floating*>calloc(n * ldz, sizeof(floating))
    if dz == NULL:
        raise MemoryError()
    try:
        with nogil:
            for r in range(n):
                memcpy(dz + r * ldz, &dZ[r, 0], M * sizeof(floating))
        for blk in prange(n_blocks, nogil=True, num_threads=n_threads, schedule="static"):
            k0 = blk * lanes
            width = min(lanes, K - k0)
            g0 = 0
            while g0 < M:
                if floating is float:
                    fg_narrow_bwd_f(group, xs, n, K, k0, width, dz + g0, ldz,
                                    ws + k0 * M + g0, M - g0, dws + k0 * M + g0, M, dxs,
                                    g0 == 0)
                else:
                    fg_narrow_bwd_d(group, xs, n, K, k0, width, dz + g0, ldz,
                                    ws + k0 * M + g0, M - g0, dws + k0 * M + g0, M, dxs,
                                    g0 == 0)
                g0 = g0 + group
    finally:
        free(dz)


# ----------------------------------------------------------- activations
def bias_activation_rows(floating[:, ::1] Z, const floating[::1] b, int code):
    """``Z[i] = f(Z[i] + b)`` in place for every row (fused bias + activation)."""
    if b.shape[0] != Z.shape[1]:
        raise ValueError("bias_activation_rows: b does not match Z.shape[1]")
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        return
    with nogil:
        if floating is float:
            fg_bias_act_rows_f(&Z[0, 0], Z.shape[0], Z.shape[1], &b[0], code)
        else:
            fg_bias_act_rows_d(&Z[0, 0], Z.shape[0], Z.shape[1], &b[0], code)


def activation_forward(floating[::1] z, int code):
    """``z = f(z)`` in place (1-D contiguous)."""
    if z.shape[0] == 0:
        return
    with nogil:
        if floating is float:
            fg_bias_act_f(&z[0], z.shape[0], 0, code)
        else:
            fg_bias_act_d(&z[0], z.shape[0], 0, code)


def activation_backward(floating[::1] a, floating[::1] da, int code):
    """``da *= f'(z)`` in place, f' written with the output ``a`` (1-D contiguous)."""
    if a.shape[0] != da.shape[0]:
        raise ValueError("activation_backward: a and da differ in size")
    if a.shape[0] == 0:
        return
    with nogil:
        if floating is float:
            fg_act_grad_f(&a[0], &da[0], a.shape[0], code)
        else:
            fg_act_grad_d(&a[0], &da[0], a.shape[0], code)


include "_train_steps.pxi"
