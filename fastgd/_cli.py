"""The ``fastgd`` command line (also ``python -m fastgd``).

``fastgd demo`` fits fastgd's estimators on data shipped with scikit-learn
and prints each score and fit time next to the scikit-learn counterpart.
``fastgd compile`` compiles every Numba kernel ahead of time (into Numba's
on-disk cache), so that no later process pays for compilation.
``fastgd bench`` runs the head-to-head benchmark suite of a source checkout.
"""

import argparse
import statistics
import sys
import time


def _median_fit_seconds(make_model, X, y, repeats):
    times = []
    for _ in range(repeats):
        model = make_model()
        started = time.perf_counter()
        model.fit(X, y)
        times.append(time.perf_counter() - started)
    return model, statistics.median(times)


def demo_gd_regressor(repeats=7, out=sys.stdout):
    """GDRegressor vs SGDRegressor on the diabetes data; returns (ours, theirs) R²."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import SGDRegressor
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from fastgd import GDRegressor

    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    ours, our_time = _median_fit_seconds(
        lambda: GDRegressor(random_state=0), X_train, y_train, repeats
    )
    theirs, their_time = _median_fit_seconds(
        lambda: SGDRegressor(random_state=0), X_train, y_train, repeats
    )
    our_r2, their_r2 = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    print("GDRegressor on scikit-learn's diabetes data (held-out R², median fit time)", file=out)
    print(
        f"  fastgd.GDRegressor                  R² {our_r2:.4f}   {our_time * 1e3:8.2f} ms",
        file=out,
    )
    print(
        f"  sklearn.linear_model.SGDRegressor   R² {their_r2:.4f}   {their_time * 1e3:8.2f} ms",
        file=out,
    )
    print(f"  speed-up: {their_time / our_time:.1f}x", file=out)
    return our_r2, their_r2


def compile_command(estimators=None, list_kernels=False, out=None):
    """``fastgd compile``: compile every Numba kernel and say what and how long."""
    from fastgd._compile import compile_kernels

    out = sys.stdout if out is None else out
    which = ", ".join(estimators) if estimators else "every estimator"
    print(f"Compiling fastgd's Numba kernels for float32 and float64 ({which})...", file=out)
    report = compile_kernels(estimators=estimators, verbose=True, out=out)
    if list_kernels:
        print(f"  {'kernel':<48} {'signatures':>10} {'compiled':>9} {'loaded':>7}", file=out)
        for name, counts in report["kernels"].items():
            print(
                f"  {name:<48} {counts['signatures']:>10} {counts['compiled']:>9} "
                f"{counts['loaded']:>7}",
                file=out,
            )
    print(
        f"{len(report['kernels'])} kernels: {report['compiled']} signatures compiled, "
        f"{report['loaded']} loaded from the cache, in {report['seconds']:.1f} s.",
        file=out,
    )
    print(f"Cache: {report['cache_dir']}", file=out)
    return report


def main(argv=None):
    """Entry point of the ``fastgd`` console script."""
    parser = argparse.ArgumentParser(prog="fastgd", description="fastgd: compiled gradient descent")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="fit fastgd's estimators on scikit-learn's data sets")
    compile_parser = commands.add_parser(
        "compile",
        help="compile every Numba kernel ahead of time (into Numba's on-disk cache)",
        description="Compile every Numba kernel of fastgd for float32 and float64 and save "
        "it in Numba's on-disk cache (NUMBA_CACHE_DIR if set), so that later processes "
        "(parallel grid searches, Dask workers) load it instead of compiling.",
    )
    compile_parser.add_argument(
        "--estimator",
        action="append",
        choices=["GDRegressor", "FusionClassifier", "MultiTaskRegressor"],
        help="only the kernels of this estimator (repeat for several; default: all)",
    )
    compile_parser.add_argument(
        "--list", action="store_true", help="list every kernel and its signatures"
    )
    bench_parser = commands.add_parser(
        "bench",
        help="run the head-to-head benchmark suite (from a source checkout)",
        description="Measure fastgd against scikit-learn (and PyTorch when installed) in one "
        "run and print tables of times and ratios (ratio > 1: fastgd is faster).",
    )
    bench_parser.add_argument("--quick", action="store_true", help="small problems")
    bench_parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench_parser.add_argument(
        "--plot", metavar="FILE.png", help="save a bar chart of the ratios (needs matplotlib)"
    )
    bench_parser.add_argument(
        "--only",
        action="append",
        choices=["gd_regressor", "fusion", "multitask"],
        help="run only this suite (repeat for several; default: all)",
    )
    args = parser.parse_args(argv)
    if args.command == "bench":
        from fastgd._bench import run_bench

        report = run_bench(
            quick=args.quick, json_path=args.json, plot_path=args.plot, only=args.only
        )
        return 0 if report is not None else 1
    if args.command == "demo":
        demo_gd_regressor()
    elif args.command == "compile":
        compile_command(args.estimator, list_kernels=args.list)
    return 0
