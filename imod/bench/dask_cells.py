"""``imod bench`` cells as Dask tasks, through :mod:`imod.distributed.backend`.

:func:`imod.bench.runner.run_benchmark` calls :func:`run_cells` when it is given a
``scheduler`` (CLI: ``imod bench --scheduler ADDRESS|local-cluster:N``). Every
(dataset, detector, seed) cell still to do becomes one task running
:func:`imod.bench.cells.run_cell`; the main process writes each row to ``results.csv`` as
its task finishes, so resuming works exactly as in-process (finished cells are skipped, a
killed run loses only the cells in flight).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from imod.bench.cells import run_cell
from imod.bench.protocol import ProtocolConfig
from imod.distributed.backend import open_client, run_tasks

__all__ = ["run_cells"]


def run_cells(
    todo: Sequence[tuple[Any, str, int]],
    protocol: ProtocolConfig,
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
        :func:`imod.distributed.open_client`).
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
        run_tasks(run_cell, tasks, lambda _key, row: write_row(row), client=client,
                  retries=retries, key_prefix="imod-bench-cell")
