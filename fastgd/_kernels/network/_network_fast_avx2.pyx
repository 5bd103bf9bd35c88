# The network kernels of _network_fast.pxi, compiled by setup.py for the avx2 instruction set.
include "_network_fast.pxi"
