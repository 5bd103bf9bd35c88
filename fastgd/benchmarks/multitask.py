"""MultiTaskRegressor against scikit-learn's MLPRegressor, measured in one run.

Run as a script for a table (``python -m fastgd.benchmarks.multitask``; ``--quick`` for a
small problem, ``--json FILE`` to keep the numbers); the pytest-benchmark
suite in ``bench/test_bench_multitask.py`` uses the same problem and models.

What is measured (the target: ≥ 1.3× faster per epoch than
MLPRegressor on 100,000 × 100 with 10 targets):

* the same network in both libraries — 100 inputs → Dense(100, relu) →
  10 linear outputs (MultiTaskRegressor with ``task_layer_sizes=()``: one
  output unit per task on the shared trunk), Adam (lr 1e-3), L2 alpha 1e-4,
  shuffled mini-batches of the same size (scikit-learn's default 200, and
  32), float32 data and weights in both (MLPRegressor keeps float32 input in
  float32);
* a one-epoch fit (what a user sees, input validation included) and the
  marginal cost of an epoch, ``(fit(1 + E) − fit(1)) / E``, both with the
  stopping rule off, as interleaved medians so that the load of a shared
  machine hits both libraries alike;
* held-out R² of both models after ``1 + E`` epochs: a fast wrong model
  cannot win (the run fails if either is poor or they differ by much). The
  two do not follow the same trajectory (different initialisations — He
  for ReLU here, Glorot there — and fastgd standardises the targets), so
  after a few epochs their R² differ by a few hundredths; both reach the
  same level when trained on.

``--task-heads`` measures instead the marginal epoch of MultiTaskRegressor
with a head of its own per task (``task_layer_sizes=(16,)`` on the same
trunk, batch 32) for many tasks (8 and 32), which scikit-learn has no
counterpart of; the model must reach the same held-out R² floor.
"""

import argparse
import json
import os
import warnings

# OpenMP threads that busy-wait starve BLAS (see fastgd/benchmarks/fusion.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402

from fastgd import MultiTaskRegressor  # noqa: E402
from fastgd.benchmarks.timing import interleaved_median_times  # noqa: E402

FULL_SIZE = (100_000, 100, 10)
QUICK_SIZE = (20_000, 100, 10)
HIDDEN = (100,)
EPOCHS = 3
BATCH_SIZES = (200, 32)
MIN_R2 = 0.6
MAX_R2_GAP = 0.1


def make_problem(n_samples, n_features, n_tasks, seed=0, n_test=5_000):
    """Tasks sharing a nonlinear rank-5 signal, float32; plus a test set."""
    rng = np.random.RandomState(seed)
    B = rng.standard_normal((n_features, 5)) / np.sqrt(n_features) * 2.0
    C = rng.standard_normal((5, n_tasks))
    X = rng.standard_normal((n_samples + n_test, n_features)).astype(np.float32)
    Y = np.tanh(X @ B) @ C + 0.1 * rng.standard_normal((n_samples + n_test, n_tasks))
    Y = Y.astype(np.float32)
    return X[:n_samples], Y[:n_samples], X[n_samples:], Y[n_samples:]


def fastgd_model(batch_size, max_iter=1, random_state=0):
    """MultiTaskRegressor with the benchmark's architecture; stopping rule off."""
    return MultiTaskRegressor(
        hidden_layer_sizes=HIDDEN,
        activation="relu",
        optimizer="adam",
        learning_rate_init=1e-3,
        alpha=1e-4,
        batch_size=batch_size,
        max_iter=max_iter,
        tol=None,
        random_state=random_state,
        dtype=np.float32,
    )


def sklearn_model(batch_size, max_iter=1, random_state=0):
    """The same network in scikit-learn; never stops before ``max_iter``."""
    return MLPRegressor(
        hidden_layer_sizes=HIDDEN,
        activation="relu",
        solver="adam",
        learning_rate_init=1e-3,
        alpha=1e-4,
        batch_size=batch_size,
        max_iter=max_iter,
        tol=0.0,
        n_iter_no_change=10**9,
        random_state=random_state,
    )


def fit_quietly(model, X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, Y)


def check_r2(fastgd_r2, sklearn_r2):
    """Both models must have learnt the problem, and about equally well."""
    assert fastgd_r2 > MIN_R2, f"MultiTaskRegressor held-out R² {fastgd_r2:.3f} too low"
    assert sklearn_r2 > MIN_R2, f"MLPRegressor held-out R² {sklearn_r2:.3f} too low"
    assert abs(fastgd_r2 - sklearn_r2) < MAX_R2_GAP, (fastgd_r2, sklearn_r2)


def measure(n_samples, n_features, n_tasks, batch_sizes=BATCH_SIZES, repeats=5):
    """Run every measurement; return a dict of named results."""
    X, Y, X_test, Y_test = make_problem(n_samples, n_features, n_tasks)
    # Compile / load the Numba kernels before timing.
    fit_quietly(fastgd_model(32), X[:2000], Y[:2000])
    results = {"n_samples": n_samples, "n_features": n_features, "n_tasks": n_tasks}
    results["epochs"] = EPOCHS
    results["batch_sizes"] = {}
    for bs in batch_sizes:
        models = {"fastgd": fastgd_model(bs), "sklearn": sklearn_model(bs)}
        jobs = {}
        for name, model in models.items():
            for k in (1, 1 + EPOCHS):
                jobs[(name, k)] = lambda m=model, k=k: fit_quietly(m.set_params(max_iter=k), X, Y)
        raw = interleaved_median_times(jobs, repeats=repeats)
        one = {name: raw[(name, 1)] for name in models}
        marginal = {name: (raw[(name, 1 + EPOCHS)] - raw[(name, 1)]) / EPOCHS for name in models}
        # The last timed fits ran 1 + EPOCHS epochs: judge those models.
        r2 = {name: float(m.score(X_test, Y_test)) for name, m in models.items()}
        check_r2(r2["fastgd"], r2["sklearn"])
        results["batch_sizes"][bs] = {
            "one_epoch_fit_seconds": one,
            "marginal_epoch_seconds": marginal,
            "held_out_r2": r2,
            "ratio_one_epoch_fit": one["sklearn"] / one["fastgd"],
            "ratio_marginal_epoch": marginal["sklearn"] / marginal["fastgd"],
        }
    return results


TASK_HEAD_SIZES = (16,)
TASK_COUNTS = (8, 32)


def measure_task_heads(n_samples, n_features, task_counts=TASK_COUNTS, repeats=5):
    """Marginal epoch (seconds) of MultiTaskRegressor with per-task heads, by task count."""
    results = {"n_samples": n_samples, "n_features": n_features, "task_heads": {}}
    for n_tasks in task_counts:
        X, Y, X_test, Y_test = make_problem(n_samples, n_features, n_tasks)
        model = fastgd_model(32).set_params(task_layer_sizes=TASK_HEAD_SIZES)
        fit_quietly(model, X[:2000], Y[:2000])
        jobs = {
            k: lambda k=k, m=model, X=X, Y=Y: fit_quietly(m.set_params(max_iter=k), X, Y)
            for k in (1, 1 + EPOCHS)
        }
        raw = interleaved_median_times(jobs, repeats=repeats)
        r2 = float(model.score(X_test, Y_test))
        assert r2 > MIN_R2, f"MultiTaskRegressor with task heads: held-out R² {r2:.3f} too low"
        results["task_heads"][n_tasks] = {
            "marginal_epoch_seconds": (raw[1 + EPOCHS] - raw[1]) / EPOCHS,
            "held_out_r2": r2,
        }
    return results


def format_task_heads(results):
    """Markdown table of :func:`measure_task_heads`."""
    lines = [
        f"MultiTaskRegressor with a Dense({TASK_HEAD_SIZES[0]}, relu) head per task, "
        f"{results['n_samples']:,} x {results['n_features']}, trunk {HIDDEN[0]} relu, "
        "adam, batch 32, float32",
        "",
        "| tasks | marginal epoch | held-out R² |",
        "| --- | --- | --- |",
    ]
    for n_tasks, r in results["task_heads"].items():
        lines.append(
            f"| {n_tasks} | {r['marginal_epoch_seconds'] * 1000:.0f} ms | {r['held_out_r2']:.3f} |"
        )
    return "\n".join(lines)


def format_table(results):
    """Markdown table of the measurements."""
    lines = [
        f"MultiTaskRegressor vs MLPRegressor, {results['n_samples']:,} x "
        f"{results['n_features']}, {results['n_tasks']} targets, "
        f"{results['n_features']}-{HIDDEN[0]}-{results['n_tasks']} relu, adam, float32",
        "",
        "| batch | measurement | fastgd | sklearn | sklearn / fastgd |",
        "| --- | --- | --- | --- | --- |",
    ]
    for bs, r in results["batch_sizes"].items():
        f, m = r["one_epoch_fit_seconds"], r["marginal_epoch_seconds"]
        lines.append(
            f"| {bs} | one-epoch fit | {f['fastgd'] * 1000:.0f} ms | {f['sklearn'] * 1000:.0f} ms "
            f"| {r['ratio_one_epoch_fit']:.2f} |"
        )
        lines.append(
            f"| {bs} | marginal epoch | {m['fastgd'] * 1000:.0f} ms | "
            f"{m['sklearn'] * 1000:.0f} ms | **{r['ratio_marginal_epoch']:.2f}** |"
        )
        r2 = r["held_out_r2"]
        lines.append(
            f"| {bs} | held-out R² after {1 + results['epochs']} epochs | {r2['fastgd']:.3f} | "
            f"{r2['sklearn']:.3f} | |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 samples instead of 100,000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--batch-size", type=int, action="append", help="batch sizes (default: 200 and 32)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--task-heads", action="store_true", help="per-task heads, 8 and 32 tasks (fastgd only)"
    )
    args = parser.parse_args(argv)
    size = QUICK_SIZE if args.quick else FULL_SIZE
    if args.task_heads:
        results = measure_task_heads(*size[:2], repeats=args.repeats)
        print(format_task_heads(results))
    else:
        results = measure(*size, batch_sizes=args.batch_size or BATCH_SIZES, repeats=args.repeats)
        print(format_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
