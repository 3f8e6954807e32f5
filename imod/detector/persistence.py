"""Save and load a fitted :class:`IMDetector` without pickle.

A saved detector is a folder with two files:

* ``weights.pt``: a flat ``dict[str, Tensor]`` written by ``torch.save`` (the
  snapshots' parameters and the training loss trajectories of every
  preprocessing view, keys ``v<view>/...``: tensors only),
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
from .estimator import EARLIER_BEHAVIOUR, IMDetector
from .preprocessing import IMPreprocessor

__all__ = ["FORMAT_VERSION", "save_detector", "load_detector"]

FORMAT = "imod.IMDetector"
FORMAT_VERSION = 2  # 2: one entry per preprocessing view
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


def _params_to_json(det: IMDetector) -> dict:
    params = det.get_params(deep=False)
    params["window"] = None if params["window"] is None else list(params["window"])
    for key in ("hidden_sizes", "preprocessing"):
        if not isinstance(params[key], str):
            params[key] = list(params[key])
    if isinstance(params["random_state"], np.integer):
        params["random_state"] = int(params["random_state"])
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # a RandomState object cannot go to JSON
    return params


def _params_from_json(params: dict) -> dict:
    params = dict(params)
    # Files saved before these parameters existed hold detectors that used their first
    # behaviour, not today's defaults.
    params = {**EARLIER_BEHAVIOUR, **params}
    if params["window"] is not None:
        params["window"] = tuple(params["window"])
    for key in ("hidden_sizes", "preprocessing"):
        if not isinstance(params[key], str):
            params[key] = tuple(params[key])
    return params


def _view_state(v: IMDetector, i: int, tensors: dict) -> dict:
    """One single-view ensemble: its tensors go to ``tensors``, the rest is returned."""
    for j, snap in enumerate(v.snapshots_):
        for name, t in snap.items():
            tensors[f"v{i}/{j}/{name}"] = t.detach().cpu().contiguous()
    # Per-example trajectories of the recorded training rows go with the tensors
    # (they can be large).
    tensors[f"v{i}/train_trajectories_"] = torch.as_tensor(v.train_trajectories_)
    tensors[f"v{i}/record_index_"] = torch.as_tensor(np.asarray(v.record_index_, dtype=np.int64))
    return {
        "preprocessing": v.preprocessing,
        "n_members": int(v.n_members),
        "sizes_": list(v.sizes_),
        "record_epochs_": _arr(v.record_epochs_),
        "record_updates_": _arr(v.record_updates_),
        "center_": _arr(v.center_),
        "scale_": _arr(v.scale_),
        "weights_": _arr(v.weights_),
        "used_recordings_": _arr(v.used_recordings_),
        "bimodality_": _arr(v.bimodality_),
        "train_scores_": _arr(v.train_scores_),
        "offset_": float(v.offset_),
        "n_train_rows_": int(v.n_train_rows_),
        "loss_trajectory_": v.loss_trajectory_.to_dict(orient="list"),
        "preprocessor": v.preprocessor_.get_state(),
        "n_snapshots": len(v.snapshots_),
        "param_names": sorted(v.snapshots_[0]),
    }


def _restore_view(det: IMDetector, f: dict, i: int, tensors: dict) -> None:
    det.snapshots_ = [
        {name: tensors[f"v{i}/{j}/{name}"] for name in f["param_names"]}
        for j in range(f["n_snapshots"])
    ]
    det.views_ = []
    det.sizes_ = tuple(f["sizes_"])
    for name in ("record_epochs_", "center_", "scale_", "weights_", "train_scores_"):
        setattr(det, name, np.asarray(f[name], dtype=np.float64))
    det.record_updates_ = np.asarray(f["record_updates_"], dtype=int)
    det.used_recordings_ = np.asarray(f["used_recordings_"], dtype=int)
    det.bimodality_ = None if f["bimodality_"] is None else np.asarray(f["bimodality_"])
    det.offset_ = float(f["offset_"])
    det.n_train_rows_ = f["n_train_rows_"]
    det.loss_trajectory_ = pd.DataFrame(f["loss_trajectory_"])
    det.preprocessor_ = IMPreprocessor.from_state(
        {"method": f["preprocessing"], "clip": det.clip}, f["preprocessor"]
    )
    det.train_trajectories_ = tensors[f"v{i}/train_trajectories_"].numpy()
    det.record_index_ = tensors[f"v{i}/record_index_"].numpy()
    det.membership_ = None  # not saved: train_scores_ already hold its effect


def save_detector(det: IMDetector, path) -> Path:
    """Write a fitted detector to the folder ``path`` (created if needed).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from imod import IMDetector
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> det = IMDetector(n_members=3, max_updates=10, random_state=0).fit(X)
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
    tensors: dict[str, torch.Tensor] = {}
    views = [_view_state(v, i, tensors) for i, v in enumerate(det.views_ or [det])]
    torch.save(tensors, folder / WEIGHTS)
    fitted = {
        "n_features_in_": int(det.n_features_in_),
        "feature_names_in_": _arr(getattr(det, "feature_names_in_", None)),
        "offset_": float(det.offset_),
        "train_scores_": _arr(det.train_scores_),
        "fit_seconds_": float(det.fit_seconds_),
        "loss_trajectory_": det.loss_trajectory_.to_dict(orient="list"),
        "views": views,
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "imod_version": __version__,
        "params": _params_to_json(det),
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
    params = _params_from_json(payload["params"])
    det = IMDetector(**params)
    if len(f["views"]) == 1:
        _restore_view(det, f["views"][0], 0, tensors)
    else:
        det.views_ = []
        for i, vf in enumerate(f["views"]):
            sub = IMDetector(**(params | {"preprocessing": vf["preprocessing"],
                                          "n_members": vf["n_members"]}))
            sub.n_features_in_ = f["n_features_in_"]
            _restore_view(sub, vf, i, tensors)
            det.views_.append(sub)
    det.n_features_in_ = f["n_features_in_"]
    if f["feature_names_in_"] is not None:
        det.feature_names_in_ = np.asarray(f["feature_names_in_"], dtype=object)
    det.offset_ = float(f["offset_"])
    det.train_scores_ = np.asarray(f["train_scores_"], dtype=np.float64)
    det.fit_seconds_ = f["fit_seconds_"]
    det.loss_trajectory_ = pd.DataFrame(f["loss_trajectory_"])
    return det
