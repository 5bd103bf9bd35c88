"""Timing helpers of the benchmarks: medians of repeated and interleaved runs."""

import functools
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc


def median_time(function, repeats=5, warmup=1):
    """Median wall time of ``function()`` over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved_results(functions, repeats=5):
    """What each function returns, over ``repeats`` rounds in which they run in turn.

    Parameters
    ----------
    functions : dict of name -> callable

    Returns
    -------
    dict of name -> list
        The ``repeats`` return values of each function, in round order.
    """
    results = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            results[name].append(function())
    return results


def _elapsed(function):
    """Wall seconds of one ``function()`` call."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def interleaved_median_times(functions, repeats=5, warmup=1):
    """Median times of several functions, run in turn, so machine noise hits all alike.

    Parameters
    ----------
    functions : dict of name -> callable

    Returns
    -------
    dict of name -> median seconds
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    timed = {name: functools.partial(_elapsed, function) for name, function in functions.items()}
    samples = interleaved_results(timed, repeats)
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_python_memory(function):
    """Peak memory (bytes) allocated through Python/NumPy while ``function()`` runs."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def fresh_process_time(code, repeats=5):
    """Median wall time of ``python -c code`` in a new interpreter.

    The interpreter starts in the temporary directory, so that it imports the
    installed fastgd even when the current directory holds a source tree.
    """

    def run():
        subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())

    return median_time(run, repeats=repeats, warmup=1)
