"""IMDetector.explain, its PyOD counterpart and plot_explanation, on real data where the
answer is known: inliers of cardio (bundled ADBench set) with one feature moved far
outside its training range. The rates on 48 development sets are measured by
benchmarks/conventions/explain_known_answer.py."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from imod import IMDetector, IMDetectorPyOD
from imod.detector import plot_explanation

matplotlib.use("Agg")

DATA = Path(__file__).resolve().parents[1] / "imod" / "data"


BUNDLED = ("4_breastw", "6_cardio", "15_Hepatitis", "18_Ionosphere", "29_Pima", "37_Stamps",
           "39_vertebral", "45_wine")


def shifted_rows(name: str, n_rows: int = 100, seed: int = 0):
    """80 % of a bundled set's inliers to train on, and ``n_rows`` of the other inliers,
    each with one feature (drawn among the non-constant ones) moved to 3 training ranges
    beyond its range, up or down; and the feature moved in each row."""
    data = np.load(DATA / f"{name}.npz", allow_pickle=False)
    inliers = data["X"][data["y"] == 0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(inliers))
    n_fit = int(0.8 * len(inliers))
    train = inliers[order[:n_fit]]
    held = inliers[order[n_fit:]][rng.integers(len(inliers) - n_fit, size=n_rows)]
    lo, hi = train.min(axis=0), train.max(axis=0)
    moved = rng.choice(np.flatnonzero(hi > lo), size=n_rows)
    up = rng.random(n_rows) < 0.5
    span = (hi - lo)[moved]
    held[np.arange(n_rows), moved] = np.where(up, hi[moved] + 3 * span, lo[moved] - 3 * span)
    return train, held, moved


@pytest.fixture(scope="module")
def cardio():
    return shifted_rows("6_cardio")


def check_sums(det: IMDetector, X: np.ndarray, ex) -> None:
    """The docstring's promises: sums to float64 rounding, scores to float32 rounding."""
    gap = ex.contributions.sum(axis=1) - (ex.scores - ex.reference)
    assert (np.abs(gap) <= 1e-9 * np.maximum(1.0, np.abs(ex.scores))).all()
    np.testing.assert_allclose(ex.scores, -det.score_samples(X), rtol=0, atol=1e-5)


def test_the_moved_feature_ranks_first_on_the_bundled_sets():
    """Issue 24's target: the moved feature ranks first for >= 90 % of the rows on at
    least 5 sets (the 8 bundled ones, measured 0.96-1.00 each); no set below 80 %."""
    rates = {}
    for name in BUNDLED:
        train, held, moved = shifted_rows(name)
        det = IMDetector(random_state=0, device="cpu").fit(train)
        ex = det.explain(held)
        check_sums(det, held, ex)
        assert ex.contributions.shape == held.shape
        assert set(ex.views) <= {v.method for v in det.views_}
        rates[name] = float((ex.contributions.argmax(axis=1) == moved).mean())
    assert sum(rate >= 0.9 for rate in rates.values()) >= 5, rates
    assert min(rates.values()) >= 0.8, rates


@pytest.mark.parametrize("params", [
    {"projection_dim": 8},           # 21 columns randomly projected to 8 (0.96 measured)
    {"preprocessing": "whiten"},     # whitened components only (0.91 measured)
])
def test_explanations_through_the_linear_maps(cardio, params):
    train, held, moved = cardio
    det = IMDetector(n_members=4, random_state=0, device="cpu", **params).fit(train)
    ex = det.explain(held)
    check_sums(det, held, ex)
    assert (ex.contributions.argmax(axis=1) == moved).mean() >= 0.8
    # the inliers themselves: smaller contributions than the moved rows'
    base = det.explain(train[:80])
    assert np.abs(base.contributions).max(axis=1).mean() < ex.contributions.max(axis=1).mean()


def test_copies_of_a_row_get_identical_explanations(cardio):
    train, held, _ = cardio
    det = IMDetector(n_members=4, random_state=0, device="cpu").fit(train)
    X = np.r_[held[:3], train[:500], held[:3]]
    ex = det.explain(X)
    np.testing.assert_array_equal(ex.contributions[:3], ex.contributions[-3:])
    np.testing.assert_array_equal(ex.scores[:3], ex.scores[-3:])


def test_feature_names_pyod_face_and_plot(cardio):
    train, held, moved = cardio
    names = [f"f{j}" for j in range(train.shape[1])]
    clf = IMDetectorPyOD(n_members=4, random_state=0, device="cpu").fit(
        pd.DataFrame(train, columns=names))
    ex = clf.explain(pd.DataFrame(held, columns=names))
    assert list(ex.feature_names) == names
    np.testing.assert_allclose(ex.scores, clf.decision_function(pd.DataFrame(held, columns=names)),
                               atol=1e-5)
    top, value = ex.top_features(0, k=1)[0]
    assert top == names[ex.contributions[0].argmax()] and value == ex.contributions[0].max()
    row = int(np.flatnonzero(ex.contributions.argmax(axis=1) == moved)[0])
    ax = plot_explanation(ex, rows=row, top=5)
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == names[moved[row]]  # top bar
    flagged = clf.predict(pd.DataFrame(held, columns=names)) == 1
    ax = plot_explanation(ex, rows=flagged, top=4)
    assert len(ax.patches) == 4 and "mean contribution over" in ax.get_title()
    with pytest.raises(ValueError, match="selects no row"):
        plot_explanation(ex, rows=np.zeros(len(held), dtype=bool))
