"""How many threads fastgd's kernels may use.

Two kernels share an epoch between two threads (the mini-batch epoch of
:mod:`fastgd._kernels.linear.minibatch_two_threads` and the per-sample epoch of
:mod:`fastgd._engine.linear_epochs`). Both ask this module first, so one
setting governs both backends: the CPUs this process may run on, capped by
Numba's thread count (``numba.set_num_threads`` or ``NUMBA_NUM_THREADS``,
which joblib also sets in its worker processes to avoid oversubscription).
The Cython backend reads the environment variable instead of importing Numba.
"""

import os
import sys


def available_cpus():
    """How many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def thread_budget():
    """How many threads a kernel may use at once (at least 1)."""
    numba = sys.modules.get("numba")
    if numba is not None:
        limit = numba.get_num_threads()
    else:
        try:
            limit = int(os.environ.get("NUMBA_NUM_THREADS", ""))
        except ValueError:
            limit = available_cpus()
    return max(1, min(available_cpus(), limit))
