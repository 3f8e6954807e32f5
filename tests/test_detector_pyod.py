"""The PyOD face: IMDetectorPyOD."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from imod import IMDetector, IMDetectorPyOD

DATA = Path(__file__).resolve().parents[1] / "imod" / "data"


def test_pyod_face():
    data = np.load(DATA / "6_cardio.npz", allow_pickle=False)  # bundled with imod
    X, y = data["X"], data["y"]
    clf = IMDetectorPyOD(contamination=0.05, random_state=0, device="cpu", n_members=4,
                         max_updates=60)
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
    given = dict(contamination=0.05, random_state=0, device="cpu", n_members=4, max_updates=60)
    assert {name: params[name] for name in given} == given
    assert clf.detector_.get_params()["n_members"] == 4
    twin = clone(clf)
    assert twin.get_params() == params and not hasattr(twin, "detector_")


@pytest.mark.parametrize("value", [0.8, 0.0, "bad", None, True])
def test_pyod_contamination_is_checked(value):
    """Checked when fitting, as scikit-learn asks (construction and set_params never raise)."""
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="contamination must be a float in"):
        IMDetectorPyOD(contamination=value).fit(X)
    clf = IMDetectorPyOD(n_members=3).set_params(contamination=value)
    with pytest.raises(ValueError, match="contamination must be a float in"):
        clf.fit(X)


def test_pyod_face_passes_parameters_through():
    """What is not given is IMDetector's own default."""
    clf = IMDetectorPyOD(contamination=0.1, n_members=3, max_updates=10, random_state=0)
    clf.fit(np.random.default_rng(0).normal(size=(80, 3)))
    expected = IMDetector(n_members=3, max_updates=10, random_state=0,
                          contamination=0.1).get_params()
    assert clf.detector_.get_params() == expected
    clf.set_params(trim=0.0)
    assert clf.get_params()["trim"] == 0.0
    with pytest.raises(TypeError, match="n_member"):
        IMDetectorPyOD(n_member=3)
    with pytest.raises(ValueError, match="Invalid parameter colour"):
        clf.set_params(colour="red")


def test_pyod_face_takes_imdetectors_parameters_with_its_defaults():
    """The two faces cannot drift apart: the face's signature lists contamination (PyOD's
    default, 0.1) and then exactly IMDetector's parameters, keyword-only, in IMDetector's
    order and with its defaults, and get_params reads them back (PyOD's and scikit-learn's
    tools build, clone and search detectors from the signature)."""
    face = inspect.signature(IMDetectorPyOD).parameters
    det = inspect.signature(IMDetector).parameters
    assert list(face)[0] == "contamination" and face["contamination"].default == 0.1
    assert face["contamination"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    shared = [name for name in det if name != "contamination"]
    assert list(face)[1:] == shared
    for name in shared:
        assert face[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert face[name].default == det[name].default, name
    assert list(IMDetectorPyOD().get_params()) == sorted(face)
    assert IMDetectorPyOD(lr=0.5).get_params()["lr"] == 0.5


def test_decision_scores_cover_every_row_when_fit_records_a_subset():
    """Above max_record_samples the detector's fit scores only its recorded rows; the
    PyOD face still gives decision_scores_ (and labels_) for every training row."""
    data = np.load(DATA / "6_cardio.npz", allow_pickle=False)
    X, y = data["X"], data["y"]
    clf = IMDetectorPyOD(contamination=0.05, random_state=0, device="cpu", n_members=4,
                         max_updates=60, max_record_samples=500).fit(X)
    assert clf.detector_.train_scores_.shape == (500,)
    assert clf.decision_scores_.shape == clf.labels_.shape == (X.shape[0],)
    np.testing.assert_allclose(clf.decision_scores_, clf.decision_function(X), rtol=1e-6)
    assert roc_auc_score(y, clf.decision_scores_) > 0.85
