"""Kernels both engines use: the optimizer rules over flat parameter buffers
(``optimizers``) and the seeded, thread-count-independent row shuffle
(``shuffle``)."""
