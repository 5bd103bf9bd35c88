"""Per-row loss derivatives of a full batch (Numba), for gradients by sparse products.

The fused batch kernel (:mod:`fastgd._kernels.linear.batch_numba`) keeps one
partial gradient of every weight per chunk of rows, which costs
O(chunks × features) per gradient: on wide sparse data far more than the
non-zeros. There the full-batch solver takes the gradient as two sparse
products instead, ``p = X w + b`` and ``Xᵀ (s ⊙ ℓ'(p, y))``, with this kernel
between them.
"""

from fastgd._kernels.linear.losses import loss_derivative, loss_value
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba


@numba.njit(**KERNEL_OPTIONS)
def weighted_loss_derivatives(loss, predictions, y, sample_weight, epsilon, out):
    """``out[i] = sᵢ·∂ℓ(pᵢ, yᵢ)/∂p``; return Σ sᵢ·ℓ(pᵢ, yᵢ).

    An empty ``sample_weight`` means every weight is 1.
    """
    total = 0.0
    unit_weights = sample_weight.shape[0] == 0
    for i in range(y.shape[0]):
        s = 1.0 if unit_weights else sample_weight[i]
        total += s * loss_value(loss, predictions[i], y[i], epsilon)
        out[i] = s * loss_derivative(loss, predictions[i], y[i], epsilon)
    return total
