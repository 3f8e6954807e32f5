"""Save/load without pickle: round trip, tampering, other versions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imod import IMDetector


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=list("abcd"))
    det = IMDetector(
        n_members=3,
        max_updates=30,
        n_recordings=4,
        random_state=0,
        device="cpu",
        preprocessing="whiten",
        contamination=0.1,
    ).fit(X)
    return det, X


def test_round_trip(fitted, tmp_path):
    det, X = fitted
    det.save(tmp_path / "model")
    same = IMDetector.load(tmp_path / "model")
    np.testing.assert_array_equal(same.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(same.predict(X), det.predict(X))
    assert same.offset_ == det.offset_
    assert list(same.feature_names_in_) == list("abcd")
    assert same.get_params() == det.get_params()
    pd.testing.assert_frame_equal(same.loss_trajectory_, det.loss_trajectory_, check_dtype=False)
    np.testing.assert_array_equal(same.train_trajectories_, det.train_trajectories_)
    np.testing.assert_array_equal(same.train_scores_, det.train_scores_)


def test_round_trip_of_several_views(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 3))
    det = IMDetector(n_members=3, max_updates=20, random_state=0, device="cpu").fit(X)
    assert [v.n_members for v in det.views_] == [1, 1, 1]
    det.save(tmp_path / "model")
    same = IMDetector.load(tmp_path / "model")
    assert same.get_params() == det.get_params()
    assert [v.preprocessing for v in same.views_] == ["standard", "robust", "whiten"]
    np.testing.assert_array_equal(same.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(same.loss_trajectories(X), det.loss_trajectories(X))
    for a, b in zip(same.views_, det.views_, strict=True):
        np.testing.assert_array_equal(a.train_trajectories_, b.train_trajectories_)


def _saved(fitted, tmp_path):
    det, _ = fitted
    det.save(tmp_path)
    return tmp_path / "config.json", tmp_path / "weights.pt"


def test_other_version_fails(fitted, tmp_path):
    cfg, _ = _saved(fitted, tmp_path)
    payload = json.loads(cfg.read_text())
    payload["format_version"] = 99
    cfg.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="format version 99"):
        IMDetector.load(tmp_path)


def test_edited_json_fails(fitted, tmp_path):
    cfg, _ = _saved(fitted, tmp_path)
    payload = json.loads(cfg.read_text())
    payload["fitted"]["offset_"] = 123.0
    cfg.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="modified"):
        IMDetector.load(tmp_path)


def test_tampered_weights_fail(fitted, tmp_path):
    _, w = _saved(fitted, tmp_path)
    data = bytearray(w.read_bytes())
    data[-40] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        IMDetector.load(tmp_path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        IMDetector.load(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "other"}')
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="not an imod.IMDetector file"):
        IMDetector.load(tmp_path)


def test_file_from_before_the_loss_parameter_loads_as_squared_error(tmp_path):
    """Version-2 files written before ``loss`` existed hold squared-error detectors."""
    from imod.detector.persistence import _content_hash

    X = np.random.default_rng(2).normal(size=(150, 4))
    det = IMDetector(n_members=3, max_updates=20, n_recordings=4, random_state=0,
                     device="cpu", loss="mse").fit(X)
    det.save(tmp_path)
    cfg = tmp_path / "config.json"
    payload = json.loads(cfg.read_text())
    del payload["params"]["loss"], payload["params"]["score_loss"]
    payload["content_sha256"] = _content_hash(payload)  # as such a file was written
    cfg.write_text(json.dumps(payload))
    same = IMDetector.load(tmp_path)
    assert same.loss == "mse" and same.score_loss is None
    np.testing.assert_array_equal(same.score_samples(X), det.score_samples(X))
