"""``fastgd bench``: the head-to-head benchmark suite, run from the command line.

The measuring code lives in the ``bench/`` folder of fastgd's source tree (one
copy, shared with ``pytest bench/ --benchmark-only`` and the per-suite
scripts); this module finds it, runs the suites one after the other with a
progress line, prints their tables, and gathers the ratios for ``--json`` and
``--plot``. ``bench/`` is not part of an installed wheel: from an installation
without the source tree, the command says where to get it.
"""

import contextlib
import io
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["run_bench", "SUITES"]


@dataclass
class Suite:
    """One benchmark suite: how to run it and how to read its ratios."""

    key: str
    title: str
    run: object  # (quick: bool) -> (results, printed table)
    ratios: object  # results -> list of (measurement, ratio), > 1 means fastgd is faster


# ------------------------------------------------------------------ suites
def _run_gd_regressor(quick):
    from bench import gd_regressor

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


def _run_fusion(quick):
    from bench import fusion

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
    from bench import multitask

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


SUITES = [
    Suite("gd_regressor", "GDRegressor vs SGDRegressor", _run_gd_regressor, _gd_ratios),
    Suite(
        "fusion",
        "FusionClassifier vs PyTorch and MLPClassifier",
        _run_fusion,
        _fusion_ratios,
    ),
    Suite("multitask", "MultiTaskRegressor vs MLPRegressor", _run_multitask, _multitask_ratios),
]


# ----------------------------------------------------------------- helpers
@contextlib.contextmanager
def _warnings_restored():
    import warnings

    with warnings.catch_warnings():  # the fusion script silences warnings globally
        yield


def find_bench_dir():
    """The ``bench/`` folder of a fastgd source tree, or None.

    Looked for beside the ``fastgd`` package (an editable install or a
    checkout on ``sys.path``), then in the current directory.
    """
    package_root = Path(__file__).resolve().parent.parent
    for root in (package_root, Path.cwd()):
        if (root / "bench" / "gd_regressor.py").is_file() and (root / "fastgd").is_dir():
            return root / "bench"
    return None


class _Progress:
    """A progress line on stderr: the suite running and the seconds elapsed."""

    def __init__(self, label, stream=None):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._stop = threading.Event()

    def _tick(self):
        while not self._stop.wait(1.0):
            seconds = time.perf_counter() - self.started
            self.stream.write(f"\r{self.label} ... {seconds:5.0f} s")
            self.stream.flush()

    def __enter__(self):
        self.started = time.perf_counter()
        self.stream.write(f"{self.label} ..." + ("" if self.live else "\n"))
        self.stream.flush()
        if self.live:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._stop.set()
        if self.live:
            self._thread.join()
        seconds = time.perf_counter() - self.started
        outcome = "failed" if exc_type else "done"
        prefix = "\r" if self.live else ""
        self.stream.write(f"{prefix}{self.label} ... {outcome} in {seconds:.1f} s\n")
        self.stream.flush()
        return False


def _environment():
    import numba
    import numpy
    import sklearn

    import fastgd

    versions = {
        "fastgd": fastgd.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
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
        "cpus": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
    }


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
        Keys of the suites to run (``"gd_regressor"``, ``"fusion"``,
        ``"multitask"``); all when None.
    out, err : file-like or None
        Where the tables and the progress line go (stdout and stderr).

    Returns
    -------
    report : dict or None
        What ``--json`` writes; None when the benchmark suite is not found.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    bench_dir = find_bench_dir()
    if bench_dir is None:
        print(
            "fastgd bench runs the benchmark suite in the bench/ folder of fastgd's source "
            "tree, which an installed package does not include. Run it from a checkout:\n"
            "  git clone <fastgd repository> && cd fastgd && pip install -e . && fastgd bench",
            file=err,
        )
        return None
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install 'fastgd[plot]'", file=err)
            return None
    root = str(bench_dir.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    suites = [s for s in SUITES if only is None or s.key in only]
    report = {"quick": quick, **_environment(), "suites": {}, "ratios": []}
    started = time.perf_counter()
    for number, suite in enumerate(suites, 1):
        with _Progress(f"[{number}/{len(suites)}] {suite.title}", err):
            results, table = suite.run(quick)
        report["suites"][suite.key] = results
        report["ratios"] += [
            {"suite": suite.key, "measurement": name, "ratio": float(ratio)}
            for name, ratio in suite.ratios(results)
        ]
        print(f"\n## {suite.title}\n\n{table}\n", file=out, flush=True)
    report["seconds"] = time.perf_counter() - started

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
