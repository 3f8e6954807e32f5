"""Faults users met (issue 19), each reproduced on real data and fixed.

Saving and loading faults (device, atomic save, missing entries, NaN weights) are in
test_detector_persistence.py; parameter errors in test_detector_estimator.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imod import IMDetector, IMDetectorPyOD
from imod._runtime import TrainingDiverged

DATA = Path(__file__).resolve().parents[1] / "imod" / "data"


@pytest.fixture(scope="module")
def pima() -> np.ndarray:
    return np.load(DATA / "29_Pima.npz", allow_pickle=False)["X"].astype(np.float64)


@pytest.mark.parametrize("params", [dict(lr=1e8), dict(init_scale=1e30)])
def test_diverging_training_is_an_error_not_nan_scores(pima, params):
    """Issue 19 (2): these used to give all-NaN scores and flag nothing, silently."""
    with pytest.raises(TrainingDiverged, match="training diverged.*smaller lr or init_scale"):
        IMDetector(random_state=0, device="cpu", **params).fit(pima)
    with pytest.raises(ValueError, match="training diverged"):
        IMDetectorPyOD(random_state=0, device="cpu", **params).fit(pima)


def test_identical_rows_are_scored_alike_and_not_flagged(pima):
    """Issue 19 (5): 200 identical rows had 8 of them scored -8.33 and flagged."""
    X = np.ones((200, 5)) * 3
    det = IMDetector(random_state=0, device="cpu").fit(X)
    scores = det.score_samples(X)
    assert np.ptp(scores) < 1e-6 and np.ptp(det.train_scores_) < 1e-6
    assert not (det.predict(X) == -1).any()
    assert not (det.fit_predict(X) == -1).any()
    # Copies of one real row inside real data get one score (up to rounding).
    Xd = np.r_[pima, np.repeat(pima[[5]], 40, axis=0)]
    det = IMDetector(random_state=0, device="cpu").fit(Xd)
    copies = np.r_[5, np.arange(len(pima), len(Xd))]
    assert np.ptp(det.train_scores_[copies]) < 1e-6
    assert np.ptp(det.score_samples(Xd)[copies]) < 1e-6


@pytest.mark.parametrize("contamination", [0.01, 0.1, 0.3, 0.5])
def test_identical_rows_are_not_flagged_on_either_face(pima, contamination):
    """Issue 25 (2): the PyOD face flagged 8 of 200 identical rows (scores 0 and 2e-9,
    threshold_ 0.0), and one row of [[0, 0], [1, 1]]. Copies of a row now get one score,
    bit for bit, and neither face flags a row by a difference of rounding."""
    X = np.ones((200, 5)) * 3
    face = IMDetectorPyOD(contamination=contamination, random_state=0, device="cpu").fit(X)
    assert np.unique(face.decision_scores_).size == 1
    assert face.labels_.sum() == 0 and face.predict(X).sum() == 0
    det = IMDetector(contamination=contamination, random_state=0, device="cpu").fit(X)
    assert np.unique(det.train_scores_).size == np.unique(det.score_samples(X)).size == 1
    assert (det.predict(X) == 1).all() and (det.fit_predict(X) == 1).all()
    # Issue 25's two rows, with the views that scored them alike up to rounding (the views
    # split on which row is stranger, so each row's scaled maximum is the same): the tie
    # margin must keep both unflagged. (Today's views agree that [0, 0] is the stranger
    # row, so its score is higher by far more than rounding, and PyOD's rule flags it.)
    two = np.array([[0.0, 0.0], [1.0, 1.0]])
    tied = IMDetectorPyOD(contamination=contamination, random_state=0,
                          preprocessing=("standard", "robust", "whiten")).fit(two)
    assert np.ptp(tied.decision_scores_) < 1e-6
    assert tied.labels_.sum() == 0
    # copies of real rows inside real data: bit-identical scores on both faces
    Xd = np.r_[pima, np.repeat(pima[[5, 9]], 30, axis=0)]
    face = IMDetectorPyOD(contamination=contamination, random_state=0, device="cpu").fit(Xd)
    for row in (5, 9):
        copies = np.flatnonzero((Xd == pima[row]).all(axis=1))
        assert np.unique(face.decision_scores_[copies]).size == 1
        assert np.unique(face.decision_function(Xd)[copies]).size == 1
        assert np.unique(face.labels_[copies]).size == 1


@pytest.mark.parametrize("contamination", ["auto", 0.1, 0.5])
def test_a_tie_at_the_threshold_does_not_flag_both_rows(pima, contamination):
    """Issue 19 (9): two Pima rows that score alike (up to rounding) were both flagged."""
    X = pima[:2]
    det = IMDetector(random_state=2, device="cpu", contamination=contamination).fit(X)
    assert abs(det.train_scores_[0] - det.train_scores_[1]) < 1e-9  # the tie
    assert (det.predict(X) == -1).sum() < 2
    assert (det.fit_predict(X) == -1).sum() < 2


def test_a_failed_refit_leaves_the_detector_as_it_was(pima):
    """Issue 25 (8): fitted on 100 columns, a refit on 5 columns that diverged left
    n_features_in_ = 5 beside the old views, which went on scoring without notice."""
    wide = np.c_[pima, pima @ np.random.default_rng(0).normal(size=(8, 92))]
    det = IMDetector(n_members=3, max_updates=20, random_state=0, device="cpu").fit(wide)
    before = det.score_samples(wide)
    views, n_in = det.views_, det.n_features_in_
    with pytest.raises(TrainingDiverged):
        det.set_params(lr=1e8).fit(pima[:, :5])
    assert det.n_features_in_ == n_in == 100 and det.views_ is views
    np.testing.assert_array_equal(det.score_samples(wide), before)
    with pytest.raises(ValueError, match="5 features, but IMDetector is expecting 100"):
        det.score_samples(pima[:, :5])
    # An unfitted detector whose first fit fails stays unfitted.
    fresh = IMDetector(lr=1e8, random_state=0, device="cpu")
    with pytest.raises(TrainingDiverged):
        fresh.fit(pima)
    assert not hasattr(fresh, "n_features_in_") and not hasattr(fresh, "views_")


def test_a_device_this_machine_lacks_is_a_clear_error(pima):
    """Issue 25 (5): IMDetector(device="mps") on a machine without it ended in a traceback
    from deep inside torch."""
    from imod._runtime import device_available

    if device_available("mps"):
        pytest.skip("this machine has MPS")
    with pytest.raises(ValueError, match="device='mps' was requested but this machine has no"):
        IMDetector(device="mps").fit(pima)
