"""Compiled kernels: plain array-in, array-out functions.

Nothing in this package imports an estimator or the engine. Modules that use
Numba import it at module import time, so the estimator layer imports them
lazily (only when a Numba kernel is actually needed); the Cython extension
``_sgd_fast`` needs no warm-up at all.
"""
