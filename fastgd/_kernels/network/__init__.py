"""Network kernels: forward and backward passes of the layers (Numba: ``dense``,
``pooling``, ``dropout``, ``activations``, ``sparse_dense``, ``embedding``; ahead of
time: ``native``, the convolutions and the fused bias + activation) and the network
losses (``losses``)."""
