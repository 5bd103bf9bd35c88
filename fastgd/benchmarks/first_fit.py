"""Time to the first fit: import + a first small fit in a fresh process, per estimator.

``python -m fastgd.benchmarks.first_fit [--repeats N] [--only SUBSTRING]``
(also ``python -m bench.first_fit``) prints, for every estimator (or those
whose row name contains ``SUBSTRING``), the wall and CPU time of a new
interpreter that imports it and fits a small model on data shipped with
scikit-learn:

* **cold**: an empty Numba cache (``NUMBA_CACHE_DIR`` set to a new folder),
  what the first fit after installing costs;
* **warm**: the cache filled by an earlier process;

beside scikit-learn's MLPClassifier doing the same (it compiles nothing).
The estimators take turns, one cold and one warm process each per round, and
medians over the rounds are shown.
Issue 12's targets: cold ≤ 10 s for every estimator, warm ≤ 1.5× MLPClassifier.
Every script checks the model it fitted (score far above chance).
"""

import argparse
import functools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from fastgd.benchmarks.timing import interleaved_results

_DIGITS = (
    "from sklearn.datasets import load_digits\n"
    "X, y = load_digits(return_X_y=True)\n"
    "X = (X / 16.0).astype('float32')\n"
)

SCRIPTS = {
    "FusionClassifier, conv branch (digits, 2 epochs)": _DIGITS
    + "from fastgd import FusionClassifier\n"
    "from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape\n"
    "clf = FusionClassifier(branches=[('img', [Reshape((8, 8)), Conv2D(8, 3, activation='relu'),"
    " MaxPool2D(2), Flatten()], slice(None))], head=(Dense(32, activation='relu'),),"
    " max_iter=2, random_state=0).fit(X, y)\n"
    "assert clf.score(X, y) > 0.6, clf.score(X, y)\n",
    "FusionClassifier, default MLP (digits, 5 epochs)": _DIGITS
    + "from fastgd import FusionClassifier\n"
    "clf = FusionClassifier(max_iter=5, random_state=0).fit(X, y)\n"
    "assert clf.score(X, y) > 0.6, clf.score(X, y)\n",
    "MultiTaskRegressor (linnerud, 20 epochs)": "from sklearn.datasets import load_linnerud\n"
    "X, Y = load_linnerud(return_X_y=True)\n"
    "from fastgd import MultiTaskRegressor\n"
    "m = MultiTaskRegressor(max_iter=20, random_state=0).fit(X, Y)\n"
    "assert m.predict(X).shape == Y.shape\n",
    "GDRegressor, mini-batch (diabetes, 20 epochs)": "from sklearn.datasets import load_diabetes\n"
    "X, y = load_diabetes(return_X_y=True, scaled=False)\n"
    "X = (X - X.mean(0)) / X.std(0)\n"
    "y = (y - y.mean()) / y.std()\n"
    "from fastgd import GDRegressor\n"
    "m = GDRegressor(batch_size=32, max_iter=20, tol=None, random_state=0).fit(X, y)\n"
    "assert m.score(X, y) > 0.2, m.score(X, y)\n",
    "GDClassifier, mini-batch one-vs-rest (digits, 20 epochs)": _DIGITS
    + "from fastgd import GDClassifier\n"
    "m = GDClassifier(batch_size=32, max_iter=20, tol=None, random_state=0).fit(X, y)\n"
    "assert m.score(X, y) > 0.8, m.score(X, y)\n",
    "GDClassifier, full batch one-vs-rest (digits, 20 iterations)": _DIGITS
    + "from fastgd import GDClassifier\n"
    "m = GDClassifier(batch_size='full', max_iter=20, tol=None, random_state=0).fit(X, y)\n"
    "assert m.score(X, y) > 0.8, m.score(X, y)\n",
    "GDClassifier, mini-batch multinomial (digits, 20 epochs)": _DIGITS
    + "from fastgd import GDClassifier\n"
    "m = GDClassifier(batch_size=32, loss='log_loss', multi_class='multinomial', max_iter=20,"
    " tol=None, random_state=0).fit(X, y)\n"
    "assert m.score(X, y) > 0.8, m.score(X, y)\n",
    "scikit-learn MLPClassifier (digits, 5 epochs)": _DIGITS + "import warnings\n"
    "warnings.simplefilter('ignore')\n"
    "from sklearn.neural_network import MLPClassifier\n"
    "clf = MLPClassifier(max_iter=5, random_state=0).fit(X, y)\n"
    "assert clf.score(X, y) > 0.6, clf.score(X, y)\n",
}
REFERENCE = "scikit-learn MLPClassifier (digits, 5 epochs)"


def _run(script, cache_dir):
    """(wall seconds, CPU seconds) of ``python -c script`` with this Numba cache."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _run_with_empty_cache(script):
    """:func:`_run` with a new, empty Numba cache."""
    with tempfile.TemporaryDirectory() as empty:
        return _run(script, empty)


def measure(repeats=3, only=None):
    """``{estimator: {"cold": s, "warm": s, ...}}``, medians over ``repeats`` fresh processes.

    Parameters
    ----------
    repeats : int
        Fresh processes per estimator and cache state.
    only : str, optional
        Measure only the rows whose name contains this (case-insensitive).

    Returns
    -------
    dict
        Per row name: median wall (``"cold"``, ``"warm"``) and CPU
        (``"cold cpu"``, ``"warm cpu"``) seconds.
    """
    names = [name for name in SCRIPTS if only is None or only.lower() in name.lower()]
    with tempfile.TemporaryDirectory() as caches:
        cache_of = {name: os.path.join(caches, str(i)) for i, name in enumerate(names)}
        for name in names:
            _run(SCRIPTS[name], cache_of[name])  # fills the cache
        # The estimators take turns in every round, so that the machine's drift
        # over minutes touches them all alike and only their ratios are compared.
        runs = {}
        for name in names:
            runs[name, "cold"] = functools.partial(_run_with_empty_cache, SCRIPTS[name])
            runs[name, "warm"] = functools.partial(_run, SCRIPTS[name], cache_of[name])
        samples = interleaved_results(runs, repeats)
    results = {}
    for name in names:
        cold, warm = samples[name, "cold"], samples[name, "warm"]
        results[name] = {
            "cold": statistics.median(w for w, _ in cold),
            "warm": statistics.median(w for w, _ in warm),
            "cold cpu": statistics.median(c for _, c in cold),
            "warm cpu": statistics.median(c for _, c in warm),
        }
        print(name, {k: round(v, 2) for k, v in results[name].items()}, flush=True)
    return results


def format_table(results):
    """The results of :func:`measure` as a text table.

    The warm ratios need the reference row; without it they are left blank.
    """
    reference = results.get(REFERENCE)
    lines = [
        "fresh process, import + first fit (median seconds, wall and CPU of the process); "
        "warm ratio = warm / MLPClassifier's (target <= 1.5); cold target <= 10 s",
        f"{'estimator':<62} {'cold s':>7} {'cpu':>6} {'warm s':>7} {'cpu':>6} "
        f"{'ratio':>6} {'cpu':>6}",
    ]
    for name, r in results.items():
        ratios = f"{'':>6} {'':>6}"
        if reference is not None:
            ratios = (
                f"{r['warm'] / reference['warm']:6.2f} {r['warm cpu'] / reference['warm cpu']:6.2f}"
            )
        lines.append(
            f"{name:<62} {r['cold']:7.2f} {r['cold cpu']:6.2f} {r['warm']:7.2f} "
            f"{r['warm cpu']:6.2f} {ratios}"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    """The command line of :func:`main` (``sys.argv[1:]`` by default)."""
    parser = argparse.ArgumentParser(
        prog="python -m fastgd.benchmarks.first_fit",
        description="Time to the first fit of each estimator in a fresh process, "
        "with an empty (cold) and a filled (warm) Numba cache.",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fresh processes per estimator and cache state; medians are shown (default 3)",
    )
    parser.add_argument(
        "--only",
        metavar="SUBSTRING",
        help="measure only the estimators whose row name contains SUBSTRING (case-insensitive)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results = measure(args.repeats, args.only)
    if not results:
        raise SystemExit(f"no estimator row contains {args.only!r}; rows: {list(SCRIPTS)}")
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
