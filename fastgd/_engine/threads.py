"""How many threads fastgd's kernels may use, and starting a helper thread.

Two kinds of epoch are shared between two threads (the per-sample and the
mini-batch epochs of :mod:`fastgd._engine.linear_epochs`); one-vs-rest
classifiers train their classes in parallel. All ask this module first, so one
setting governs both backends: the CPUs this process may run on, capped by
Numba's thread count (``numba.set_num_threads`` or ``NUMBA_NUM_THREADS``,
which joblib also sets in its worker processes to avoid oversubscription).
The Cython backend reads the environment variable instead of importing Numba.
"""

import os
import sys
import threading


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


def run_with_helper(lead, helper, name, after_lead=None):
    """Run ``lead()`` on the calling thread while ``helper()`` runs on a new thread.

    The helper thread is a daemon and is always joined before returning.

    Parameters
    ----------
    lead, helper : callable
        The two threads' parts (compiled kernels that release the GIL).
    name : str
        Name of the helper thread (shown by debuggers and profilers).
    after_lead : callable, optional
        Called once ``lead`` returns or raises, before joining the helper:
        it must make the helper return if it waits for the leader.

    Returns
    -------
    The value ``lead()`` returns.
    """
    thread = threading.Thread(target=helper, name=name, daemon=True)
    thread.start()
    try:
        return lead()
    finally:
        if after_lead is not None:
            after_lead()
        thread.join()
