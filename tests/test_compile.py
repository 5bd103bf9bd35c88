"""Ahead-of-time compilation: ``fastgd.compile_kernels()`` and ``fastgd compile``."""

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastgd
from fastgd._cli import main

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

# Compiles MultiTaskRegressor's kernels (the estimator whose kernels compile
# fastest: seconds, where GDRegressor's take minutes on a slow machine), or,
# with "fit", fits the models compile_kernels() compiles for it, in both
# dtypes, and reports the kernels' cache counters.
WORKER = textwrap.dedent(
    """
    import json, sys, warnings
    sys.path.insert(0, {tests_dir!r})
    import fastgd
    from fastgd._compile import DTYPES, _multitask_models
    from test_jit_cache import kernel_cache_stats

    if sys.argv[1] == "compile":
        report = fastgd.compile_kernels(estimators=["MultiTaskRegressor"])
        print(json.dumps({{k: report[k] for k in ("compiled", "loaded", "cache_dir")}}))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for dtype in DTYPES:
                _multitask_models(dtype)
        print(json.dumps(kernel_cache_stats()))
    """
)


def _run(argument, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    completed = subprocess.run(
        [sys.executable, "-c", WORKER.format(tests_dir=TESTS_DIR), argument],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_compiled_kernels_are_loaded_by_the_next_process(tmp_path):
    cache_dir = tmp_path / "numba-cache"
    first = _run("compile", cache_dir)
    assert first["compiled"] > 0
    assert first["loaded"] == 0  # the cache was empty
    assert first["cache_dir"].startswith(str(cache_dir))
    index_files = [f for _, _, files in os.walk(cache_dir) for f in files if f.endswith(".nbi")]
    assert any(f.startswith("sparse_dense.csr_rows_to_dense") for f in index_files), index_files

    second = _run("compile", cache_dir)
    assert second["compiled"] == 0
    assert second["loaded"] > 0

    stats = _run("fit", cache_dir)
    assert "fastgd._kernels.network.sparse_dense.csr_rows_to_dense" in stats
    misses = {name: counts for name, counts in stats.items() if counts[1] > 0}
    assert not misses, f"compiled again: {misses}"


# Fits whose batches are all too small for a parallel region; prints the
# parallel kernels this process compiled or loaded.
SMALL_FITS = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    from fastgd import GDClassifier, GDRegressor
    from fastgd._kernels.linear import batch_numba, multinomial_numba

    rng = np.random.RandomState(0)
    X = rng.standard_normal((300, 5))
    y = X @ rng.standard_normal(5)
    labels = np.arange(300) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GDRegressor(batch_size=32, max_iter=2, tol=None).fit(X, y)
        GDRegressor(batch_size="full", loss="huber", max_iter=2, tol=None).fit(X, y)
        GDClassifier(batch_size=32, max_iter=2, tol=None).fit(X, labels)
        GDClassifier(batch_size="full", max_iter=2, tol=None).fit(X, labels)
        GDClassifier(
            batch_size=32, loss="log_loss", multi_class="multinomial", max_iter=2, tol=None
        ).fit(X, labels)
    kernels = {}
    for family, variants in (
        ("binary", batch_numba.ONE_OUTPUT), ("multinomial", multinomial_numba.SOFTMAX)
    ):
        for rows, kernel in variants.gradient_parallel.items():
            kernels[f"{family} gradient {rows}"] = kernel
        for kinds, kernel in variants.epoch_any_size.items():
            kernels[f"{family} epoch {kinds}"] = kernel
    print(json.dumps([name for name, kernel in kernels.items() if kernel.signatures]))
    """
)


def test_small_batch_fits_never_reach_the_parallel_kernels():
    # Compiling a parallel region takes seconds; fits that never run one
    # must not pay for it (issue 12: the first fit's time).
    completed = subprocess.run(
        [sys.executable, "-c", SMALL_FITS], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


def _signatures():
    from fastgd._compile import _kernel_dispatchers

    return {name: set(d.signatures) for name, d in _kernel_dispatchers()}


@pytest.mark.slow
def test_compile_kernels_covers_what_the_estimators_use():
    # After compile_kernels(), fitting the usual models of every estimator
    # needs no signature it has not compiled (or loaded) already.
    sys.path.insert(0, TESTS_DIR)
    from test_jit_cache import fit_all

    report = fastgd.compile_kernels()
    assert set(report) == {"seconds", "cache_dir", "compiled", "loaded", "kernels"}
    assert report["compiled"] + report["loaded"] > 0
    before = _signatures()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_all((np.float32, np.float64))
    after = _signatures()
    new = {name: sigs - before.get(name, set()) for name, sigs in after.items()}
    assert not {name: sigs for name, sigs in new.items() if sigs}


def test_compile_kernels_rejects_unknown_estimators():
    with pytest.raises(ValueError, match="Unknown estimator"):
        fastgd.compile_kernels(estimators=["SGDRegressor"])


def test_cli_compile_reports_what_it_compiled(capsys):
    assert main(["compile", "--estimator", "GDRegressor"]) == 0
    output = capsys.readouterr().out
    assert "Compiling fastgd's Numba kernels" in output
    assert "GDRegressor (Numba backend, mini-batch, full batch): " in output
    assert "signatures compiled" in output and "loaded from the cache" in output
    assert "Cache: " in output


def test_cli_compile_list_compiles_nothing(tmp_path):
    cache_dir = tmp_path / "numba-cache"
    completed = subprocess.run(
        [sys.executable, "-m", "fastgd", "compile", "--list"],
        env=dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    header, *lines = [line for line in completed.stdout.splitlines() if line.startswith("  ")]
    assert header.split() == ["kernel", "signatures", "in", "the", "cache"]
    rows = dict(line.split() for line in lines)
    assert "linear.sgd_numba.sgd_steps" in rows and "network.pooling.maxpool2d_forward" in rows
    assert set(rows.values()) == {"0"}
    assert f"{len(rows)} kernels, 0 with machine code in the cache" in completed.stdout
    assert f"Cache: {cache_dir}" in completed.stdout
    written = [name for _, _, files in os.walk(cache_dir) for name in files]
    assert not written, written


def test_cached_signature_count_reads_the_index_without_compiling(tmp_path, monkeypatch):
    from fastgd._compile import cached_signature_count

    (tmp_path / "listed_kernel.py").write_text(
        textwrap.dedent(
            """
            from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, njit

            @njit(**KERNEL_OPTIONS)
            def double(x):
                return 2 * x
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from listed_kernel import double

    assert cached_signature_count(double) == 0
    double(np.ones(3))
    assert cached_signature_count(double) == 1
    assert double.signatures  # compiled here...
    double(np.ones(3, dtype=np.float32))
    assert cached_signature_count(double) == 2  # ...and saved, one entry per signature


def test_compile_command_prints_to_the_given_stream():
    from fastgd._cli import compile_command

    out = io.StringIO()
    report = compile_command(["GDRegressor"], out=out)
    assert f"{report['compiled']} signatures compiled" in out.getvalue()
