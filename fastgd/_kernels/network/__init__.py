"""Network kernels: forward and backward passes of the layers (Numba: ``dense``,
``pooling``, ``dropout``, ``activations``, ``sparse_dense``, ``embedding``; ahead of
time: ``native``, the convolutions, the fused bias + activation, and the
trainer's per-batch arithmetic: the losses, the softmax and the optimizer
update)."""
