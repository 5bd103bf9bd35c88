"""Compiled kernels: plain array-in, array-out functions.

Nothing in this package imports an estimator or the engine, starts a thread
or changes a process-wide setting. It is split by concern:

* :mod:`~fastgd._kernels.linear`: the linear models' epochs (per-sample SGD in
  Cython and Numba, mini-batch and full-batch GD in Numba) and their losses;
* :mod:`~fastgd._kernels.network`: the network layers' forward and backward
  passes (dense, conv2d, pooling, dropout, activations), their losses and the
  network trainer's optimizer update;
* :mod:`~fastgd._kernels.common`: what both engines use (optimizer rules over
  flat parameter buffers, the seeded row shuffle);
* :mod:`~fastgd._kernels.runtime`: the plumbing under all of them (Numba's
  set-up, atomics, prefetch, integer codes, tuning constants).

Modules that use Numba import it at import time, so the estimators import
them lazily (only when a Numba kernel is needed); the Cython extension
``linear._sgd_fast`` needs no warm-up at all.
"""
