"""Benchmark options: ``pytest bench/ --benchmark-only [--bench-size full]``."""

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--bench-size",
        choices=("quick", "full"),
        default="quick",
        help="problem size: 'quick' (default) or 'full' (the sizes the issues name)",
    )


@pytest.fixture(scope="session")
def bench_size(request):
    return request.config.getoption("--bench-size")
