"""Save and load a fitted :class:`IMDetector` without pickle.

A saved detector is a folder with two files:

* ``weights.pt``: a flat ``dict[str, Tensor]`` written by ``torch.save`` (the
  snapshots' parameters and the training loss trajectories: tensors only),
  read back with ``torch.load(weights_only=True)`` (no code runs at load time).
* ``config.json``: format version, package version, constructor parameters,
  every fitted array (preprocessing statistics, normalization statistics,
  weights, offset, feature names, ...), the SHA-256 of ``weights.pt``, and a
  SHA-256 of the JSON content itself, so a tampered or truncated file fails
  loudly instead of scoring silently wrong.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import __version__
from .estimator import IMDetector
from .preprocessing import IMPreprocessor

__all__ = ["FORMAT_VERSION", "save_detector", "load_detector"]

FORMAT = "imod.IMDetector"
FORMAT_VERSION = 1
WEIGHTS, CONFIG = "weights.pt", "config.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _content_hash(payload: dict) -> str:
    body = {k: v for k, v in payload.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _arr(a) -> list | None:
    return None if a is None else np.asarray(a).tolist()


def save_detector(det: IMDetector, path) -> Path:
    """Write a fitted detector to the folder ``path`` (created if needed).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from imod import IMDetector
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> det = IMDetector(n_members=2, max_updates=10, random_state=0).fit(X)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     det.save(d)
    ...     same = IMDetector.load(d)
    >>> bool(np.allclose(same.score_samples(X), det.score_samples(X)))
    True
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(det)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{j}/{name}": t.detach().cpu().contiguous()
        for j, snap in enumerate(det.snapshots_)
        for name, t in snap.items()
    }
    # Per-example trajectories of the recorded training rows go with the tensors
    # (they can be large); names with "/" never clash with these.
    tensors["train_trajectories_"] = torch.as_tensor(det.train_trajectories_)
    tensors["record_index_"] = torch.as_tensor(np.asarray(det.record_index_, dtype=np.int64))
    torch.save(tensors, folder / WEIGHTS)
    params = det.get_params(deep=False)
    params["window"] = None if params["window"] is None else list(params["window"])
    params["hidden_sizes"] = (
        params["hidden_sizes"]
        if isinstance(params["hidden_sizes"], str)
        else list(params["hidden_sizes"])
    )
    if isinstance(params["random_state"], np.integer):
        params["random_state"] = int(params["random_state"])
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # a RandomState object cannot go to JSON
    fitted = {
        "n_features_in_": int(det.n_features_in_),
        "feature_names_in_": _arr(getattr(det, "feature_names_in_", None)),
        "sizes_": list(det.sizes_),
        "record_epochs_": _arr(det.record_epochs_),
        "record_updates_": _arr(det.record_updates_),
        "center_": _arr(det.center_),
        "scale_": _arr(det.scale_),
        "weights_": _arr(det.weights_),
        "used_recordings_": _arr(det.used_recordings_),
        "bimodality_": _arr(det.bimodality_),
        "offset_": float(det.offset_),
        "train_scores_": _arr(det.train_scores_),
        "n_train_rows_": int(det.n_train_rows_),
        "fit_seconds_": float(det.fit_seconds_),
        "loss_trajectory_": det.loss_trajectory_.to_dict(orient="list"),
        "preprocessor": det.preprocessor_.get_state(),
        "n_snapshots": len(det.snapshots_),
        "param_names": sorted(det.snapshots_[0]),
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "imod_version": __version__,
        "params": params,
        "fitted": fitted,
        "weights_sha256": _sha256(folder / WEIGHTS),
    }
    payload["content_sha256"] = _content_hash(payload)
    (folder / CONFIG).write_text(json.dumps(payload, indent=1))
    return folder


def load_detector(path) -> IMDetector:
    """Read a detector written by :func:`save_detector`.

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ValueError
        Another format or format version, edited JSON, or a weights file whose
        SHA-256 differs from the one recorded at save time.
    """
    folder = Path(path)
    cfg_path, w_path = folder / CONFIG, folder / WEIGHTS
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: not a saved IMDetector folder")
    try:
        payload = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not an {FORMAT} file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path} has format version {version!r}; this imod ({__version__}) reads "
            f"version {FORMAT_VERSION} only: refit and save the detector again"
        )
    if payload.get("content_sha256") != _content_hash(payload):
        raise ValueError(f"{cfg_path} was modified after saving (content hash mismatch)")
    if _sha256(w_path) != payload["weights_sha256"]:
        raise ValueError(
            f"{w_path} does not match the SHA-256 recorded in {CONFIG}: the weights were "
            "modified or belong to another save"
        )
    tensors = torch.load(w_path, map_location="cpu", weights_only=True)
    f = payload["fitted"]
    params = dict(payload["params"])
    if params["window"] is not None:
        params["window"] = tuple(params["window"])
    if not isinstance(params["hidden_sizes"], str):
        params["hidden_sizes"] = tuple(params["hidden_sizes"])
    det = IMDetector(**params)
    det.snapshots_ = [
        {name: tensors[f"{j}/{name}"] for name in f["param_names"]} for j in range(f["n_snapshots"])
    ]
    det.n_features_in_ = f["n_features_in_"]
    if f["feature_names_in_"] is not None:
        det.feature_names_in_ = np.asarray(f["feature_names_in_"], dtype=object)
    det.sizes_ = tuple(f["sizes_"])
    for name in ("record_epochs_", "center_", "scale_", "weights_", "train_scores_"):
        setattr(det, name, np.asarray(f[name], dtype=np.float64))
    det.record_updates_ = np.asarray(f["record_updates_"], dtype=int)
    det.used_recordings_ = np.asarray(f["used_recordings_"], dtype=int)
    det.bimodality_ = None if f["bimodality_"] is None else np.asarray(f["bimodality_"])
    det.offset_ = float(f["offset_"])
    det.n_train_rows_ = f["n_train_rows_"]
    det.fit_seconds_ = f["fit_seconds_"]
    det.loss_trajectory_ = pd.DataFrame(f["loss_trajectory_"])
    det.preprocessor_ = IMPreprocessor.from_state(
        {"method": params["preprocessing"], "clip": params["clip"]}, f["preprocessor"]
    )
    det.train_trajectories_ = tensors["train_trajectories_"].numpy()
    det.record_index_ = tensors["record_index_"].numpy()
    det.membership_ = None  # not saved: train_scores_ already hold its effect
    return det
