"""What every kernel stands on: Numba imported with fastgd's settings
(``numba_setup``), atomics and prefetch intrinsics, the integer codes of the
options (``codes``) and the tuning constants (``tuning``)."""
