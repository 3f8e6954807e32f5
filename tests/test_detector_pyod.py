"""The PyOD face: IMDetectorPyOD."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from imod import IMDetectorPyOD


def test_pyod_face(adbench_dir):
    data = np.load(adbench_dir / "Classical" / "38_thyroid.npz", allow_pickle=False)
    X, y = data["X"], data["y"]
    clf = IMDetectorPyOD(
        contamination=0.05,
        random_state=0,
        device="cpu",
        detector_params=dict(n_members=4, max_updates=60),
    )
    assert clf.fit(X) is clf
    assert clf.decision_scores_.shape == (X.shape[0],)
    assert roc_auc_score(y, clf.decision_scores_) > 0.85  # higher = more abnormal
    assert abs(clf.labels_.mean() - 0.05) < 0.01
    assert set(np.unique(clf.labels_)) == {0, 1}
    assert np.isclose(clf.threshold_, np.percentile(clf.decision_scores_, 95))
    scores = clf.decision_function(X[:200])
    np.testing.assert_allclose(scores, clf.decision_scores_[:200], rtol=1e-5, atol=1e-6)
    pred = clf.predict(X[:200])
    assert set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (scores > clf.threshold_).astype(int))
    for method in ("linear", "unify"):
        proba = clf.predict_proba(X[:200], method=method)
        assert proba.shape == (200, 2)
        assert ((proba >= 0) & (proba <= 1)).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.predict_confidence(X[:20]).shape == (20,)
    params = clf.get_params()
    assert params["contamination"] == 0.05 and params["detector_params"]["n_members"] == 4


def test_pyod_contamination_range():
    with pytest.raises(ValueError, match="contamination"):
        IMDetectorPyOD(contamination=0.8)


def test_pyod_face_defaults_match_the_detector():
    """The parameters the PyOD face forwards keep IMDetector's defaults (they drifted once)."""
    from imod import IMDetector

    face, det = IMDetectorPyOD().get_params(), IMDetector().get_params()
    shared = ("n_members", "preprocessing", "scoring", "max_updates", "random_state", "device")
    assert {k: face[k] for k in shared} == {k: det[k] for k in shared}
