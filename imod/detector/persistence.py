"""Save and load a fitted detector's (parameters, view records) without pickle.

A saved detector is a folder with two files:

* ``weights-<digest>.pt``: a flat ``dict[str, Tensor]`` written by ``torch.save``
  (each view's snapshots and training loss trajectories, keys ``v<view>/...``, and the
  random projection matrix, key ``projection``:
  tensors only), read back with ``torch.load(weights_only=True)`` (no code runs
  at load time). Its name carries the first 16 hex digits of its SHA-256.
* ``config.json``: format version, package version, constructor parameters,
  every fitted array (preprocessing and normalization statistics, weights,
  offset, feature names, ...), the weights file's name and SHA-256, and a SHA-256
  of the JSON content itself, so a tampered or truncated file fails loudly
  instead of scoring silently wrong.

Saving over an existing detector is atomic: the new weights go to a new file,
then ``config.json`` is replaced in one rename (:func:`imod._runtime.atomic_write`),
and only then are weights files no config names any more removed. An interrupted
save leaves the old detector loadable.

This module knows no estimator: :meth:`IMDetector.save` hands it the parameters
and the fitted state, :meth:`IMDetector.load` builds the estimator from what
:func:`load_detector` returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from .._runtime import atomic_write
from .preprocessing import IMPreprocessor
from .projection import RandomProjection
from .views import View

__all__ = ["FORMAT_VERSION", "load_detector", "save_detector"]

FORMAT = "imod.IMDetector"
# 3: one plain record per view, weights file named by its digest; 4: the detector may
# hold a random projection of its inputs (IMDetector(projection_dim=...))
FORMAT_VERSION = 4
CONFIG = "config.json"
_WEIGHTS_NAME = re.compile(r"weights-[0-9a-f]{16}\.pt")

# Per-view arrays stored in the JSON (float64 unless named in _INT_ARRAYS).
_ARRAYS = ("record_epochs", "record_updates", "center", "scale", "weights", "used_recordings",
           "train_scores")
_INT_ARRAYS = ("record_updates", "used_recordings")


def _content_hash(payload: dict) -> str:
    body = {k: v for k, v in payload.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _params_to_json(params: dict) -> dict:
    params = dict(params)
    for key in ("hidden_sizes", "preprocessing", "window"):
        if params.get(key) is not None and not isinstance(params[key], str):
            params[key] = list(params[key])
    rs = params.get("random_state")
    if isinstance(rs, np.integer):
        params["random_state"] = int(rs)
    elif not isinstance(rs, (int, type(None))):
        params["random_state"] = None  # a RandomState object cannot go to JSON
    if isinstance(params.get("device"), torch.device):
        params["device"] = str(params["device"])
    return params


def _params_from_json(params: dict) -> dict:
    params = dict(params)
    for key in ("hidden_sizes", "preprocessing", "window"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    return params


def _view_to_json(v: View, i: int, tensors: dict[str, torch.Tensor]) -> dict:
    """One view: its tensors go to ``tensors``, the rest is returned."""
    for j, snap in enumerate(v.snapshots):
        for name, t in snap.items():
            tensors[f"v{i}/{j}/{name}"] = t.detach().cpu().contiguous()
    tensors[f"v{i}/train_trajectories"] = torch.as_tensor(v.train_trajectories)
    tensors[f"v{i}/record_index"] = torch.as_tensor(np.asarray(v.record_index, dtype=np.int64))
    out: dict[str, Any] = {name: np.asarray(getattr(v, name)).tolist() for name in _ARRAYS}
    out |= {
        "method": v.method, "sizes": list(v.sizes), "activation": v.activation,
        "loss": v.loss, "normalization": v.normalization, "n_train_rows": int(v.n_train_rows),
        "bimodality": None if v.bimodality is None else np.asarray(v.bimodality).tolist(),
        "preprocessor_params": v.preprocessor.get_params(),
        "preprocessor": v.preprocessor.get_state(),
        "n_snapshots": len(v.snapshots), "param_names": sorted(v.snapshots[0]),
    }
    return out


def _view_from_json(f: dict, i: int, tensors: dict[str, torch.Tensor]) -> View:
    arrays = {name: np.asarray(f[name], dtype=int if name in _INT_ARRAYS else np.float64)
              for name in _ARRAYS}
    return View(
        method=f["method"],
        preprocessor=IMPreprocessor.from_state(f["preprocessor_params"], f["preprocessor"]),
        sizes=tuple(f["sizes"]), activation=f["activation"], loss=f["loss"],
        normalization=f["normalization"],
        snapshots=[{name: tensors[f"v{i}/{j}/{name}"] for name in f["param_names"]}
                   for j in range(f["n_snapshots"])],
        bimodality=None if f["bimodality"] is None else np.asarray(f["bimodality"]),
        train_trajectories=tensors[f"v{i}/train_trajectories"].numpy(),
        record_index=tensors[f"v{i}/record_index"].numpy(),
        n_train_rows=int(f["n_train_rows"]),
        **arrays,
    )


def save_detector(path, params: dict, state: dict) -> Path:
    """Write a fitted detector's ``params`` and fitted ``state`` to the folder ``path``.

    ``state`` holds ``views_`` (a list of :class:`View`), ``projection_`` (a
    :class:`~imod.detector.projection.RandomProjection` or ``None``), ``n_features_in_``,
    ``offset_``, ``train_scores_``, ``fit_seconds_`` and, optionally,
    ``feature_names_in_``. The folder is created if needed; a detector already
    there is replaced atomically.

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
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    views = [_view_to_json(v, i, tensors) for i, v in enumerate(state["views_"])]
    projection = state["projection_"]
    if projection is not None:  # the matrix (d x 64 float64) as a tensor, not in the JSON
        tensors["projection"] = torch.as_tensor(projection.components_)
    buf = io.BytesIO()
    torch.save(tensors, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    weights_name = f"weights-{digest[:16]}.pt"
    atomic_write(folder / weights_name, lambda f: f.write(data))
    names = state.get("feature_names_in_")
    fitted = {
        "n_features_in_": int(state["n_features_in_"]),
        "feature_names_in_": None if names is None else np.asarray(names).tolist(),
        "offset_": float(state["offset_"]),
        "train_scores_": np.asarray(state["train_scores_"]).tolist(),
        "fit_seconds_": float(state["fit_seconds_"]),
        "projection": None if projection is None else {
            "params": {"n_components": projection.n_components},
            "state": projection.get_state()},
        "views": views,
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "imod_version": __version__,
        "params": _params_to_json(params),
        "fitted": fitted,
        "weights_file": weights_name,
        "weights_sha256": digest,
    }
    payload["content_sha256"] = _content_hash(payload)
    text = json.dumps(payload, indent=1).encode()
    atomic_write(folder / CONFIG, lambda f: f.write(text))
    # Only now is the old detector replaced: drop weights files it no longer names.
    for old in folder.glob("weights*.pt"):
        if old.name != weights_name:
            with contextlib.suppress(OSError):
                old.unlink()
    return folder


def load_detector(path) -> tuple[dict, dict]:
    """Read a detector written by :func:`save_detector`: ``(params, state)``.

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ValueError
        Another format or an older format version, missing entries, edited JSON,
        a weights file whose SHA-256 differs from the recorded one, or
        non-finite weights.
    """
    folder = Path(path)
    cfg_path = folder / CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: not a saved IMDetector folder")
    try:
        payload = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not an {FORMAT} file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path} has format version {version!r}; this imod ({__version__}) reads "
            f"version {FORMAT_VERSION} only (files from earlier versions are not converted): "
            "refit the detector and save it again"
        )
    if payload.get("content_sha256") != _content_hash(payload):
        raise ValueError(f"{cfg_path} was modified after saving (content hash mismatch)")
    try:
        return _read(folder, cfg_path, payload)
    except (KeyError, TypeError, IndexError) as exc:
        what = f"the entry {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{cfg_path} is incomplete or malformed: {what} is missing or "
                         "wrong; save the detector again") from exc


def _read(folder: Path, cfg_path: Path, payload: dict) -> tuple[dict, dict]:
    weights_name = payload["weights_file"]
    if not isinstance(weights_name, str) or not _WEIGHTS_NAME.fullmatch(weights_name):
        raise ValueError(f"{cfg_path} names an invalid weights file {weights_name!r}")
    w_path = folder / weights_name
    if not w_path.is_file():
        raise FileNotFoundError(f"{w_path} not found: the saved detector is incomplete")
    data = w_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != payload["weights_sha256"]:
        raise ValueError(
            f"{w_path} does not match the SHA-256 recorded in {CONFIG}: the weights were "
            "modified or belong to another save"
        )
    tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{w_path} holds NaN or infinite values in {bad[:3]}: the detector "
                         "cannot score; refit it")
    f = payload["fitted"]
    params = _params_from_json(payload["params"])
    if not isinstance(params, dict):
        raise TypeError("params must be a mapping")
    proj = f["projection"]
    state: dict[str, Any] = {
        "views_": [_view_from_json(vf, i, tensors) for i, vf in enumerate(f["views"])],
        "projection_": None if proj is None else RandomProjection.from_state(
            proj["params"], proj["state"], tensors["projection"].numpy()),
        "n_features_in_": int(f["n_features_in_"]),
        "offset_": float(f["offset_"]),
        "train_scores_": np.asarray(f["train_scores_"], dtype=np.float64),
        "fit_seconds_": float(f["fit_seconds_"]),
    }
    if f["feature_names_in_"] is not None:
        state["feature_names_in_"] = np.asarray(f["feature_names_in_"], dtype=object)
    return params, state
