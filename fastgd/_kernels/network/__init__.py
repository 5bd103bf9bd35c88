"""Network kernels: forward and backward passes of the layers (``dense``,
``conv2d``, ``pooling``, ``dropout``, ``activations``) and the network losses
(``losses``)."""
