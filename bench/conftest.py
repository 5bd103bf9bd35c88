"""pytest configuration of the benchmark suite.

``pytest bench/ --benchmark-only [--bench-size full]`` runs every benchmark;
the project's test run (``python -m pytest``, ``testpaths = ["tests"]``) never
collects this folder. Fixtures shared by the suites live here; the speed-up
of every fastgd benchmark against the other implementations of its group is
recorded by :mod:`bench._speedups` and printed at the end of the run.
"""

import os

import pytest

from bench import _speedups


def pytest_addoption(parser):
    parser.addoption(
        "--bench-size",
        choices=("quick", "full"),
        default="quick",
        help="problem size: 'quick' (default) or 'full' (the sizes the issues name)",
    )
    parser.addoption(
        "--torch-env",
        choices=("default", "same"),
        default="default",
        help="PyTorch's environment: 'default' (as its users run it: PyTorch loads its "
        "OpenMP before fastgd sets OMP_WAIT_POLICY=PASSIVE for its own) or 'same' "
        "(OMP_WAIT_POLICY=PASSIVE for both)",
    )


def pytest_configure(config):
    """Load PyTorch (if installed) now, in the environment ``--torch-env`` asks for.

    OpenMP reads OMP_WAIT_POLICY when it is loaded, and fastgd sets it for its
    own threads when it loads Numba, so PyTorch must come first.
    """
    if config.getoption("--torch-env") == "same":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch  # noqa: F401
    except ImportError:
        pass


@pytest.fixture(scope="session")
def bench_size(request):
    """The ``--bench-size`` option: ``"quick"`` (default) or ``"full"``."""
    return request.config.getoption("--bench-size")


@pytest.fixture(scope="session")
def torch():
    """PyTorch on the CPU, with Numba's thread count; skips the benchmark without PyTorch."""
    torch = pytest.importorskip("torch")
    import numba

    torch.set_num_threads(numba.get_num_threads())
    return torch


@pytest.fixture(autouse=True)
def _record_speedups(request):
    """After each benchmark, refresh the speed-ups of its group (see bench._speedups)."""
    yield
    benchmark = request.node.funcargs.get("benchmark")
    if benchmark is not None:
        _speedups.record(benchmark)


@pytest.hookimpl(trylast=True)  # below pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter):
    """Print the speed-ups of the run below pytest-benchmark's tables."""
    table = _speedups.format_speedups(_speedups.speedup_rows())
    if table:
        terminalreporter.section("speed-ups (other median / fastgd median; > 1: fastgd faster)")
        terminalreporter.write_line(table)
