"""Save/load without pickle: round trip, tampering, other versions, interrupted saves.

The detectors are fitted on ADBench's Pima, bundled with imod.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imod import IMDetector

PIMA = Path(__file__).resolve().parents[1] / "imod" / "data" / "29_Pima.npz"
COLUMNS = ["pregnancies", "glucose", "pressure", "skin", "insulin", "bmi", "pedigree", "age"]


@pytest.fixture(scope="module")
def fitted():
    X = pd.DataFrame(np.load(PIMA, allow_pickle=False)["X"], columns=COLUMNS)
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
    assert list(same.feature_names_in_) == COLUMNS
    assert same.get_params() == det.get_params()
    pd.testing.assert_frame_equal(same.loss_trajectory_, det.loss_trajectory_, check_dtype=False)
    np.testing.assert_array_equal(same.views_[0].train_trajectories,
                                  det.views_[0].train_trajectories)
    np.testing.assert_array_equal(same.train_scores_, det.train_scores_)


def test_round_trip_of_several_views(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 3))
    det = IMDetector(n_members=3, max_updates=20, random_state=0, device="cpu").fit(X)
    assert [v.n_members for v in det.views_] == [1, 1, 1]
    det.save(tmp_path / "model")
    same = IMDetector.load(tmp_path / "model")
    assert same.get_params() == det.get_params()
    assert [v.method for v in same.views_] == ["robust", "whiten", "quantile"]
    np.testing.assert_array_equal(same.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(same.loss_trajectories(X), det.loss_trajectories(X))
    for a, b in zip(same.views_, det.views_, strict=True):
        np.testing.assert_array_equal(a.train_trajectories, b.train_trajectories)


def _saved(fitted, tmp_path):
    det, _ = fitted
    det.save(tmp_path)
    (weights,) = tmp_path.glob("weights-*.pt")
    return tmp_path / "config.json", weights


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

    with pytest.raises(ValueError, match="not an imod.IMDetector file"):
        IMDetector.load(tmp_path)


def _rewrite(cfg, edit) -> None:
    """Edit a saved config and re-sign it, as a file written that way would be."""
    from imod.detector.persistence import _content_hash

    payload = json.loads(cfg.read_text())
    edit(payload)
    payload["content_sha256"] = _content_hash(payload)
    cfg.write_text(json.dumps(payload))


def test_older_format_is_refused(fitted, tmp_path):
    cfg, _ = _saved(fitted, tmp_path)
    _rewrite(cfg, lambda p: p.update(format_version=2))
    with pytest.raises(ValueError, match="format version 2.*refit the detector"):
        IMDetector.load(tmp_path)


@pytest.mark.parametrize("drop", [("weights_file",), ("fitted", "views"), ("params", "lr"),
                                  ("fitted", "offset_")])
def test_missing_entries_name_the_file(fitted, tmp_path, drop):
    cfg, _ = _saved(fitted, tmp_path)

    def edit(payload):
        node = payload
        for key in drop[:-1]:
            node = node[key]
        del node[drop[-1]]

    _rewrite(cfg, edit)
    with pytest.raises(ValueError, match=r"config\.json|" + str(tmp_path)):
        IMDetector.load(tmp_path)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_saved_on_cuda_scores_on_this_cpu(fitted, tmp_path, device):
    """Views hold no device: a detector saved with device="cuda" (or "mps") scores where
    that device is missing (with a warning), and set_params(device="cpu") moves it."""
    from imod._runtime import device_available

    if device_available(device):
        pytest.skip(f"this machine has {device}")
    det, X = fitted
    cfg, _ = _saved(fitted, tmp_path)
    _rewrite(cfg, lambda p: p["params"].update(device=device))
    with pytest.warns(UserWarning, match=f"device='{device}', which this machine lacks"):
        same = IMDetector.load(tmp_path)
    np.testing.assert_array_equal(same.score_samples(X), det.score_samples(X))
    same.set_params(device="cpu")
    np.testing.assert_array_equal(same.score_samples(X), det.score_samples(X))
    with pytest.raises(ValueError, match=f"has no {device.upper()} device"):
        same.set_params(device=device).score_samples(X)


def test_nan_weights_in_a_file_are_refused(fitted, tmp_path):
    det, X = fitted
    other = IMDetector(**det.get_params()).fit(X)
    other.views_[0].snapshots[0]["0.weight"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        other.score_samples(X)
    other.save(tmp_path)
    with pytest.raises(ValueError, match=r"weights-.*\.pt holds NaN or infinite"):
        IMDetector.load(tmp_path)


def test_interrupted_save_keeps_the_old_detector(fitted, tmp_path, monkeypatch):
    """A save that fails between the weights and the config leaves the old model whole."""
    import imod.detector.persistence as persistence

    det, X = fitted
    det.save(tmp_path)
    before = IMDetector.load(tmp_path).score_samples(X)
    new = IMDetector(**(det.get_params() | {"random_state": 1})).fit(X)
    real = persistence.atomic_write

    def failing(path, write):
        if path.name == "config.json":
            raise OSError("disk full (simulated)")
        return real(path, write)

    monkeypatch.setattr(persistence, "atomic_write", failing)
    with pytest.raises(OSError, match="simulated"):
        new.save(tmp_path)
    np.testing.assert_array_equal(IMDetector.load(tmp_path).score_samples(X), before)
    monkeypatch.setattr(persistence, "atomic_write", real)
    new.save(tmp_path)  # a later save replaces it and cleans up
    np.testing.assert_array_equal(IMDetector.load(tmp_path).score_samples(X),
                                  new.score_samples(X))
    assert len(list(tmp_path.glob("weights*.pt"))) == 1


def test_save_never_touches_files_it_did_not_write(fitted, tmp_path):
    """Issue 25 (1): a folder with the user's own weights.pt and config.json lost the
    first and had the second overwritten. Saving there is refused; nothing changes."""
    det, _ = fitted
    (tmp_path / "weights.pt").write_bytes(b"the user's own weights")
    (tmp_path / "config.json").write_text('{"lr": 0.1}')
    with pytest.raises(ValueError, match="not a saved IMDetector .*config.json, weights.pt"):
        det.save(tmp_path)
    assert (tmp_path / "weights.pt").read_bytes() == b"the user's own weights"
    assert (tmp_path / "config.json").read_text() == '{"lr": 0.1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "weights.pt"]
    # A config.json of another program alone is refused too; over its own save, it works.
    (tmp_path / "weights.pt").unlink()
    with pytest.raises(ValueError, match=r"\(config.json\)"):
        det.save(tmp_path)
    (tmp_path / "config.json").unlink()
    det.save(tmp_path)
    det.save(tmp_path)
    assert len(list(tmp_path.glob("weights-*.pt"))) == 1


def _resigned_weights(cfg: Path, w: Path, data: bytes) -> None:
    """Replace the weights file by ``data`` and record its hash, as an attacker would."""
    import hashlib

    w.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    _rewrite(cfg, lambda p: p.update(weights_sha256=digest))


def test_replaced_weights_name_the_file_and_never_advise_an_unsafe_load(fitted, tmp_path):
    """Issue 25 (9): a weights file holding a pickled object (hash re-recorded) surfaced
    torch's advice to load with weights_only=False; an empty one a bare EOFError."""
    import pickle

    cfg, w = _saved(fitted, tmp_path)
    _resigned_weights(cfg, w, pickle.dumps({"a": Path("x")}))
    with pytest.raises(ValueError, match=f"{w.name} is not a weights file imod wrote") as exc:
        IMDetector.load(tmp_path)
    assert "weights_only" not in str(exc.value) and exc.value.__cause__ is None
    _resigned_weights(cfg, w, b"")
    with pytest.raises(ValueError, match=f"{w.name} is not a weights file imod wrote .empty"):
        IMDetector.load(tmp_path)


def test_saved_files_follow_the_umask(fitted, tmp_path):
    """Issue 25 (9): files were created 0600 whatever the umask."""
    import os

    det, _ = fitted
    old = os.umask(0o022)
    try:
        det.save(tmp_path / "a")
        os.umask(0o077)
        det.save(tmp_path / "b")
    finally:
        os.umask(old)
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "a").iterdir()} == {0o644}
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "b").iterdir()} == {0o600}
