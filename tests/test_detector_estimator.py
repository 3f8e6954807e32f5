"""IMDetector on real ADBench data, in pipelines, and against bad input."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from detector_helpers import variant
from sklearn.metrics import make_scorer, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from imod import IMDetector, IMPreprocessor
from imod.detector import plot_loss_trajectories

BUNDLED = Path(__file__).resolve().parents[1] / "imod" / "data"

matplotlib.use("Agg")

# One view (standard scaling): these tests look at a single sub-ensemble's internals.
FAST = dict(n_members=3, max_updates=30, n_recordings=4, random_state=0, device="cpu",
            preprocessing="standard")


def load(adbench_dir, name):
    data = np.load(adbench_dir / "Classical" / f"{name}.npz", allow_pickle=False)
    return data["X"].astype(np.float64), data["y"].astype(int)


@pytest.fixture(scope="module")
def cardio(adbench_dir):
    return load(adbench_dir, "6_cardio")


@pytest.fixture(scope="module")
def fitted_cardio(cardio):
    X, _ = cardio
    return IMDetector(random_state=0, device="cpu").fit(X)


def test_im_effect_on_cardio(cardio, fitted_cardio):
    X, y = cardio
    det = fitted_cardio
    assert [v.method for v in det.views_] == ["robust", "whiten", "quantile"]
    assert [v.n_members for v in det.views_] == [3, 3, 2]
    for view in det.views_:
        # Inliers are reconstructed better than outliers at every early recording.
        traj = view.train_trajectories
        labels = y[view.record_index]
        assert (traj[:, labels == 0].mean(axis=1) < traj[:, labels == 1].mean(axis=1)).all()
    # Every view alone separates cardio's outliers; the combined score is at least as
    # good as the weakest view and close to the best one.
    view_aucs = [roc_auc_score(y, -v.train_scores) for v in det.views_]
    assert min(view_aucs) > 0.75, view_aucs
    auc_train = roc_auc_score(y, -det.train_scores_)
    auc_ind = roc_auc_score(y, -det.score_samples(X))
    assert auc_train > 0.85 and auc_train > max(view_aucs) - 0.03, (auc_train, view_aucs)
    np.testing.assert_allclose(det.train_scores_, det.score_samples(X), rtol=1e-5, atol=1e-5)
    assert auc_ind > 0.85
    # The sklearn conventions.
    dec = det.decision_function(X)
    np.testing.assert_allclose(dec, det.score_samples(X) - det.offset_)
    pred = det.predict(X)
    assert set(np.unique(pred)) <= {-1, 1}
    assert ((dec < 0) == (pred == -1)).all()
    # Outliers are flagged far more often than inliers.
    assert (pred[y == 1] == -1).mean() > 3 * (pred[y == 0] == -1).mean()


def test_loss_trajectory_and_plot(fitted_cardio, cardio):
    _, y = cardio
    det = fitted_cardio
    traj = det.loss_trajectory_
    assert list(traj.columns[:4]) == ["epoch", "update", "mean", "q05"]
    assert list(traj["view"].unique()) == ["robust", "whiten", "quantile"]
    for view in det.views_:
        vt = traj[traj["view"] == view.method]
        assert len(vt) == len(view.record_epochs) == view.weights.shape[0]
        assert np.isclose(view.weights.sum(), 1.0)
        assert (np.diff(vt["update"]) > 0).all()
    ax = plot_loss_trajectories(det, y=y)
    assert len(ax.lines) >= 2
    ax = plot_loss_trajectories(det)
    assert len(ax.lines) >= 1
    with pytest.raises(ValueError, match="labels"):
        plot_loss_trajectories(det, y=y[:10])


@pytest.mark.parametrize("scoring", ["window", "last", "odim", "holdout"])
def test_scoring_options(cardio, scoring):
    X, y = cardio
    det = variant(scoring=scoring)(**FAST).fit(X)
    assert np.isfinite(det.train_scores_).all()
    assert roc_auc_score(y, -det.train_scores_) > 0.7
    assert np.isfinite(det.score_samples(X[:50])).all()


def test_window_bounds(cardio):
    X, _ = cardio
    det = IMDetector(window=(0.0, 3.0), **FAST).fit(X)
    (view,) = det.views_
    used = view.record_epochs[view.used_recordings]
    assert (used <= 3.0).all()
    with pytest.raises(ValueError, match="holds no recording"):
        IMDetector(window=(500.0, 600.0), **FAST).fit(X)


@pytest.mark.parametrize("prep", ["standard", "robust", "minmax", "whiten", "none",
                                  ("standard", "robust", "whiten")])
@pytest.mark.parametrize("init", ["orthogonal", "normal"])
def test_preprocessing_and_init_options(prep, init):
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=(200, 4)), np.full(200, 3.0)]  # one constant column
    X[:5] *= 10
    params = FAST | {"preprocessing": prep}
    det = variant(init=init)(init_scale=0.5, **params).fit(X)
    s = -det.score_samples(X)
    assert np.isfinite(s).all()
    assert s[:5].mean() > s[5:].mean()


def test_large_n_subsamples_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6000, 3))
    det = IMDetector(
        max_updates=20,
        batch_size=32,
        max_record_samples=500,
        **{k: v for k, v in FAST.items() if k != "max_updates"},
    ).fit(X)
    (view,) = det.views_
    assert view.n_train_rows == 640
    assert view.train_trajectories.shape[1] == 500 and len(view.record_index) == 500
    # fit scores only the recorded rows; they are those rows' score_samples
    assert det.train_scores_.shape == (500,)
    np.testing.assert_array_equal(det.train_index_, view.record_index)
    np.testing.assert_allclose(det.train_scores_, det.score_samples(X)[det.train_index_],
                               rtol=1e-5, atol=1e-6)
    labels = det.fit_predict(X)
    assert labels.shape == (6000,)
    np.testing.assert_array_equal(labels, det.predict(X))


def test_contamination():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    det = IMDetector(contamination=0.1, **FAST).fit(X)
    assert abs((det.predict(X) == -1).mean() - 0.1) < 0.02
    labels = IMDetector(contamination=0.1, **FAST).fit_predict(X)
    assert abs((labels == -1).mean() - 0.1) < 0.02
    auto = IMDetector(contamination="auto", **FAST).fit(X)
    assert (auto.predict(X) == -1).mean() < 0.1
    assert IMDetector().contamination == 0.1  # the default (docs/conventions.md)


def test_huge_values_give_finite_scores():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    X[3, 1] = 1e30
    X[7, 2] = -1e30
    det = IMDetector(**FAST).fit(X)
    assert np.isfinite(det.train_scores_).all()
    Xn = rng.normal(size=(5, 4))
    Xn[0, 0] = 1e30
    Xn[1, 3] = -1e300
    s = det.score_samples(Xn)
    assert np.isfinite(s).all()
    assert s[0] < np.median(s[2:]) and s[1] < np.median(s[2:])


def test_dataframe_feature_names():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(150, 3)), columns=["a", "b", "c"])
    det = IMDetector(**FAST).fit(df)
    assert list(det.feature_names_in_) == ["a", "b", "c"]
    assert det.score_samples(df).shape == (150,)
    with pytest.warns(UserWarning, match="feature names"):
        det.score_samples(df.to_numpy())
    with pytest.raises(ValueError, match="feature names"):
        det.score_samples(df[["b", "a", "c"]])
    bad = df.assign(kind=["x"] * 150, cat=pd.Categorical(["u"] * 150))
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['kind', 'cat'\]"):
        IMDetector(**FAST).fit(bad)
    with pytest.raises(ValueError, match="non-numeric"):
        det.score_samples(bad[["a", "b", "kind"]])


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN"),
        (np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 1.0]]), "infinity"),
        (np.arange(10.0), "Expected 2D array"),
        (np.ones((1, 3)), "minimum of 2"),
        (np.ones((0, 3)), "0 sample"),
    ],
)
def test_bad_fit_input(X, match):
    with pytest.raises(ValueError, match=match):
        IMDetector(**FAST).fit(X)


def test_bad_predict_input():
    det = IMDetector(**FAST).fit(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ValueError, match="3 features"):
        det.score_samples(np.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        det.predict(np.array([[np.nan, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="2D"):
        det.decision_function(np.ones(3))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(contamination=0.7), "contamination"),
        (dict(contamination=0.0), "contamination"),
        (dict(contamination="often"), "contamination"),
        (dict(preprocessing="log"), "preprocessing"),
        (dict(preprocessing=("robust", "robust")), "distinct"),
        (dict(preprocessing=()), "preprocessing"),
        (dict(preprocessing=5), "preprocessing"),
        (dict(n_members=1), "every view needs at least one member"),
        (dict(init_scale=0.0), "init_scale"),
        (dict(n_members=0), "n_members"),
        (dict(window=(3, 1)), "window"),
        (dict(hidden_sizes=(8, 0)), "hidden_sizes"),
        (dict(trim=1.0), "trim"),
        (dict(trim=-0.2), "trim"),
        (dict(whiten_rows_per_component=0), "'whiten_rows_per_component' parameter"),
        (dict(n_threads=0), "'n_threads' parameter"),
        (dict(lr=-1.0), "'lr' parameter"),
        (dict(whiten_rows_per_component="two"), "whiten_rows_per_component"),
    ],
)
def test_bad_params(params, match):
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(ValueError, match=match):
        IMDetector(**params).fit(X)


def test_pipeline_and_gridsearch(adbench_dir):
    X, y = load(adbench_dir, "38_thyroid")
    pipe = Pipeline(
        [("prep", IMPreprocessor("robust")),
         ("det", IMDetector(**(FAST | {"preprocessing": "none"})))]
    )
    pipe.fit(X)
    auc = roc_auc_score(y, -pipe.decision_function(X))
    assert auc > 0.8
    assert set(np.unique(pipe.predict(X))) <= {-1, 1}

    # Labels reach the CV only through the scorer; fit ignores y. decision_function
    # is higher for inliers, so the scorer gets 1 = inlier labels.
    scorer = make_scorer(roc_auc_score, response_method="decision_function")
    search = GridSearchCV(
        IMDetector(**FAST),
        {"preprocessing": ["standard", "minmax", ("standard", "robust", "whiten")]},
        scoring=scorer,
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    )
    search.fit(X, 1 - y)
    assert search.best_score_ > 0.8
    assert search.best_params_["preprocessing"] in search.param_grid["preprocessing"]


def test_hidden_sizes():
    X = np.random.default_rng(0).normal(size=(60, 70))
    def sizes(det):
        return det.views_[0].sizes

    assert sizes(IMDetector(**FAST).fit(X)) == (64, 32, 16, 8, 16, 32, 64)  # projected
    full = dict(FAST, projection_dim=None)
    assert sizes(IMDetector(**full).fit(X)) == (70, 32, 16, 8, 16, 32, 70)
    assert sizes(IMDetector(hidden_sizes="odim", **full).fit(X)) == (70, 128, 64, 32, 64, 128, 70)
    assert sizes(IMDetector(hidden_sizes=(16, 4), **FAST).fit(X[:, :5])) == (5, 16, 4, 16, 5)


def test_scores_do_not_depend_on_the_scoring_batch_size(monkeypatch):
    """Scoring runs every kept snapshot's members at once on row batches sized from a
    memory budget (cache-sized on the CPU, a share of free memory on a GPU), each a whole
    number of 64-column panels (the last padded); the batch size changes nothing."""
    from imod.engine import StackedMLP

    X = np.load(BUNDLED / "6_cardio.npz", allow_pickle=False)["X"]
    det = IMDetector(random_state=0, device="cpu").fit(X)
    small = det.score_samples(X)
    forward = StackedMLP.reconstruction_losses  # the scoring forward pass, rows (d, B)
    calls = []
    monkeypatch.setattr(StackedMLP, "reconstruction_losses",
                        lambda self, p, xt, *a: calls.append(xt.shape[1])
                        or forward(self, p, xt, *a))
    from imod.engine import runtime

    # a GPU-sized scoring budget
    monkeypatch.setitem(runtime.MEMORY_BUDGETS, "score", (40 * 1024**3, 0.25))
    large = det.score_samples(X)
    from imod.detector.views import SCORE_PANEL

    padded = -(-len(X) // SCORE_PANEL) * SCORE_PANEL
    assert calls == [padded] * len(det.views_)  # one batch per view, all snapshots at once
    np.testing.assert_array_equal(large, small)


def test_scoring_forward_matches_the_engine():
    """The detector's scoring pass (in-place, feature-major) gives the engine's
    forward plus loss on the kept snapshots, for both reconstruction losses."""
    import torch

    from imod.engine import StackedMLP
    from imod.engine.losses import get_loss

    X = np.load(BUNDLED / "6_cardio.npz", allow_pickle=False)["X"]
    for loss in ("l1", "mse"):
        det = variant(loss=loss)(**FAST).fit(X)
        view = det.views_[0]
        snap = view.snapshots[-1]
        x = torch.as_tensor(view.preprocessor.transform(X), dtype=torch.float32)
        mlp = StackedMLP(view.sizes, activation=view.activation)
        expected = get_loss(loss)(mlp.forward(snap, x), x)
        with torch.no_grad():
            fast = mlp.reconstruction_losses(mlp.folded_weights(snap), x.T.contiguous(), loss)
        torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-6)


def test_cpu_scoring_in_row_blocks_gives_the_same_scores(monkeypatch):
    """On the CPU rows are scaled and scored a block at a time; only rounding changes."""
    import imod.detector.views as views

    X = np.load(BUNDLED / "6_cardio.npz", allow_pickle=False)["X"]
    det = IMDetector(**FAST).fit(X)
    whole = det.score_samples(X)
    monkeypatch.setattr(views, "CPU_SCALING_BLOCK", 500)  # 4 blocks, the last one short
    np.testing.assert_allclose(det.score_samples(X), whole, rtol=0, atol=1e-6)
