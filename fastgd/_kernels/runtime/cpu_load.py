"""Whether other processes leave this one fewer than two free CPUs.

On a machine whose cores other processes hold, a parallel region waits for a
thread the system has not scheduled, and one thread finishes sooner (the
README's performance section has the measurements); the network kernels and
BLAS then run on one thread. The judgement counts the CPU time *other*
processes used since the previous look (at most once a second): the
machine's busy time from ``/proc/stat`` minus this process's own CPU time, so
fastgd's own threads never count against it. A load average would count them:
a fit on two threads of an otherwise idle 2-core machine raises the load
average to 2 and would be judged busy. Where ``/proc/stat`` is missing (and
for the first look of a process), the 1-minute load average stands in.
"""

import os
import time

# Seconds between two looks at the machine's CPU time.
LOOK_INTERVAL_SECONDS = 1.0
# Busy when other processes leave fewer free CPUs than this.
MIN_FREE_CPUS = 1.5
_PROC_STAT = "/proc/stat"
# Fields of /proc/stat's "cpu" line that count busy time: user, nice, system,
# irq, softirq, steal (idle and iowait are the other two of the first eight).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def machine_busy():
    """Whether other processes use so much CPU that fewer than two CPUs are free."""
    return _STATE.look()


def _machine_busy_seconds():
    """CPU seconds every process of the machine has spent busy since boot, or None."""
    try:
        with open(_PROC_STAT) as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = sum(int(fields[1 + i]) for i in _BUSY_FIELDS if 1 + i < len(fields))
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_cpus():
    """The machine's CPUs (what /proc/stat's busy time is shared among)."""
    return os.cpu_count() or 1


def _busy_by_load_average():
    try:
        return os.getloadavg()[0] >= _machine_cpus()
    except (AttributeError, OSError):  # no load average on this platform
        return False


class _CpuLoad:
    """The last look at the machine: when, its busy CPU time, this process's, the verdict."""

    def __init__(self):
        self.wall = None
        self.machine_seconds = None
        self.own_seconds = None
        self.busy = False

    def look(self):
        now = time.monotonic()
        if self.wall is not None and now - self.wall < LOOK_INTERVAL_SECONDS:
            return self.busy
        machine_seconds = _machine_busy_seconds()
        own_seconds = time.process_time()
        if machine_seconds is None or self.machine_seconds is None:
            self.busy = _busy_by_load_average()
        else:
            others = (machine_seconds - self.machine_seconds) - (own_seconds - self.own_seconds)
            other_cpus = max(others, 0.0) / (now - self.wall)
            self.busy = _machine_cpus() - other_cpus < MIN_FREE_CPUS
        self.wall, self.machine_seconds, self.own_seconds = now, machine_seconds, own_seconds
        return self.busy


_STATE = _CpuLoad()
