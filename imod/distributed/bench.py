"""``imod bench`` cells as Dask tasks.

:func:`imod.bench.runner.run_benchmark` calls :func:`run_cells` when it is given a
``scheduler`` (CLI: ``imod bench --scheduler ADDRESS|local-cluster:N``). Every
(dataset, detector, seed) cell still to do becomes one task; the main process writes each
row to ``results.csv`` as its task finishes, so resuming works exactly as in-process
(finished cells are skipped, a killed run loses only the cells in flight).
"""

from __future__ import annotations

import datetime as _dt
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .backend import open_client, run_tasks

__all__ = ["bench_cell", "run_cells"]


def bench_cell(path: str, name: str, detector: str, seed: int, protocol: Any,
               n_jobs: int | None = None) -> dict[str, Any]:
    """One cell, as the in-process loop runs it: load, split, fit, score; returns the row.

    Errors of the dataset or the detector become an ``error`` row, never an exception.
    """
    from imod.bench.datasets import load_npz
    from imod.bench.protocol import CellResult, evaluate, prepare_split

    t0 = time.perf_counter()
    data = None
    try:
        data = load_npz(Path(path), name=name)
        split = prepare_split(data.X, data.y, seed, protocol)
    except Exception as exc:  # noqa: BLE001 - a bad dataset fails its cells only
        n_feat = data.X.shape[1] if data is not None else 0
        err = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        res = CellResult(0, 0, n_feat, status="error", error=err)
    else:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = evaluate(detector, split, seed, n_jobs=n_jobs)
    return {"dataset": name, "detector": detector, "seed": int(seed), "mode": protocol.mode,
            **asdict(res), "seconds": time.perf_counter() - t0,
            "finished_at": _dt.datetime.now().isoformat(timespec="seconds")}


def run_cells(
    todo: Sequence[tuple[Any, str, int]],
    protocol: Any,
    scheduler: Any,
    write_row: Callable[[dict[str, Any]], None],
    *,
    n_jobs: int | None = None,
    retries: int = 1,
) -> None:
    """Run benchmark cells as Dask tasks, calling ``write_row(row)`` as each finishes.

    Parameters
    ----------
    todo : sequence of (DatasetRef, str, int)
        The cells (dataset reference with a local ``path``, detector name, seed).
    protocol : ProtocolConfig
    scheduler : distributed.Client or str
        A client, a scheduler address, or ``"local-cluster:N"`` (see
        :func:`~imod.distributed.open_client`).
    write_row : callable
        Called in this process with each finished row (the caller appends it to the CSV).
    n_jobs : int, optional
        Passed to detectors that accept ``n_jobs`` (keep 1 on single-threaded workers).
    retries : int
        Retries of a cell whose task raised (detector errors are rows, not exceptions).
    """
    tasks = [(i, (str(ref.path), ref.name, det, int(seed), protocol, n_jobs))
             for i, (ref, det, seed) in enumerate(todo)]
    with open_client(scheduler) as client:
        if client is None:
            raise ValueError("run_cells needs a Dask scheduler; the in-process loop is "
                             "imod.bench.runner.run_benchmark(scheduler=None)")
        run_tasks(bench_cell, tasks, lambda _key, row: write_row(row), client=client,
                  retries=retries, key_prefix="imod-bench-cell")
