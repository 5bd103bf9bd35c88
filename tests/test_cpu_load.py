"""The judgement of whether other processes hold the machine's CPUs (network threads)."""

import pytest

from fastgd._kernels.runtime import cpu_load


class Clock:
    """Stands in for the machine: wall time, its busy CPU time, this process's CPU time."""

    def __init__(self):
        self.wall = 100.0
        self.machine = 5000.0
        self.own = 10.0

    def advance(self, seconds, own_cpus, other_cpus):
        self.wall += seconds
        self.own += seconds * own_cpus
        self.machine += seconds * (own_cpus + other_cpus)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(cpu_load.time, "monotonic", lambda: clock.wall)
    monkeypatch.setattr(cpu_load.time, "process_time", lambda: clock.own)
    monkeypatch.setattr(cpu_load, "_machine_busy_seconds", lambda: clock.machine)
    monkeypatch.setattr(cpu_load.os, "cpu_count", lambda: 2)
    # The first look of a process falls back to the load average: say "idle".
    monkeypatch.setattr(cpu_load.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    return clock


def test_this_processs_own_threads_never_make_the_machine_busy(clock):
    state = cpu_load._CpuLoad()
    assert not state.look()
    for _ in range(5):
        clock.advance(1.5, own_cpus=2.0, other_cpus=0.0)  # a fit on both cores
        assert not state.look()


@pytest.mark.parametrize(("other_cpus", "busy"), [(0.3, False), (0.7, True), (2.0, True)])
def test_other_processes_cpu_use_decides(clock, other_cpus, busy):
    state = cpu_load._CpuLoad()
    state.look()
    clock.advance(2.0, own_cpus=1.0, other_cpus=other_cpus)
    assert state.look() is busy


def test_a_verdict_stands_for_the_look_interval(clock):
    state = cpu_load._CpuLoad()
    state.look()
    clock.advance(1.0, own_cpus=0.0, other_cpus=2.0)
    assert state.look()
    clock.advance(0.5, own_cpus=0.0, other_cpus=0.0)  # too soon for a new look
    assert state.look()
    clock.advance(1.0, own_cpus=0.0, other_cpus=0.0)
    assert not state.look()


def test_without_proc_stat_the_load_average_decides(clock, monkeypatch):
    monkeypatch.setattr(cpu_load, "_machine_busy_seconds", lambda: None)
    state = cpu_load._CpuLoad()
    monkeypatch.setattr(cpu_load.os, "getloadavg", lambda: (2.5, 2.0, 1.0))
    assert state.look()
    clock.advance(2.0, own_cpus=0.0, other_cpus=0.0)
    monkeypatch.setattr(cpu_load.os, "getloadavg", lambda: (0.5, 1.0, 1.0))
    assert not state.look()


def test_proc_stat_is_read_as_busy_seconds():
    seconds = cpu_load._machine_busy_seconds()
    if seconds is None:
        pytest.skip("no /proc/stat on this system")
    assert seconds > 0
