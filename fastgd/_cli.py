"""The ``fastgd`` command line (also ``python -m fastgd``).

``fastgd demo`` fits fastgd's estimators on data shipped with scikit-learn
and prints each score and fit time next to the scikit-learn counterpart.
``fastgd compile`` compiles every Numba kernel ahead of time (into Numba's
on-disk cache), so that no later process pays for compilation.
``fastgd bench`` measures fastgd against scikit-learn (and PyTorch when
installed) on this machine.
"""

import argparse
import os
import sys


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


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv=None):
    """Entry point of the ``fastgd`` console script."""
    import fastgd
    from fastgd.benchmarks.runner import SUITES

    parser = argparse.ArgumentParser(
        prog="fastgd",
        description="fastgd: compiled gradient descent",
        # Keeps --version's line (with the package folder) whole.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"fastgd {fastgd.__version__} ({os.path.dirname(fastgd.__file__)})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        help="fit fastgd's estimators on scikit-learn's data sets, beside scikit-learn's",
    )
    demo_parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="threads every library may use, fastgd and scikit-learn alike (default: 1)",
    )
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
        choices=["GDRegressor", "GDClassifier", "FusionClassifier", "MultiTaskRegressor"],
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
        choices=[suite.key for suite in SUITES],
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
        from fastgd._demo import demo

        demo(threads=args.threads)
    elif args.command == "compile" and args.list:
        list_command()
    elif args.command == "compile":
        compile_command(args.estimator)
    return 0
