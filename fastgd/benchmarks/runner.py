"""``fastgd bench``: the head-to-head benchmark suites, run from the command line.

Runs the suites of :mod:`fastgd.benchmarks` one after the other under a
progress line, prints their tables, and gathers their ratios and the
environment they ran in (versions, CPUs, threads, the BLAS in use) for
``--json`` and ``--plot``.
"""

import contextlib
import io
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

__all__ = ["SUITES", "environment", "run_bench"]


@dataclass
class Suite:
    """One benchmark suite: how to run it and how to read its ratios."""

    key: str
    title: str
    run: object  # (quick: bool) -> (results, printed table)
    ratios: object  # results -> list of (measurement, ratio), > 1 means fastgd is faster


# ------------------------------------------------------------------ suites
def _run_gd_regressor(quick):
    from fastgd.benchmarks import gd_regressor

    if quick:
        results = gd_regressor.measure(*gd_regressor.QUICK_SIZE, repeats=3, cold_start=False)
    else:
        results = gd_regressor.measure(*gd_regressor.FULL_SIZE, repeats=5)
    return results, gd_regressor.format_table(results)


def _gd_ratios(results):
    pairs = []
    for name, value in results["ratios"].items():
        if ": sklearn / fastgd " in name:  # e.g. "marginal epoch: sklearn / fastgd numba"
            what, backend = name.split(": sklearn / fastgd ")
            pairs.append((f"GDRegressor ({backend}) {what} vs SGDRegressor", value))
    return pairs


def _run_gd_classifier(quick):
    from fastgd.benchmarks import gd_classifier

    results = gd_classifier.measure("quick" if quick else "full", repeats=2 if quick else 3)
    return results, gd_classifier.format_table(results)


def _gd_classifier_ratios(results):
    pairs = []
    for workload, result in results.items():
        for name, value in result["ratios"].items():  # "marginal epoch: sklearn / fastgd numba"
            what, backend = name.split(": sklearn / fastgd ")
            pairs.append((f"GDClassifier ({backend}) {what}, {workload}, vs SGDClassifier", value))
    return pairs


def _run_fusion(quick):
    from fastgd.benchmarks import fusion

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), _warnings_restored():
        rows = fusion.main(["--quick"] if quick else [])
    results = [
        {"workload": workload, "implementation": impl, "seconds": seconds, "ratio": ratio}
        for workload, impl, seconds, ratio in rows
    ]
    return results, buffer.getvalue().rstrip()


def _fusion_ratios(results):
    return [
        (f"FusionClassifier {row['workload']} vs {row['implementation']}", row["ratio"])
        for row in results
        if row["ratio"] is not None
    ]


def _run_multitask(quick):
    from fastgd.benchmarks import multitask

    if quick:
        results = multitask.measure(*multitask.QUICK_SIZE, batch_sizes=(200,), repeats=3)
    else:
        results = multitask.measure(*multitask.FULL_SIZE, repeats=5)
    return results, multitask.format_table(results)


def _multitask_ratios(results):
    pairs = []
    for batch_size, r in results["batch_sizes"].items():
        pairs.append(
            (
                f"MultiTaskRegressor epoch, batch {batch_size}, vs MLPRegressor",
                r["ratio_marginal_epoch"],
            )
        )
    return pairs


def _run_sparse(quick):
    from fastgd.benchmarks import sparse_text

    with _warnings_restored():
        size = sparse_text.QUICK_SIZE if quick else sparse_text.FULL_SIZE
        result = sparse_text.measure(*size, repeats=2 if quick else 3)
    return result, sparse_text.format_table(result)


def _sparse_ratios(result):
    return [
        (f"FusionClassifier tf-idf Dense(64) epoch vs {name}", ratio)
        for name, ratio in result["ratios"].items()
    ]


SUITES = [
    Suite("gd_regressor", "GDRegressor vs SGDRegressor", _run_gd_regressor, _gd_ratios),
    Suite(
        "gd_classifier",
        "GDClassifier vs SGDClassifier",
        _run_gd_classifier,
        _gd_classifier_ratios,
    ),
    Suite(
        "fusion",
        "FusionClassifier vs PyTorch and MLPClassifier",
        _run_fusion,
        _fusion_ratios,
    ),
    Suite("multitask", "MultiTaskRegressor vs MLPRegressor", _run_multitask, _multitask_ratios),
    Suite(
        "sparse",
        "FusionClassifier on tf-idf text vs MLPClassifier and PyTorch",
        _run_sparse,
        _sparse_ratios,
    ),
]


# ----------------------------------------------------------------- helpers
@contextlib.contextmanager
def _warnings_restored():
    import warnings

    with warnings.catch_warnings():  # the fusion script silences warnings globally
        yield


# Environment variables that change how fast the kernels and the BLAS run.
_PERFORMANCE_VARIABLES = (
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_THREAD_TIMEOUT",
    "MKL_NUM_THREADS",
)


def environment():
    """What a benchmark run's numbers depend on: versions, CPUs, threads, BLAS.

    Returns
    -------
    record : dict
        ``versions`` (fastgd, Python and the libraries), ``machine``,
        ``cpus``, ``numba_threads``, ``threadpools`` (threadpoolctl's
        ``threadpool_info()``: every BLAS and OpenMP library loaded, with
        its version, CPU kernel and thread count) and the performance-related
        ``environment_variables`` that are set.
    """
    import numba
    import numpy
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    import fastgd

    versions = {
        "fastgd": fastgd.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "numba": numba.__version__,
    }
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return {
        "versions": versions,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "threadpools": threadpool_info(),
        "environment_variables": {
            name: os.environ[name] for name in _PERFORMANCE_VARIABLES if name in os.environ
        },
    }


def describe_environment(record):
    """One line per fact of :func:`environment`'s record, for the printed report."""
    versions = ", ".join(f"{name} {version}" for name, version in record["versions"].items())
    lines = [
        versions,
        f"{record['cpus']} CPUs ({record['machine']}), Numba threads: {record['numba_threads']}",
    ]
    for pool in record["threadpools"]:
        library = " ".join(filter(None, (pool["internal_api"], pool.get("version"))))
        kernel = f", {pool['architecture']} kernels" if pool.get("architecture") else ""
        lines.append(
            f"{pool['user_api']}: {library}{kernel}, {pool['num_threads']} threads "
            f"({os.path.basename(pool['filepath'])})"
        )
    for name, value in record["environment_variables"].items():
        lines.append(f"{name}={value}")
    return lines


def plot_ratios(ratios, path):
    """Save a horizontal bar chart of the speed-up ratios to ``path``.

    Parameters
    ----------
    ratios : list of dict
        ``{"suite", "measurement", "ratio"}`` entries; ratio > 1 means fastgd
        is faster.
    path : str or path-like
        Where to save the figure (the format follows the extension).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["measurement"] for r in ratios]
    values = [r["ratio"] for r in ratios]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(values) + 1.2))
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=1)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=8)
    ax.set_xlabel("speed-up: other library's time / fastgd's time (> 1: fastgd is faster)")
    ax.set_title("fastgd head-to-head benchmarks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(quick=False, json_path=None, plot_path=None, only=None, out=None, err=None):
    """Run the benchmark suites; print their tables; optionally save JSON and a chart.

    Parameters
    ----------
    quick : bool, default=False
        Small problems (the whole run in a few minutes at most) instead of
        the sizes the README reports.
    json_path : str or None
        Write every result, the ratios and the environment as JSON here.
    plot_path : str or None
        Save a bar chart of the ratios here (needs matplotlib:
        ``pip install fastgd[plot]``).
    only : list of str or None
        Keys of the suites to run (``"gd_regressor"``, ``"gd_classifier"``,
        ``"fusion"``, ``"multitask"``, ``"sparse"``); all when None.
    out, err : file-like or None
        Where the tables and the progress line go (stdout and stderr).

    Returns
    -------
    report : dict or None
        What ``--json`` writes; None when ``--plot`` is asked for without
        matplotlib.
    """
    from threadpoolctl import threadpool_info
    from tqdm import tqdm

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install 'fastgd[plot]'", file=err)
            return None
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    suites = [s for s in SUITES if only is None or s.key in only]
    report = {"quick": quick, **environment(), "suites": {}, "ratios": []}
    print("## Environment\n", file=out)
    for line in describe_environment(report):
        print(f"  {line}", file=out)
    print(file=out, flush=True)
    started = time.perf_counter()
    progress = tqdm(total=len(suites), desc="fastgd bench", unit="suite", file=err, leave=True)
    with progress:
        for number, suite in enumerate(suites, 1):
            progress.set_postfix_str(suite.title)
            suite_started = time.perf_counter()
            results, table = suite.run(quick)
            progress.write(
                f"[{number}/{len(suites)}] {suite.title}: done in "
                f"{time.perf_counter() - suite_started:.1f} s",
                file=err,
            )
            progress.update(1)
            report["suites"][suite.key] = results
            report["ratios"] += [
                {"suite": suite.key, "measurement": name, "ratio": float(ratio)}
                for name, ratio in suite.ratios(results)
            ]
            # tqdm.write keeps the tables clear of the progress line.
            progress.write(f"\n## {suite.title}\n\n{table}\n", file=out)
    report["seconds"] = time.perf_counter() - started
    report["threadpools"] = threadpool_info()  # with the libraries the suites loaded

    print("## Speed-ups (other library's time / fastgd's time; > 1: fastgd is faster)\n", file=out)
    width = max((len(r["measurement"]) for r in report["ratios"]), default=10)
    for r in report["ratios"]:
        print(f"  {r['measurement']:<{width}}  {r['ratio']:6.2f}x", file=out)
    print(f"\n{len(suites)} suite(s) in {report['seconds']:.0f} s.", file=out)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(report, handle, indent=2, default=str)
        print(f"Results written to {json_path}", file=out)
    if plot_path:
        plot_ratios(report["ratios"], plot_path)
        print(f"Chart saved to {plot_path}", file=out)
    return report
