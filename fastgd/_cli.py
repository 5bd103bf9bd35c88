"""The ``fastgd`` command line (also ``python -m fastgd``).

``fastgd demo`` fits fastgd's estimators on data shipped with scikit-learn
and prints each score and fit time next to the scikit-learn counterpart.
``fastgd compile`` compiles every Numba kernel ahead of time (into Numba's
on-disk cache), so that no later process pays for compilation.
``fastgd bench`` measures fastgd against scikit-learn (and PyTorch when
installed) on this machine.
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


def demo_gd_regressor(repeats=7, out=None):
    """GDRegressor vs SGDRegressor on the diabetes data; returns (ours, theirs) R²."""
    out = sys.stdout if out is None else out
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


def _timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def demo_fusion_classifier(out=None):
    """FusionClassifier vs MLPClassifier on the digits; returns (ours, theirs) accuracy.

    Two views of each 8x8 digit: the image, read by a convolutional branch,
    and its 16 row and column sums, read by a dense branch; fused both early
    and late (``fusion="hybrid"``). MLPClassifier gets the same 80 columns.
    """
    import warnings

    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from fastgd import FusionClassifier
    from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape

    out = sys.stdout if out is None else out
    X, y = load_digits(return_X_y=True)
    images = X / 16.0
    grid = images.reshape(-1, 8, 8)
    sums = np.hstack([grid.sum(axis=1), grid.sum(axis=2)]) / 8.0
    X2 = np.hstack([images, sums])
    X_train, X_test, y_train, y_test = train_test_split(X2, y, random_state=0, stratify=y)

    def ours():
        return FusionClassifier(
            branches=[
                (
                    "image",
                    [
                        Reshape((1, 8, 8)),
                        Conv2D(16, 3, padding="same", activation="relu"),
                        MaxPool2D(2),
                        Flatten(),
                    ],
                    slice(0, 64),
                ),
                ("sums", [Dense(32, activation="relu")], slice(64, 80)),
            ],
            fusion="hybrid",
            random_state=0,
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The first fit on a machine compiles the kernels (then cached on disk).
        _, warm_up = _timed(lambda: ours().fit(X_train[:64], y_train[:64]))
        fusion, our_time = _timed(lambda: ours().fit(X_train, y_train))
        mlp, their_time = _timed(
            lambda: MLPClassifier(random_state=0, max_iter=300).fit(X_train, y_train)
        )
    our_acc, their_acc = fusion.score(X_test, y_test), mlp.score(X_test, y_test)
    print(
        "FusionClassifier on scikit-learn's digits, two views: the 8x8 image (conv branch) "
        "and its row/column sums (dense branch); held-out accuracy, fit time",
        file=out,
    )
    print(
        f"  fastgd.FusionClassifier              acc {our_acc:.4f}   {our_time:6.2f} s "
        f"({fusion.n_iter_} epochs)",
        file=out,
    )
    print(
        f"  sklearn.neural_network.MLPClassifier acc {their_acc:.4f}   {their_time:6.2f} s "
        f"({mlp.n_iter_} epochs)",
        file=out,
    )
    print(
        f"  (kernels compiled or loaded from Numba's cache in {warm_up:.1f} s; "
        "`fastgd compile` compiles them all once)",
        file=out,
    )
    return our_acc, their_acc


def demo_multitask_regressor(out=None):
    """MultiTaskRegressor vs RidgeCV on linnerud; returns (ours, theirs) R².

    Three physiological targets of 20 athletes from three exercises, scored by
    leave-one-out predictions. A rank-1 shared trunk (reduced-rank regression)
    against one ridge regression per target.
    """
    import warnings

    import numpy as np
    from sklearn.datasets import load_linnerud
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastgd import MultiTaskRegressor

    out = sys.stdout if out is None else out
    X, Y = load_linnerud(return_X_y=True)
    ours = make_pipeline(
        StandardScaler(),
        MultiTaskRegressor(
            hidden_layer_sizes=(1,),
            activation="identity",
            alpha=1.0,
            batch_size=8,
            learning_rate_init=1e-2,
            max_iter=300,
            random_state=0,
        ),
    )
    theirs = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 20)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X[:8], Y[:8])  # compile or load the kernels outside the timing
        P_ours, our_time = _timed(lambda: cross_val_predict(ours, X, Y, cv=LeaveOneOut()))
        P_theirs, their_time = _timed(lambda: cross_val_predict(theirs, X, Y, cv=LeaveOneOut()))
    our_r2, their_r2 = r2_score(Y, P_ours), r2_score(Y, P_theirs)
    print(
        "MultiTaskRegressor on scikit-learn's linnerud: 3 targets of 20 athletes "
        "(leave-one-out R², mean over targets; 20 fits)",
        file=out,
    )
    print(f"  fastgd.MultiTaskRegressor (rank 1)   R² {our_r2:7.4f}   {our_time:6.2f} s", file=out)
    print(
        f"  sklearn.linear_model.RidgeCV         R² {their_r2:7.4f}   {their_time:6.2f} s",
        file=out,
    )
    print(
        "  20 samples: the targets are barely predictable out of sample by any model",
        file=out,
    )
    return our_r2, their_r2


def demo(out=None):
    """``fastgd demo``: every estimator next to its scikit-learn counterpart."""
    out = sys.stdout if out is None else out
    started = time.perf_counter()
    demo_gd_regressor(out=out)
    print(file=out)
    demo_fusion_classifier(out=out)
    print(file=out)
    demo_multitask_regressor(out=out)
    print(f"\nDemo finished in {time.perf_counter() - started:.1f} s.", file=out)


def compile_command(estimators=None, out=None):
    """``fastgd compile``: compile every Numba kernel and say what and how long."""
    from fastgd._compile import compile_kernels

    out = sys.stdout if out is None else out
    which = ", ".join(estimators) if estimators else "every estimator"
    print(f"Compiling fastgd's Numba kernels for float32 and float64 ({which})...", file=out)
    report = compile_kernels(estimators=estimators, verbose=True, out=out)
    print(
        f"{len(report['kernels'])} kernels: {report['compiled']} signatures compiled, "
        f"{report['loaded']} loaded from the cache, in {report['seconds']:.1f} s.",
        file=out,
    )
    print(f"Cache: {report['cache_dir']}", file=out)
    return report


def list_command(out=None):
    """``fastgd compile --list``: every kernel and what the cache holds, compiling nothing."""
    from fastgd._compile import list_kernels

    out = sys.stdout if out is None else out
    report = list_kernels()
    print(f"  {'kernel':<56} {'signatures in the cache':>23}", file=out)
    for name, count in report["kernels"].items():
        print(f"  {name:<56} {'?' if count is None else count:>23}", file=out)
    cached = [count for count in report["kernels"].values() if count]
    print(
        f"{len(report['kernels'])} kernels, {len(cached)} with machine code in the cache "
        f"({sum(cached)} signatures); `fastgd compile` compiles what the estimators use.",
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
    what = compile_parser.add_mutually_exclusive_group()
    what.add_argument(
        "--estimator",
        action="append",
        choices=["GDRegressor", "FusionClassifier", "MultiTaskRegressor"],
        help="only the kernels of this estimator (repeat for several; default: all)",
    )
    what.add_argument(
        "--list",
        action="store_true",
        help="list every kernel and the signatures Numba's cache holds for it; compile nothing",
    )
    bench_parser = commands.add_parser(
        "bench",
        help="measure fastgd against scikit-learn (and PyTorch when installed)",
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
        from fastgd.benchmarks.runner import run_bench

        report = run_bench(
            quick=args.quick, json_path=args.json, plot_path=args.plot, only=args.only
        )
        return 0 if report is not None else 1
    if args.command == "demo":
        demo()
    elif args.command == "compile" and args.list:
        list_command()
    elif args.command == "compile":
        compile_command(args.estimator)
    return 0
