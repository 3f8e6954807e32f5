"""Train K small networks at once, each on its own subset of the data.

:func:`train_ensemble` takes four records (:mod:`~imod.engine.spec`): what to
train (:class:`Task`), how (:class:`Training`), where (:class:`Placement`) and
what to record (:class:`Recording`), each checked when it was built. It lays out
the batch schedule (:mod:`~imod.engine.schedule`), sizes chunks of members to
the memory budget (:mod:`~imod.engine.runtime`) and runs the update loop
(:mod:`~imod.engine.loop`) chunk by chunk. A member's initial weights and its
batches depend only on ``random_state``, its global index and its mask row, so
the chunk size never changes the numbers. With ``Task(views=...)``
(autoencoders), ``X`` holds V versions of the same rows and member ``k`` reads
and reconstructs version ``views[k]``: V small ensembles cost about one update
loop instead of V.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .loop import ChunkResult, ChunkRun
from .members import Members, member_state_dict, params_per_member
from .runtime import auto_chunk, auto_eval_rows, resolve_device
from .schedule import Schedule, batch_counts
from .spec import Placement, Recording, Task, Training, as_tensor

__all__ = ["EnsembleResult", "Placement", "Recording", "Task", "Training", "as_tensor",
           "train_ensemble"]

Params = dict[str, torch.Tensor]


@dataclass
class EnsembleResult:
    """What :func:`train_ensemble` returns.

    Attributes
    ----------
    members : StackedMLP or ModuleMembers
        The architecture, to run the trained parameters on new data.
    params : dict of str to Tensor
        Final stacked parameters, ``(K, ...)`` each, on the CPU.
    records : dict of str to ndarray
        One entry per recorder: ``(T, K, n_eval)`` for ``reduce="stack"``,
        ``(K, n_eval)`` otherwise.
    record_epochs : ndarray of shape (T,)
        Epoch (fractional for ``record_every=N`` updates) of each recording.
    record_updates : ndarray of shape (T,)
        Number of updates done at each recording.
    snapshots : list of dict, or None
        Stacked parameters at every recording, when ``keep_snapshots=True``.
    mask : ndarray of shape (K, n)
        The membership mask used.
    seconds : float
        Wall time of the whole call.
    train_seconds : float
        Time in the update loops (with recordings), without initialization,
        data transfer and result collection.
    chunk_size : int
        Members trained together.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from imod.engine import StackedMLP
    >>> X = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    >>> res = train_ensemble(Task(StackedMLP((3, 2, 3)), X, n_members=2), Training(epochs=1),
    ...                      Placement(device="cpu"))
    >>> res.n_members, res.params["0.weight"].shape, res.mask.shape
    (2, torch.Size([2, 2, 3]), (2, 40))
    >>> out = res.forward(X)  # (K, n, n_outputs)
    >>> out.shape
    torch.Size([2, 40, 3])
    >>> member = res.member_module(1)  # a plain torch.nn.Sequential
    >>> with torch.no_grad():
    ...     torch.allclose(member(torch.as_tensor(X)), out[1], atol=1e-6)
    True
    """

    members: Members
    params: Params
    records: dict[str, np.ndarray]
    record_epochs: np.ndarray
    record_updates: np.ndarray
    snapshots: list[Params] | None
    mask: np.ndarray
    seconds: float = 0.0
    train_seconds: float = 0.0
    chunk_size: int = 0

    @property
    def n_members(self) -> int:
        return int(self.mask.shape[0])

    def forward(
        self,
        X,
        params: Params | None = None,
        batch_size: int = 4096,
        device: str | torch.device = "cpu",
    ) -> torch.Tensor:
        """Outputs ``(K, n, ...)`` of every member on ``X`` (no gradients)."""
        x = as_tensor(X, "X")
        p = self.params if params is None else params
        dev = resolve_device(device)
        p = {k: v.to(dev) for k, v in p.items()}
        with torch.no_grad():
            outs = [
                self.members.forward(p, x[i : i + batch_size].to(dev)).cpu()
                for i in range(0, x.shape[0], batch_size)
            ]
        return torch.cat(outs, dim=1)

    def member_module(self, k: int) -> nn.Module:
        """Member ``k`` as a standalone ``torch.nn.Module``."""
        module = self.members.module()
        module.load_state_dict(member_state_dict(self.params, k))
        return module


def train_ensemble(
    task: Task,
    training: Training | None = None,
    placement: Placement | None = None,
    recording: Recording | None = None,
) -> EnsembleResult:
    """Train an ensemble of K networks, each on its own rows of ``task.X``.

    Each member runs a proper epoch over its own rows (its mask row), in
    batches of ``training.batch_size`` rows of its own, as it would trained
    alone (:func:`~imod.engine.reference.train_one_by_one` is that loop).

    Parameters
    ----------
    task : Task
        What to train: architecture, data, mask, loss, views, first member.
    training : Training, optional
        How: optimizer, epochs, batch size, seed, initialization, trimming.
    placement : Placement, optional
        Where: device, precision, chunk size, compilation, progress bar.
    recording : Recording, optional
        What to measure during training, and when.

    Returns
    -------
    EnsembleResult

    Examples
    --------
    >>> import numpy as np
    >>> from imod.engine import StackedMLP, Recorder, per_example_loss
    >>> X = np.random.default_rng(0).normal(size=(100, 5)).astype("float32")
    >>> res = train_ensemble(Task(StackedMLP((5, 3, 5)), X, n_members=4), Training(epochs=3),
    ...                      Placement(device="cpu"),
    ...                      Recording([Recorder("loss", per_example_loss("mse"))]))
    >>> res.records["loss"].shape
    (3, 4, 100)
    """
    start_time = time.perf_counter()
    training, placement = training or Training(), placement or Placement()
    recording = recording or Recording()
    dev = placement.torch_device
    moved: dict[int, torch.Tensor] = {}  # each tensor moved once: shared inputs stay shared
    eval_sets = [(moved.setdefault(id(ex), ex.to(dev)), moved.setdefault(id(ey), ey.to(dev)))
                 for ex, ey in task.eval_sets(recording.recorders)]
    schedule = Schedule.build(training.random_state, training.epochs, task.n_samples,
                              int(task.mask.sum(axis=1).max()), training.batch_size,
                              recording.every, recording.initial)
    chunk, eval_rows = _chunk_sizes(task, placement, schedule.batch, dev)
    widths = None if task.mask.all() else batch_counts(
        task.mask.sum(axis=1), schedule.batch, schedule.steps_per_epoch).max(axis=1)
    run = ChunkRun(
        members=task.members, loss_fn=task.loss_fn, spec=training.optimizer,
        recorders=list(recording.recorders), eval_sets=eval_sets, schedule=schedule,
        orders=torch.as_tensor(schedule.orders, device=dev), n_samples=task.n_samples,
        keep_snapshots=recording.keep_snapshots, eval_batch_size=eval_rows,
        precision=placement.precision, device=dev, trim=training.trim,
        compile=bool(placement.compile), widths=widths,
    )  # fmt: skip
    x_dev, t_dev = task.X.to(dev), task.targets.to(dev)
    n_total = task.n_members
    bar = tqdm(total=math.ceil(n_total / chunk) * schedule.updates, disable=not placement.progress,
               desc="training ensemble", unit="update", leave=False)
    chunks = []
    for c0 in range(0, n_total, chunk):
        c1 = min(c0 + chunk, n_total)
        seeds = range(task.first_member + c0, task.first_member + c1)
        init = task.members.init(training.random_state, seeds, training.init, training.init_scale)
        views = None if task.views is None else torch.as_tensor(task.views[c0:c1], device=dev)
        chunks.append(run.train(init, task.mask[c0:c1], x_dev, t_dev, bar, views))
    bar.close()
    result = _collect(task, recording, chunks)
    result.seconds, result.chunk_size = time.perf_counter() - start_time, chunk
    return result


def _chunk_sizes(task: Task, placement: Placement, batch: int,
                 device: torch.device) -> tuple[int, int]:
    """Members per chunk and rows per recording pass, from the memory budget."""
    per_member = params_per_member(task.members)
    chunk = placement.chunk_size
    if chunk == "auto":
        chunk = auto_chunk(task.members, per_member, batch, device, own_rows=not task.mask.all())
    chunk = min(int(chunk), task.n_members)
    rows = auto_eval_rows(task.members, per_member, chunk, device, placement.eval_batch_size)
    return chunk, rows


def _collect(task: Task, recording: Recording, chunks: list[ChunkResult]) -> EnsembleResult:
    """One result from the chunks' parameters, recordings and snapshots."""
    final = {k: torch.cat([c.params[k] for c in chunks]) for k in chunks[0].params}
    records = {}
    for i, rec in enumerate(recording.recorders):
        parts = [c.stores[i].result() for c in chunks]
        records[rec.name] = np.concatenate(parts, axis=1 if rec.reduce == "stack" else 0)
    snapshots = None
    if recording.keep_snapshots:
        snapshots = [
            {k: torch.cat([c.snapshots[t][k] for c in chunks]) for k in final}
            for t in range(len(chunks[0].snapshots))
        ]
    return EnsembleResult(
        members=task.members,
        params=final,
        records=records,
        record_epochs=np.asarray(chunks[0].epochs, dtype=float),
        record_updates=np.asarray(chunks[0].updates, dtype=int),
        snapshots=snapshots,
        mask=task.mask,
        train_seconds=sum(c.seconds for c in chunks),
    )
