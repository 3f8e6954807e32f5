"""One benchmark cell: load a dataset, split it by the protocol, fit and score one detector.

:func:`run_cell` is the only copy of the per-cell logic: the in-process loop of
:mod:`imod.bench.runner` and the Dask tasks of :mod:`imod.bench.dask_cells` both call it.
"""

from __future__ import annotations

import datetime as _dt
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from imod.bench.datasets import load_npz
from imod.bench.protocol import CellResult, ProtocolConfig, evaluate, prepare_split

__all__ = ["RESULT_COLUMNS", "run_cell"]

#: Columns of ``results.csv``, one row per (dataset, detector, seed) cell.
RESULT_COLUMNS = [
    "dataset", "detector", "seed", "mode", "n_train", "n_test", "n_features", "auroc", "aupr",
    "fit_seconds", "score_seconds", "seconds", "status", "error", "finished_at",
]


def _error_text(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def run_cell(path: str | Path, name: str, detector: str, seed: int, protocol: ProtocolConfig,
             n_jobs: int | None = None, cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one (dataset, detector, seed) cell and return its ``results.csv`` row.

    Errors of the dataset (unreadable file, a split with one class) or of the detector
    become an ``error`` row, never an exception, so a run goes on.

    Parameters
    ----------
    path : path-like
        The dataset's ``.npz`` file.
    name : str
        Its name in the results.
    detector : str
        Canonical detector name or import path.
    seed : int
    protocol : ProtocolConfig
    n_jobs : int, optional
        Passed to detectors that accept ``n_jobs``.
    cache : dict, optional
        Keeps the last loaded dataset and split between calls of one process (the
        in-process loop runs all detectors of a (dataset, seed) in a row).

    Returns
    -------
    dict
        Keys `RESULT_COLUMNS`.

    Examples
    --------
    >>> from imod.bench.catalogue import BUNDLED_DIR
    >>> row = run_cell(BUNDLED_DIR / "45_wine.npz", "45_wine", "PCA", 1, ProtocolConfig())
    >>> row["status"], row["n_train"], row["n_test"], 0.5 < row["auroc"] <= 1.0
    ('ok', 700, 300, True)
    >>> run_cell("missing.npz", "x", "PCA", 1, ProtocolConfig())["error"]
    'FileNotFoundError: dataset file not found: missing.npz'
    """
    cache = {} if cache is None else cache
    key = (str(path), int(seed), protocol)
    if cache.get("key") != key:
        split, error, n_feat = None, "", 0
        try:
            data = cache.get("data")
            if data is None or str(data.path) != str(path):
                cache["data"] = None
                data = cache["data"] = load_npz(path, name=name)
            n_feat = data.X.shape[1]
            split = prepare_split(data.X, data.y, seed, protocol)
        except Exception as exc:  # noqa: BLE001 - a bad dataset fails its cells only
            error = _error_text(exc)
        cache.update(key=key, split=split, error=error, n_features=n_feat)
    t0 = time.perf_counter()
    if cache["split"] is None:
        res = CellResult(0, 0, cache["n_features"], status="error", error=cache["error"])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library warnings would drown the progress bar
            res = evaluate(detector, cache["split"], seed, n_jobs=n_jobs)
    return {"dataset": name, "detector": detector, "seed": int(seed), "mode": protocol.mode,
            **asdict(res), "seconds": time.perf_counter() - t0,
            "finished_at": _dt.datetime.now().isoformat(timespec="seconds")}
