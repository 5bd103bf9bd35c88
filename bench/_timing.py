"""Timing helper of the pytest-benchmark suites (the others are in fastgd.benchmarks.timing)."""


def warm_then_benchmark(benchmark, function):
    """Call ``function()`` once (Numba compiles, caches warm), then time it with pytest-benchmark.

    pytest-benchmark picks the number of rounds (at least ``--benchmark-min-rounds``,
    about ``--benchmark-max-time`` seconds in all). Returns what the last call returned.
    """
    function()
    return benchmark(function)
