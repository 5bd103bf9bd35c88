"""Raw columns in one pipeline: a transformer per branch, fitted inside fit.

A DataFrame with a text column, an integer category column and 3,072 pixel
columns (a 32x32 RGB image) goes into one scikit-learn Pipeline ending in
FusionClassifier; cross-validation and grid search refit the vectorizer and
the scaler in every fold and tune their parameters with the layers'.
"""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import make_column_selector
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from fastgd import FusionClassifier, MultiTaskRegressor
from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape

N_PIXELS = 32 * 32 * 3
PIXELS = [f"p{i}" for i in range(N_PIXELS)]
WORDS = {0: "cat kitten whiskers", 1: "dog puppy bark", 2: "bird wing feather"}
FILLER = "photo of a small thing seen today near the house".split()


def make_raw_frame(n=120, seed=0):
    """Captions, a category code and a 32x32x3 image per row; the class shows in each.

    Each modality alone is a noisy clue (a caption names its class 60 % of
    the time, the category matches it 60 % of the time, the image's bright
    channel 60 % of the time).
    """
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, size=n)

    def clue():
        return np.where(rng.rand(n) < 0.6, y, rng.randint(0, 3, size=n))

    text_class, category, image_class = clue(), clue(), clue()
    captions = [
        " ".join(rng.choice(FILLER, size=4).tolist() + [rng.choice(WORDS[c].split())])
        for c in text_class
    ]
    images = rng.rand(n, 32, 32, 3) * 40.0
    images[np.arange(n), :, :, image_class] += 100.0
    frame = pd.DataFrame(images.reshape(n, -1), columns=PIXELS)
    frame.insert(0, "category", category.astype(np.int64))
    frame.insert(0, "caption", captions)
    return frame, y


def _text_transformer(max_features=20):
    """tf-idf of the caption (sparse: the network reads it without densifying)."""
    return TfidfVectorizer(max_features=max_features), "text__transformer__max_features"


def _lowercase_captions(frame):
    return frame.assign(caption=frame["caption"].str.lower())


def _raw_model(max_iter=15):
    text, max_features_param = _text_transformer()
    clf = FusionClassifier(
        branches=[
            ("text", [Dense(8, activation="relu")], "caption", text),
            (
                "category",
                [Dense(4, activation="relu")],
                ["category"],
                OneHotEncoder(sparse_output=False, handle_unknown="ignore"),
            ),
            (
                "image",
                [
                    Reshape((32, 32, 3), channels_last=True),
                    Conv2D(3, 3, stride=2, activation="relu"),
                    MaxPool2D(3),
                    Flatten(),
                ],
                make_column_selector(pattern=r"^p\d+$"),  # the 3,072 pixel columns
                StandardScaler(),
            ),
        ],
        learning_rate_init=0.01,
        max_iter=max_iter,
        random_state=0,
    )
    pipeline = Pipeline([("lowercase", FunctionTransformer(_lowercase_captions)), ("model", clf)])
    return pipeline, f"model__{max_features_param}"


def _quiet(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit()


@pytest.fixture(scope="module")
def raw_frame():
    return make_raw_frame()


def test_one_pipeline_cross_validates_and_grid_searches_raw_columns(raw_frame):
    frame, y = raw_frame
    pipeline, max_features = _raw_model()
    scores = _quiet(lambda: cross_val_score(pipeline, frame, y, cv=3))
    assert scores.mean() > 0.6  # chance is 1/3; every modality is a clue

    search = GridSearchCV(
        pipeline,
        {max_features: [3, 20], "model__image__1__filters": [2, 3]},
        cv=2,
    )
    _quiet(lambda: search.fit(frame, y))
    assert len(search.cv_results_["params"]) == 4
    fitted = search.best_estimator_.named_steps["model"]
    chosen = search.best_params_[max_features]
    vocabulary = fitted.branch_transformers_["text"]
    if hasattr(vocabulary, "steps"):
        vocabulary = vocabulary.steps[0][1]
    # 18 distinct words in all: max_features=20 keeps them all.
    assert len(vocabulary.vocabulary_) == min(chosen, 18)
    text_weights = fitted.coefs_[fitted.layer_names_.index("text__0")]
    assert text_weights.shape == (len(vocabulary.vocabulary_), 8)
    assert (
        fitted.coefs_[fitted.layer_names_.index("image__1")].shape[0]
        == (search.best_params_["model__image__1__filters"])
    )
    assert search.score(frame, y) > 0.6


def test_transformers_are_fitted_on_the_training_rows_only(raw_frame):
    frame, y = raw_frame
    pipeline, _ = _raw_model(max_iter=2)
    train = frame.iloc[:60].copy()
    held_out = frame.iloc[60:].copy()
    held_out.loc[held_out.index[0], "caption"] = "zebra"  # a word only held-out data has
    _quiet(lambda: pipeline.fit(train, y[:60]))
    model = pipeline.named_steps["model"]
    text = model.branch_transformers_["text"]
    vectorizer = text.steps[0][1] if hasattr(text, "steps") else text
    assert "zebra" not in vectorizer.vocabulary_
    scaler = model.branch_transformers_["image"]
    np.testing.assert_allclose(scaler.mean_, train[PIXELS].to_numpy().mean(axis=0))
    # The estimator's own transformers stay unfitted (they are cloned).
    assert not hasattr(model.branches[2][3], "mean_")
    assert pipeline.predict(held_out).shape == (60,)


def test_a_branch_transformer_is_the_same_as_transforming_beforehand():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((80, 6)) * [1, 10, 100, 1, 1, 1] + 5
    y = (X[:, 0] + X[:, 3] > 10).astype(int)
    params = dict(max_iter=4, random_state=0, dtype=np.float64)
    scaled_inside = FusionClassifier(
        branches=[
            ("scaled", [Dense(4, activation="relu")], slice(0, 3), StandardScaler()),
            ("raw", [Dense(3)], slice(3, 6)),
        ],
        **params,
    )
    X_scaled = X.copy()
    X_scaled[:, :3] = StandardScaler().fit_transform(X[:, :3])
    scaled_before = FusionClassifier(
        branches=[
            ("scaled", [Dense(4, activation="relu")], slice(0, 3)),
            ("raw", [Dense(3)], slice(3, 6)),
        ],
        **params,
    )
    _quiet(lambda: scaled_inside.fit(X, y))
    _quiet(lambda: scaled_before.fit(X_scaled, y))
    np.testing.assert_array_equal(scaled_inside._network.params, scaled_before._network.params)
    # (The matrix products may round differently on a copy than on a view.)
    np.testing.assert_allclose(
        scaled_inside.predict_proba(X), scaled_before.predict_proba(X_scaled), rtol=1e-12
    )


def test_transformer_params_are_nested_params():
    text = TfidfVectorizer(max_features=7)
    clf = FusionClassifier(branches=[("text", [Dense(3)], "caption", text)])
    params = clf.get_params()
    assert params["text__transformer"] is text
    assert params["text__transformer__max_features"] == 7
    clf.set_params(text__transformer__max_features=11, text__0__units=5)
    assert text.max_features == 11 and clf.branches[0][1][0].units == 5
    copy = clone(clf)
    assert copy.get_params()["text__transformer__max_features"] == 11
    assert copy.branches[0][3] is not text
    clf.set_params(text__transformer=TfidfVectorizer(min_df=2))
    assert clf.branches[0][3].min_df == 2 and clf.branches[0][2] == "caption"
    with pytest.raises(ValueError, match="branch 'text' has no transformer"):
        FusionClassifier(branches=[("text", [Dense(3)], [0])]).set_params(
            text__transformer__max_features=3
        )


def test_the_width_of_a_transformer_output_sizes_the_branch(raw_frame):
    frame, y = raw_frame

    def n_params(max_features):
        text, _ = _text_transformer(max_features)
        clf = FusionClassifier(
            branches=[("text", [Dense(4)], "caption", text)], max_iter=1, random_state=0
        )
        return _quiet(lambda: clf.fit(frame, y)).n_params_

    # Each extra tf-idf column adds 4 weights to the first Dense layer.
    assert n_params(10) - n_params(5) == 5 * 4


def test_partial_fit_fits_the_transformers_once():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((60, 4)) * 50 + 7
    y = (X[:, 0] > 7).astype(int)
    clf = FusionClassifier(
        branches=[("all", [Dense(4)], slice(None), StandardScaler())], random_state=0
    )
    clf.partial_fit(X[:30], y[:30], classes=[0, 1])
    first_mean = clf.branch_transformers_["all"].mean_.copy()
    clf.partial_fit(X[30:] + 100, y[30:])
    np.testing.assert_array_equal(clf.branch_transformers_["all"].mean_, first_mean)


def test_multitask_regressor_takes_branch_transformers(raw_frame):
    frame, y = raw_frame
    targets = np.column_stack([y, frame["category"].to_numpy()]).astype(float)
    text, _ = _text_transformer()
    reg = MultiTaskRegressor(
        branches=[
            ("text", [Dense(6, activation="relu")], "caption", text),
            ("category", [], ["category"], OneHotEncoder(sparse_output=False)),
        ],
        hidden_layer_sizes=(8,),
        learning_rate_init=0.01,
        max_iter=30,
        random_state=0,
    )
    _quiet(lambda: reg.fit(frame, targets))
    # The category task is read straight from its (one-hot) column.
    assert reg.score_tasks(frame, targets)[1] > 0.9


def test_pickled_pipeline_predicts_the_same(raw_frame):
    frame, y = raw_frame
    pipeline, _ = _raw_model(max_iter=2)
    _quiet(lambda: pipeline.fit(frame, y))
    copy = pickle.loads(pickle.dumps(pipeline))
    np.testing.assert_array_equal(copy.predict_proba(frame), pipeline.predict_proba(frame))


def test_text_without_a_transformer_is_named(raw_frame):
    frame, y = raw_frame
    clf = FusionClassifier(
        branches=[
            ("text", [Dense(3)], ["caption"]),
            ("category", [Dense(3)], ["category"], StandardScaler()),
        ],
        max_iter=1,
    )
    with pytest.raises(ValueError, match="Branch 'text': its columns cannot be read as numbers"):
        clf.fit(frame, y)


def test_predict_checks_the_raw_columns(raw_frame):
    frame, y = raw_frame
    clf = FusionClassifier(
        branches=[("category", [Dense(3)], ["category"], StandardScaler())], max_iter=1
    )
    _quiet(lambda: clf.fit(frame, y))
    with pytest.raises(ValueError, match="missing:\n- p0"):
        clf.predict(frame.drop(columns=["p0"]))
    no_names = pytest.warns(UserWarning, match="does not have valid feature names")
    with pytest.raises(ValueError, match="3074 features"), no_names:
        clf.predict(frame.to_numpy()[:, 1:])


DIGIT_NAMES = "zero one two three four five six seven eight nine".split()
CAPTION_FILLER = "a handwritten digit scanned from a form by the post office".split()


def test_digits_with_captions_fused_beat_either_branch():
    # Noisy digit images (pixel noise of sd 6 on a 0-16 scale) and a caption
    # that names the right digit half of the time, in one DataFrame.
    X, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    pixels = [f"px{i}" for i in range(64)]
    frame = pd.DataFrame(X + rng.normal(0, 6, X.shape), columns=pixels)
    named = np.where(rng.rand(y.shape[0]) < 0.5, y, rng.randint(0, 10, y.shape[0]))
    frame.insert(
        0,
        "caption",
        [" ".join(rng.choice(CAPTION_FILLER, 3).tolist() + [DIGIT_NAMES[d]]) for d in named],
    )
    train, test = train_test_split(np.arange(y.shape[0]), test_size=0.4, random_state=0, stratify=y)
    image = ("image", [Dense(32, activation="relu")], pixels, StandardScaler())
    text = ("text", [Dense(16, activation="relu")], "caption", _text_transformer(None)[0])

    def held_out_accuracy(branches):
        clf = FusionClassifier(branches=branches, max_iter=30, random_state=0)
        _quiet(lambda: clf.fit(frame.iloc[train], y[train]))
        return clf.score(frame.iloc[test], y[test])

    image_alone, text_alone = held_out_accuracy([image]), held_out_accuracy([text])
    fused = held_out_accuracy([image, text])
    # Measured: image 0.73-0.78, text 0.55-0.57, fused 0.79-0.83 over 4 seeds.
    assert fused > max(image_alone, text_alone) + 0.02, (fused, image_alone, text_alone)
