"""Train an ensemble in blocks of members, in-process or as Dask tasks, resumably.

Member ``k``'s initial weights depend only on ``(random_state, k)`` and its batches
only on ``random_state`` and its own mask row; every block ``[first, stop)`` is one call
of :func:`imod.engine.train_ensemble` with ``Task(mask=mask[first:stop],
first_member=first)``, so the merged blocks hold
exactly the numbers of one ``train_ensemble`` call over all members (same device and
precision), whatever the block size, the order the blocks finish in, or the machine
that trained them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imod.engine import Placement, Recording, Task, Training, train_ensemble

from .._runtime import array_digest, torch_threads
from .backend import BACKENDS, open_client, run_tasks
from .store import BlockData, BlockStore, merge_blocks, missing_ranges

__all__ = ["BlockRunResult", "EnsembleJob", "train_blocks"]

MaskFn = Callable[[int, int], np.ndarray]
_SCATTER_BYTES = 16 * 1024**2


def _describe(obj: Any) -> Any:
    """A JSON-able description of a model, loss, optimizer or function (for the hash)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"type": type(obj).__name__,
                **{k: _describe(v) for k, v in dataclasses.asdict(obj).items()}}
    if isinstance(obj, (list, tuple)):
        return [_describe(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v) for k, v in obj.items()}
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{getattr(obj, '__module__', '?')}.{name}"


@dataclass
class BlockRunResult:
    """Merged outcome of :meth:`EnsembleJob.run`.

    Attributes
    ----------
    mask : ndarray of shape (K, n)
    records : dict of str to ndarray
        As ``EnsembleResult.records`` of one ``train_ensemble`` run over all K members.
    record_epochs, record_updates : ndarray of shape (T,)
    params : dict of str to Tensor or None
        Final stacked parameters ``(K, ...)`` when the job keeps them.
    trained : list of (int, int)
        Member ranges trained by this call.
    loaded : list of (int, int)
        Member ranges read from the store.
    seconds : float
        Wall time of the call.
    task_seconds : dict of (int, int) to float
        Wall time of each trained block inside its task.
    workers : dict of (int, int) to str
        Worker that trained each block (``""`` in-process).
    """

    mask: np.ndarray
    records: dict[str, np.ndarray]
    record_epochs: np.ndarray
    record_updates: np.ndarray
    params: dict[str, Any] | None
    trained: list[tuple[int, int]] = field(default_factory=list)
    loaded: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0
    task_seconds: dict[tuple[int, int], float] = field(default_factory=dict)
    workers: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return int(self.mask.shape[0])


@dataclass
class _Payload:
    """Everything a block task needs besides its member range (sent to workers once)."""

    model: Any
    X: Any
    y: Any
    loss: Any
    training: Training
    placement: Placement
    recording: Recording
    keep_params: bool
    torch_threads: int | None


def _dask_worker_address() -> str:
    """The address of the Dask worker running this code, or ``""``."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""


_MALLOC_TUNED = False


def relax_malloc() -> bool:
    """Undo the Dask nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` for tensor work (Linux/glibc).

    The nanny sets that variable so pandas workers give memory back to the OS; setting it
    also switches off glibc's adaptive mmap threshold, so every allocation over 128 KiB
    (each activation of a training step) becomes a fresh ``mmap`` with page faults.
    Measured here: one CPU block trained 1.7-1.8x slower on a worker than in-process, and
    as fast after this call. Raises the trim threshold to 256 MiB and the mmap threshold
    to 32 MiB in this process; returns whether it did.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-1, 256 * 1024**2) == 1 and libc.mallopt(-3, 32 * 1024**2) == 1
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok


def train_block(payload: _Payload, first: int, stop: int, mask: np.ndarray) -> BlockData:
    """The task: train members ``[first, stop)`` and return their :class:`BlockData`.

    Runs on a worker (or in-process); ``first_member=first`` makes it reproduce those
    members of one big run. On a Dask worker it first calls
    :func:`relax_malloc`.
    """
    worker = _dask_worker_address()
    if worker:
        relax_malloc()
    t0 = time.perf_counter()
    with torch_threads(payload.torch_threads):  # the caller's count is restored afterwards
        task = Task(payload.model, payload.X, payload.y, mask=mask, loss=payload.loss,
                    first_member=first)
        res = train_ensemble(task, payload.training, payload.placement, payload.recording)
    return BlockData(first, stop, res.mask, res.records, res.record_epochs, res.record_updates,
                     params=res.params if payload.keep_params else None,
                     seconds=time.perf_counter() - t0, worker=worker)


class EnsembleJob:
    """K members trained in blocks, each block a task; resumable and extensible on disk.

    Parameters
    ----------
    model : StackedMLP, ModuleMembers or callable
        As for :class:`imod.engine.Task` (a module factory must be picklable for the
        Dask backend, e.g. a module-level function).
    X, y : array-like
        Training data (``y=None`` trains autoencoders).
    mask : ndarray of shape (K, n) or callable
        Membership mask of all K members, or ``mask_fn(first, stop) -> (stop - first, n)``
        that must depend only on its arguments (then give ``n_members``).
        To extend a run, pass a larger mask whose first rows are the old ones.
    n_members : int, optional
        K; defaults to the mask's rows. May be smaller than the mask (train a prefix).
    block_size : int
        Members per task. Blocks trained by earlier calls are reused whatever their size.
    loss : str or callable
        As for :class:`imod.engine.Task`.
    training, placement, recording : Training, Placement, Recording
        How each block trains, where, and what it records (see
        :func:`imod.engine.train_ensemble`). The placement's device defaults to
        ``"auto"``: each worker uses its GPU if it has one.
    keep_params : bool
        Keep the final parameters (saved as ``params_*.pt`` next to each block).
    torch_threads : int, optional
        Torch CPU threads inside each task (1 per single-threaded Dask worker), through
        :func:`imod._runtime.torch_threads`: the previous count is restored after each block.
    grid_only : bool
        Reuse only stored blocks that lie exactly on this run's block grid
        ``[b * block_size, min((b + 1) * block_size, K))`` and call a mask callable with
        whole grid blocks only. Needed when mask rows are generated per block (e.g.
        balanced within each block): a smaller last block of an earlier, shorter run is
        then retrained at full size instead of being reused.
    config : dict, optional
        Extra JSON-able description hashed into the store's manifest, for whatever
        determines the numbers but is not visible here (e.g. how a mask callable draws).

    Examples
    --------
    >>> import numpy as np
    >>> from imod.engine import StackedMLP, Recorder, correctness, balanced_mask
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 4)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> job = EnsembleJob(StackedMLP((4, 8, 2)), X, y, mask=balanced_mask(6, 60, 0.5, 0),
    ...                   block_size=4, loss="cross_entropy", training=Training(epochs=2),
    ...                   placement=Placement(device="cpu"),
    ...                   recording=Recording([Recorder("c", correctness, reduce="last")]))
    >>> res = job.run()                              # in-process; backend="dask" for a cluster
    >>> res.records["c"].shape, res.trained
    ((6, 60), [(0, 4), (4, 6)])
    """

    def __init__(self, model: Any, X: Any, y: Any = None, *,
                 mask: np.ndarray | MaskFn | None = None, n_members: int | None = None,
                 block_size: int = 64, loss: Any = "mse", training: Training | None = None,
                 placement: Placement | None = None, recording: Recording | None = None,
                 keep_params: bool = False, torch_threads: int | None = None,
                 grid_only: bool = False, config: dict[str, Any] | None = None) -> None:
        if not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        if recording is not None and recording.keep_snapshots:
            raise ValueError("EnsembleJob keeps no snapshots (keep_params keeps the final ones)")
        self.model, self.X, self.y, self.loss = model, X, y, loss
        self.mask, self.block_size = mask, int(block_size)
        self.training = training or Training()
        self.placement = placement or Placement()
        self.recording = recording or Recording()
        self.recorders, self.keep_params = list(self.recording.recorders), bool(keep_params)
        self.torch_threads = torch_threads
        self.grid_only = bool(grid_only)
        self.extra_config = dict(config or {})
        x = np.asarray(X)
        self._n = int(x.shape[0])
        if mask is None:
            raise ValueError("give a mask: an array (K, n) or a callable (first, stop) -> rows")
        if callable(mask):
            if n_members is None:
                raise ValueError("a mask callable needs n_members")
        else:
            m = np.asarray(mask)
            if m.ndim != 2 or m.shape[1] != self._n:
                raise ValueError(f"mask must have shape (K, {self._n}), got {m.shape}")
            if n_members is not None and n_members > m.shape[0]:
                raise ValueError(f"n_members={n_members} exceeds the mask's {m.shape[0]} rows")
            self.mask = m.astype(bool)
        self.n_members = int(n_members if n_members is not None else np.asarray(mask).shape[0])
        if self.n_members < 1:
            raise ValueError("n_members must be >= 1")

    def __repr__(self) -> str:
        return (f"EnsembleJob(model={self.model!r}, n_members={self.n_members}, "
                f"block_size={self.block_size}, recorders={[r.name for r in self.recorders]}, "
                f"{self.training!r})")

    # ------------------------------------------------------------------ config
    def mask_rows(self, first: int, stop: int) -> np.ndarray:
        """Mask rows of members ``[first, stop)``."""
        if callable(self.mask):
            rows = np.asarray(self.mask(first, stop), dtype=bool)
            if rows.shape != (stop - first, self._n):
                raise ValueError(f"mask callable returned {rows.shape}, "
                                 f"expected {(stop - first, self._n)}")
            return rows
        return self.mask[first:stop]  # type: ignore[index]

    def config(self) -> dict[str, Any]:
        """Everything that determines the numbers (hashed into the store's manifest)."""
        rec = self.recording
        recs = [{"name": r.name, "reduce": r.reduce, "fn": _describe(r.fn),
                 "transform": _describe(r.transform), "data": array_digest(r.X, r.y)[:16]}
                for r in self.recorders]
        out = {"format_version": 2, "model": _describe(self.model),
               "data": array_digest(self.X, self.y)[:16], "recorders": recs,
               "loss": _describe(self.loss),
               "train": {**_describe(self.training), "precision": self.placement.precision},
               "record": {"every": rec.every, "initial": rec.initial}}
        if self.grid_only:
            out["block_grid"] = self.block_size
        if self.extra_config:
            out["extra"] = _describe(self.extra_config)
        return out

    def grid(self) -> list[tuple[int, int]]:
        """The block ranges of this run: ``[b * block_size, min((b + 1) * block_size, K))``."""
        K, s = self.n_members, self.block_size
        return [(a, min(a + s, K)) for a in range(0, K, s)]

    def open_store(self, path: str | Path, overwrite: bool = False) -> BlockStore:
        """The :class:`BlockStore` of this job at ``path`` (e.g. to ``merge`` it later)."""
        return BlockStore(path, self.config(), {r.name: r.reduce for r in self.recorders},
                          overwrite=overwrite)

    def _stored_blocks(self, bstore: BlockStore) -> dict[tuple[int, int], BlockData]:
        """The finished blocks of ``bstore`` this run can reuse (checked against its mask)."""
        K, grid, blocks = self.n_members, set(self.grid()), {}
        for a, b in bstore.valid_ranges(params=self.keep_params):
            if a >= K or (self.grid_only and (a, b) not in grid):
                continue
            blk = bstore.load(a, b, params=self.keep_params)
            if blk is None:
                continue
            stop = min(b, K)
            if not np.array_equal(blk.mask[: stop - a], self.mask_rows(a, stop)):
                raise ValueError(
                    f"the stored block [{a}, {b}) was trained on other mask rows than "
                    "the mask given now; extend a run only by appending rows")
            blocks[(a, b)] = blk
        return blocks

    # ------------------------------------------------------------------ run
    def run(
        self,
        store: str | Path | None = None,
        *,
        backend: str = "local",
        client: Any = None,
        retries: int = 3,
        overwrite: bool = False,
        callback: Callable[[BlockData, int, int], None] | None = None,
    ) -> BlockRunResult:
        """Train the members not yet in ``store`` and merge all K.

        Parameters
        ----------
        store : path-like, optional
            Folder of finished blocks (see :mod:`imod.distributed.store`). Blocks are
            written there as they finish; re-running resumes, and a larger mask or
            ``n_members`` trains only the new members. ``None`` keeps results in memory.
        backend : {"local", "dask"}
            ``"local"`` loops over blocks in this process (no Dask needed); ``"dask"``
            submits one task per block to ``client``.
        client : distributed.Client or str, optional
            For ``backend="dask"``: a client, a scheduler address, or
            ``"local-cluster:N"``.
        retries : int
            Times a failing block task is retried (a task on a worker that died is
            rescheduled by Dask without counting against this).
        overwrite : bool
            Discard a store made with another configuration instead of raising.
        callback : callable ``(block, members_done, n_members)``, optional
            Called in this process after each block is saved. An exception raised there
            stops the run (the remaining tasks are cancelled; saved blocks stay).

        Returns
        -------
        BlockRunResult

        Raises
        ------
        imod._runtime.ConfigMismatchError
            If ``store`` holds blocks of another configuration.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if backend == "dask" and client is None:
            raise ValueError("backend='dask' needs client= (a Client, an address, or "
                             "'local-cluster:N')")
        start = time.perf_counter()
        K = self.n_members
        path = None if store is None else Path(store)
        reductions = {r.name: r.reduce for r in self.recorders}
        bstore = None if path is None else self.open_store(path, overwrite=overwrite)
        blocks = {} if bstore is None else self._stored_blocks(bstore)
        loaded = list(blocks)
        todo = (missing_ranges(K, self.block_size, blocks) if not self.grid_only
                else [r for r in self.grid() if r not in blocks])
        payload = _Payload(self.model, self.X, self.y, self.loss, self.training, self.placement,
                           self.recording, self.keep_params, self.torch_threads)
        result = BlockRunResult(np.zeros((0, self._n), bool), {}, np.zeros(0), np.zeros(0), None,
                                loaded=sorted(loaded))

        def on_result(key: tuple[int, int], blk: BlockData) -> None:
            if bstore is not None:
                bstore.save(blk)
            blocks[key] = blk
            result.trained.append(key)
            result.task_seconds[key] = blk.seconds
            result.workers[key] = blk.worker
            if callback is not None:
                done = sum(min(b, K) - a for a, b in blocks)
                callback(blk, done, K)

        with open_client(client if backend == "dask" else None) as cl:
            data = payload
            if cl is not None and _nbytes(payload) > _SCATTER_BYTES:
                data = cl.scatter(payload, broadcast=True, hash=False)
            tasks = [((a, b), (data, a, b, self.mask_rows(a, b))) for a, b in todo]
            run_tasks(train_block, tasks, on_result, client=cl, retries=retries,
                      key_prefix="imod-block")
        merged = merge_blocks(list(blocks.values()), K, reductions)
        result.mask, result.records = merged.mask, merged.records
        result.record_epochs, result.record_updates = merged.record_epochs, merged.record_updates
        result.params = merged.params if self.keep_params else None
        result.trained.sort()
        result.seconds = time.perf_counter() - start
        return result


def _nbytes(payload: _Payload) -> int:
    total = 0
    for a in (payload.X, payload.y, *[(r.X, r.y) for r in payload.recording.recorders]):
        for item in a if isinstance(a, tuple) else (a,):
            if item is not None:
                total += int(getattr(np.asarray(item), "nbytes", 0))
    return total


def train_blocks(
    model: Any,
    X: Any,
    y: Any = None,
    *,
    mask: np.ndarray | MaskFn,
    store: str | Path | None = None,
    backend: str = "local",
    client: Any = None,
    retries: int = 3,
    overwrite: bool = False,
    callback: Callable[[BlockData, int, int], None] | None = None,
    **job: Any,
) -> BlockRunResult:
    """Train K members in blocks (in-process or on Dask) and merge them; see :class:`EnsembleJob`.

    ``**job`` are :class:`EnsembleJob`'s keywords (``n_members``, ``block_size``,
    ``loss``, ``training``, ``placement``, ``recording``, ``keep_params``, ...); the
    others are :meth:`EnsembleJob.run`'s. This is also the generic path for
    block-wise estimators such as memorization scores: give a balanced mask and a
    ``correctness`` recorder, then p_in/p_out are the in-/out-member means of the
    merged correctness.

    Examples
    --------
    >>> import numpy as np
    >>> from imod.engine import StackedMLP, Recorder, correctness, balanced_mask
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 3)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> mask = balanced_mask(8, 40, 0.5, random_state=0)
    >>> res = train_blocks(StackedMLP((3, 8, 2)), X, y, mask=mask, block_size=3,
    ...                    loss="cross_entropy", training=Training(epochs=2),
    ...                    placement=Placement(device="cpu"),
    ...                    recording=Recording([Recorder("c", correctness, reduce="last")]))
    >>> c = res.records["c"]
    >>> p_in = (c * mask).sum(0) / mask.sum(0); p_out = (c * ~mask).sum(0) / (~mask).sum(0)
    >>> (p_in - p_out).shape
    (40,)
    """
    return EnsembleJob(model, X, y, mask=mask, **job).run(
        store, backend=backend, client=client, retries=retries, overwrite=overwrite,
        callback=callback)
