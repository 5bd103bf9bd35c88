"""The four fusion strategies of FusionClassifier side by side on scikit-learn's digits.

Run as a script (``python -m bench.fusion_strategies [--seeds N]``) for the
table of the README's fusion section: held-out accuracy of every strategy,
and of each branch alone, on one split, as the mean (and range) over seeds
0 … N-1 of ``random_state`` (the weights, the batches). The test
``tests/test_serial_fusion.py`` fits the same models on the same split.

Data: the 8×8 digit images (pixels / 16) and, as a second view, their 8 row
sums and 8 column sums (/ 8), in one X of 80 columns; a stratified split
of 70 % / 30 % (``random_state=0``). Models (Adam, batch 32, at most 60
epochs, the default stopping rule):

* image branch: ``Reshape((8, 8)) → Conv2D(8, 3×3, relu) → MaxPool2D(2) →
  Flatten`` (72 values); sums branch: ``Dense(32, relu)``;
* ``concat`` / ``late`` / ``hybrid``: both branches side by side;
* ``serial``: the image branch, then the sums branch reading its 16 columns
  and the image branch's 72 values;
* ``serial, sums first``: the sums branch, then the image branch, whose
  convolutions read the pixels and whose ``Dense(32, relu)`` after
  ``Flatten`` reads the conv features and the sums branch's output (a
  ``ConcatPrevious()`` marker between the two).
"""

import argparse
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from fastgd import FusionClassifier, stack_modalities
from fastgd.layers import ConcatPrevious, Conv2D, Dense, Flatten, MaxPool2D, Reshape

MAX_ITER = 60


def digits_views():
    """X (images then row / column sums), y and the columns of each view."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images / 16.0
    sums = np.hstack([images.sum(axis=2), images.sum(axis=1)]) / 8.0
    X, columns = stack_modalities({"image": images, "sums": sums})
    return X, digits.target, columns


def digits_split():
    """``(X_train, X_test, y_train, y_test, columns)``: the split every strategy uses."""
    from sklearn.model_selection import train_test_split

    X, y, columns = digits_views()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    return X_train, X_test, y_train, y_test, columns


def image_branch(columns, joined_dense=False):
    """The conv branch; with ``joined_dense``, the previous branch joins a Dense after Flatten."""
    layers = [Reshape((8, 8)), Conv2D(8, 3, activation="relu"), MaxPool2D(2), Flatten()]
    if joined_dense:
        layers += [ConcatPrevious(), Dense(32, activation="relu")]
    return ("image", layers, columns["image"])


def sums_branch(columns):
    """The dense branch on the row and column sums."""
    return ("sums", [Dense(32, activation="relu")], columns["sums"])


#: name → (branches of the columns, fusion).
MODELS = {
    "image alone": (lambda c: [image_branch(c)], "concat"),
    "sums alone": (lambda c: [sums_branch(c)], "concat"),
    "concat": (lambda c: [image_branch(c), sums_branch(c)], "concat"),
    "late": (lambda c: [image_branch(c), sums_branch(c)], "late"),
    "hybrid": (lambda c: [image_branch(c), sums_branch(c)], "hybrid"),
    "serial": (lambda c: [image_branch(c), sums_branch(c)], "serial"),
    "serial, sums first": (
        lambda c: [sums_branch(c), image_branch(c, joined_dense=True)],
        "serial",
    ),
}


def held_out_accuracy(name, seed, split):
    """Test accuracy of model ``name`` fitted with ``random_state=seed`` on ``split``."""
    X_train, X_test, y_train, y_test, columns = split
    make_branches, fusion = MODELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached
        clf = FusionClassifier(
            branches=make_branches(columns), fusion=fusion, max_iter=MAX_ITER, random_state=seed
        ).fit(X_train, y_train)
    return clf.score(X_test, y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 … N-1 (default 5)")
    args = parser.parse_args(argv)
    split = digits_split()
    _, _, y_train, y_test, _ = split
    print(f"digits, {len(y_train)} training / {len(y_test)} test samples, seeds 0-{args.seeds - 1}")
    print("| model | fusion | held-out accuracy, mean | min – max |")
    print("| --- | --- | --- | --- |")
    for name, (_, fusion) in MODELS.items():
        scores = [held_out_accuracy(name, seed, split) for seed in range(args.seeds)]
        print(
            f"| {name} | `{fusion}` | {np.mean(scores):.4f} | "
            f"{np.min(scores):.4f} – {np.max(scores):.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
