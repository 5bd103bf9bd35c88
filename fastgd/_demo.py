"""``fastgd demo``: every estimator next to its scikit-learn counterpart.

Fits fastgd's estimators on data sets shipped with scikit-learn and prints
each score and fit time beside scikit-learn's, which kernels each estimator
ran on, and how long Numba took to compile (or load) them. Every library gets
the same thread budget (one thread unless told otherwise), for Numba's
kernels as for BLAS, so that the times compare like with like.
"""

import contextlib
import os
import statistics
import sys
import time


@contextlib.contextmanager
def thread_budget(n_threads):
    """Run every library on at most ``n_threads`` threads: Numba's kernels, BLAS, OpenMP.

    fastgd's Numba kernels follow Numba's thread count (``numba.set_num_threads``),
    its ahead-of-time network kernels OpenMP's limit; scikit-learn's
    computations run in BLAS and OpenMP; both limited through threadpoolctl, as
    a scikit-learn user would limit them.
    """
    import numba
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n_threads):
            yield
    finally:
        numba.set_num_threads(previous)


def gd_regressor_backend(model):
    """``"cython"`` or ``"numba"``: the per-sample kernels a GDRegressor fit runs on."""
    return model._backend()


def _describe_backend(backend):
    if backend == "cython":
        return "ran on the Cython backend (compiled when fastgd was installed)"
    import fastgd

    return (
        "ran on the Numba backend: fastgd's Cython extension is not built in "
        f"{os.path.dirname(fastgd.__file__)} (`pip install .` builds it)"
    )


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
    print(
        f"GDRegressor on scikit-learn's diabetes data (held-out R², median fit time of {repeats})",
        file=out,
    )
    print(
        f"  fastgd.GDRegressor                  R² {our_r2:.4f}   {our_time * 1e3:8.2f} ms",
        file=out,
    )
    print(
        f"  sklearn.linear_model.SGDRegressor   R² {their_r2:.4f}   {their_time * 1e3:8.2f} ms",
        file=out,
    )
    print(
        f"  SGDRegressor's time / GDRegressor's: {their_time / our_time:.2f} "
        f"(above 1: fastgd is faster; on {len(X_train)} rows, per-fit costs dominate)",
        file=out,
    )
    print(f"  fastgd.GDRegressor {_describe_backend(gd_regressor_backend(ours))}", file=out)
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
        # A first fit outside the timing (first use of the kernels and of BLAS).
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
        "  fastgd.FusionClassifier ran on fastgd's compiled layer kernels, loss and "
        "optimizer step (built at install: nothing is JIT-compiled); a first small fit "
        f"took {warm_up:.1f} s before the timed fit",
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
        # A first fit outside the timing (first use of the kernels and of BLAS).
        _, warm_up = _timed(lambda: ours.fit(X[:8], Y[:8]))
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
    print(
        "  fastgd.MultiTaskRegressor ran on fastgd's compiled layer kernels, loss and "
        "optimizer step (built at install: nothing is JIT-compiled); a first small fit "
        f"took {warm_up:.1f} s before the timed fits",
        file=out,
    )
    return our_r2, their_r2


def demo(threads=1, out=None):
    """``fastgd demo``: every estimator next to its scikit-learn counterpart.

    Parameters
    ----------
    threads : int, default=1
        Thread budget of every library, fastgd and scikit-learn alike.
    out : file-like, default=None
        Where to print (``sys.stdout`` when None).
    """
    import fastgd

    out = sys.stdout if out is None else out
    started = time.perf_counter()
    print(f"fastgd {fastgd.__version__} ({os.path.dirname(fastgd.__file__)})", file=out)
    plural = "thread" if threads == 1 else "threads"
    print(
        f"Every library runs on {threads} {plural} (Numba's kernels through "
        "numba.set_num_threads, BLAS and OpenMP through threadpoolctl); "
        "`fastgd demo --threads N` sets another budget.\n",
        file=out,
    )
    with thread_budget(threads):
        demo_gd_regressor(out=out)
        print(file=out)
        demo_fusion_classifier(out=out)
        print(file=out)
        demo_multitask_regressor(out=out)
    print(f"\nDemo finished in {time.perf_counter() - started:.1f} s.", file=out)
