"""Linear-model kernels: per-sample SGD (Cython ``_sgd_fast`` and its Numba twin
``sgd_numba``), mini-batch and full-batch GD (``batch_numba``, and the
two-thread mini-batch epoch ``minibatch_two_threads``), and the regression
losses."""
