"""Save and load a fitted detector's (parameters, view records) without pickle.

A saved detector is a folder with two files:

* ``weights-<digest>.pt``: a flat ``dict[str, Tensor]`` written by ``torch.save``
  (each view's snapshots and every array field of its
  :class:`~imod.detector.views.View` record, keys ``v<view>/...``, and the random
  projection matrix, key ``projection``: tensors only), read back with
  ``torch.load(weights_only=True)`` (no code runs at load time). Its name carries
  the first 16 hex digits of its SHA-256.
* ``config.json``: format version, package version, constructor parameters, the
  views' other fields and their preprocessors' statistics, the offset, feature
  names, the weights file's name and SHA-256, and a SHA-256 of the JSON content
  itself, so a tampered or truncated file fails loudly instead of scoring
  silently wrong.

The fields of a view are read from the :class:`View` record itself, so a field
added there is saved without a change here. Saving writes only these two names:
a folder holding any other file (a user's own ``weights.pt``) is refused, never
overwritten. Saving over an existing detector is atomic: the new weights go to a
new file, then ``config.json`` is replaced in one rename
(:func:`imod._runtime.atomic_write`), and only then are the weights files no config
names any more removed. An interrupted save leaves the old detector loadable.

This module knows no estimator: :meth:`IMDetector.save` hands it the parameters
and the fitted state, :meth:`IMDetector.load` builds the estimator from what
:func:`load_detector` returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._runtime import atomic_write
from .._version import __version__
from .preprocessing import IMPreprocessor
from .projection import RandomProjection
from .views import View

__all__ = ["FORMAT_VERSION", "load_detector", "save_detector"]

FORMAT = "imod.IMDetector"
# 4: the detector may hold a random projection of its inputs; 5: every array field of a
# view goes to the weights file, the fields read from the View record
FORMAT_VERSION = 5
CONFIG = "config.json"
_WEIGHTS_NAME = re.compile(r"weights-[0-9a-f]{16}\.pt")
# View fields not stored as plain values: rebuilt from their own state
_VIEW_SPECIAL = ("preprocessor", "snapshots")


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
    """One view: its snapshots and array fields go to ``tensors``, the rest is returned."""
    for j, snap in enumerate(v.snapshots):
        for name, t in snap.items():
            tensors[f"v{i}/{j}/{name}"] = t.detach().cpu().contiguous()
    out: dict[str, Any] = {
        "preprocessor_params": v.preprocessor.get_params(),
        "preprocessor": v.preprocessor.get_state(),
        "n_snapshots": len(v.snapshots), "param_names": sorted(v.snapshots[0]),
    }
    for field in dataclasses.fields(View):
        value = getattr(v, field.name)
        if field.name in _VIEW_SPECIAL:
            continue
        if isinstance(value, np.ndarray):
            tensors[f"v{i}/{field.name}"] = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, tuple):
            out[field.name] = list(value)
        else:  # str, int or None
            out[field.name] = value.item() if isinstance(value, np.generic) else value
    return out


def _view_from_json(f: dict, i: int, tensors: dict[str, torch.Tensor]) -> View:
    values: dict[str, Any] = {
        "preprocessor": IMPreprocessor.from_state(f["preprocessor_params"], f["preprocessor"]),
        "snapshots": [{name: tensors[f"v{i}/{j}/{name}"] for name in f["param_names"]}
                      for j in range(f["n_snapshots"])],
    }
    for field in dataclasses.fields(View):
        key = f"v{i}/{field.name}"
        if field.name in _VIEW_SPECIAL:
            continue
        if key in tensors:
            values[field.name] = tensors[key].numpy()
        else:
            value = f[field.name]
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return View(**values)


def _check_folder(folder: Path) -> None:
    """Refuse a folder holding anything but a saved detector: saving never touches a
    file it did not write."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder")
    foreign = sorted(p.name for p in folder.iterdir()
                     if p.name != CONFIG and not _WEIGHTS_NAME.fullmatch(p.name))
    cfg = folder / CONFIG
    if cfg.exists():
        try:
            ours = json.loads(cfg.read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            foreign = sorted([*foreign, CONFIG])
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(
            f"{folder} holds files that are not a saved IMDetector ({shown}); save into a "
            "new or empty folder, or one holding only a detector saved before")


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
    _check_folder(folder)
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
    for old in folder.glob("weights-*.pt"):
        if old.name != weights_name and _WEIGHTS_NAME.fullmatch(old.name):
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
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(tensors, dict) or not all(
                isinstance(t, torch.Tensor) for t in tensors.values()):
            raise TypeError("not a flat dict of tensors")
    except (pickle.UnpicklingError, EOFError, RuntimeError, TypeError, ValueError,
            AttributeError, ImportError, IndexError, KeyError) as exc:
        # torch's own message advises loading without weights_only: never that for a
        # file that may be hostile; say what the file is not.
        what = "empty" if not data else type(exc).__name__
        raise ValueError(f"{w_path} is not a weights file imod wrote ({what}): it is damaged "
                         "or was replaced; refit the detector and save it again") from None
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
