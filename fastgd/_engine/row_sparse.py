"""Optimizer steps of a network some of whose weight matrices have row-sparse gradients.

A first ``Dense`` layer over sparse columns and an ``Embedding`` only receive
a gradient for the rows of ``W`` that the batch touched (the non-zero
columns, the codes it contains). Updating the whole flat parameter buffer
would cost O(vocabulary × units) per batch, so for those matrices
:class:`RowSparseSteps` replaces the flat step by

* the usual flat step (and L2 gradient) over every *other* parameter
  (the dense segments of the buffer),
* :func:`~fastgd._kernels.common.optimizers.row_sparse_step` over the
  touched rows of each row-sparse matrix.

Plain SGD stays *exactly* the dense update, L2 penalty included: the
penalty's shrink of every row, ``W ← (1 − lr·α/m)·W``, is kept lazily as one
scale factor per matrix (the weights are ``weight_scale · W``, as in
scikit-learn's SGD), and the touched rows take their gradient step in those
units. The factor is folded back into ``W`` at the end of every epoch (and
whenever it gets small), so between epochs the weights are plain.

The other optimizers update the touched rows only (lazy rules, see
:func:`~fastgd._kernels.common.optimizers.row_sparse_step`), the L2 gradient
included: an untouched row is not shrunk in that step.

The objective needs ``‖W‖²`` every batch; it is kept up to date in
O(touched rows) from the kernel's reported change, and recomputed exactly
at the start of each epoch.
"""

import numpy as np

from fastgd._kernels.runtime import codes

__all__ = ["RowSparseSteps"]

# Fold the lazy SGD scale into W when it falls below this (float32 keeps ~7
# digits: a tiny scale would make the stored rows large and lose precision).
MIN_WEIGHT_SCALE = 1e-3


class _Block:
    """One row-sparse weight matrix: its layer, its views and its ``‖W‖²``."""

    def __init__(self, layer, offset, params, state_1, state_2):
        shape = layer.W.shape
        size = shape[0] * shape[1]
        self.layer = layer
        self.start, self.stop = offset, offset + size
        self.W = layer.W
        self.state_1 = state_1[offset : offset + size].reshape(shape)
        self.state_2 = state_2[offset : offset + size].reshape(shape)
        flat = params[offset : offset + size]
        self.sq_norm = float(np.dot(flat, flat))

    def fold_scale(self):
        """Multiply the lazy scale into W (O(size), once per epoch)."""
        scale = self.layer.weight_scale
        if scale != 1.0:
            self.W *= self.W.dtype.type(scale)
            self.sq_norm *= scale * scale
            self.layer.weight_scale = 1.0


def _complement(n, blocks):
    """``(start, stop)`` ranges of ``[0, n)`` outside the blocks."""
    ranges, at = [], 0
    for block in sorted(blocks, key=lambda blk: blk.start):
        if block.start > at:
            ranges.append((at, block.start))
        at = block.stop
    if at < n:
        ranges.append((at, n))
    return ranges


class RowSparseSteps:
    """Penalty and optimizer step of one epoch when some gradients are row-sparse.

    Parameters
    ----------
    trainer : NetworkTrainer
        Source of the parameters, gradients, optimizer state and constants.
    layers : list of (RuntimeLayer, LayerState)
        The row-sparse layers of the network
        (:meth:`~fastgd._engine.network.Network.row_sparse_layers`).
    """

    def __init__(self, trainer, layers):
        net = trainer.network
        self.trainer = trainer
        self.params, self.grads = net.params, net.grads
        self.s1, self.s2 = trainer.state_1, trainer.state_2
        self.blocks = [
            _Block(
                layer, net.param_offset(layer, layer.row_sparse_key), self.params, self.s1, self.s2
            )
            for layer, _ in layers
        ]
        self.states = [st for _, st in layers]
        self.segments = _complement(net.n_params, self.blocks)
        p = net.n_penalized
        self.penalized = [(a, min(b, p)) for a, b in self.segments if a < p]
        self.alpha = trainer.alpha
        self.lazy_sgd_scale = trainer.optimizer_code == codes.SGD and self.alpha > 0.0
        for block in self.blocks:
            block.fold_scale()  # a previous epoch that raised may have left a scale

    def penalty(self, m):
        """Add the L2 gradient of the dense segments; return the batch's penalty term.

        The term is ``alpha / (2m) · ‖W‖²`` over every penalized weight (the
        row-sparse matrices included, from their kept norms).
        """
        alpha = self.alpha
        params, grads = self.params, self.grads
        total = 0.0
        for a, b in self.penalized:
            w = params[a:b]
            total += float(np.dot(w, w))
            grads[a:b] += w * w.dtype.type(alpha / m)
        for block in self.blocks:
            total += block.layer.weight_scale**2 * block.sq_norm
        return 0.5 * alpha / m * total

    def step(self, lr, m):
        """One update: the flat rule on the dense segments, lazy rows elsewhere."""
        from fastgd._kernels.common.optimizers import row_sparse_step
        from fastgd._kernels.network.native import optimizer_step

        t = self.trainer
        constants = (t.momentum, t.beta_1, t.beta_2, t.epsilon)
        for a, b in self.segments:
            optimizer_step(
                self.params[a:b],
                self.grads[a:b],
                self.s1[a:b],
                self.s2[a:b],
                lr,
                t.step_count,
                t.optimizer_code,
                *constants,
            )
        l2 = self.alpha / m
        for block, st in zip(self.blocks, self.states, strict=True):
            rows, n_touched, G = st.row_grad
            row_lr = lr
            if self.lazy_sgd_scale:
                # W ← (1 − lr·α/m)·W − lr·g, with the shrink kept in the scale.
                shrink = 1.0 - lr * l2
                if shrink * block.layer.weight_scale < MIN_WEIGHT_SCALE:
                    block.fold_scale()
                if shrink <= 0.0:  # a step so large it flips signs: apply it densely
                    block.W *= block.W.dtype.type(shrink)
                    block.sq_norm *= shrink * shrink
                else:
                    block.layer.weight_scale *= shrink
                row_lr = lr / block.layer.weight_scale
            delta = row_sparse_step(
                block.W,
                G,
                rows,
                n_touched,
                block.state_1,
                block.state_2,
                row_lr,
                t.step_count,
                t.optimizer_code,
                *constants,
                0.0 if self.lazy_sgd_scale else l2,
                self.alpha > 0.0,
            )
            block.sq_norm += delta

    def finish(self):
        """End of the epoch: fold the lazy scales (the weights become plain)."""
        for block in self.blocks:
            block.fold_scale()
