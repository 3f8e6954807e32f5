"""The update loop: one step for all members of a chunk, every tensor op in view.

One update (:meth:`ChunkRun.update_loop`, with the loss in :func:`member_losses`):

1. ``idx = rows[t]``: the shared batch, a row of the schedule's table already
   on the device; ``weights = mask[:, idx]`` is 1 where a row is the member's,
   0 elsewhere and on the padding rows of a short batch.
2. All members run on the batch (one wide matrix product for the first layer,
   batched products after it), under the chosen precision.
3. Per-example losses ``(K, B)``; with ``trim`` each member's largest losses
   get weight 0. Member ``k``'s loss is the weighted mean over its own rows, so
   rows outside its mask never reach its gradient.
4. Gradients of the sum of member losses, then one optimizer step for all
   members; a member with no row in the batch takes no step (a device-side mask
   in the optimizer, not a branch on the host).

Nothing in the loop waits for the device: no ``.item()``, no copy to the host,
no branch on a device value. What the host must decide per update (may the
optimizer use torch's fused step? is trimming one top-k?) is read off the mask
before the loop (:func:`~imod.engine.schedule.batch_flags`). Recordings stay on
the device or go asynchronously into pinned host memory and are read once, at
the end of the chunk. Every batch has the same shape, so with ``compile=True``
the loss and its backward pass are compiled once (:func:`~imod.engine.runtime.maybe_compile`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .losses import LossFn
from .members import Members
from .optim import OptimizerSpec, StackedOptimizer
from .recorders import Recorder, _Store
from .runtime import maybe_compile, precision_context, sync, to_host
from .schedule import Schedule, batch_flags, trim_weights

__all__ = ["ChunkResult", "ChunkRun", "member_losses", "take_rows"]

Params = dict[str, torch.Tensor]


def take_rows(data: torch.Tensor, rows, views: torch.Tensor | None) -> torch.Tensor:
    """``data[rows]``, or each member's own version ``(K, B, ...)`` with views.

    Examples
    --------
    >>> import torch
    >>> data = torch.arange(12.0).view(2, 3, 2)  # V=2 versions of 3 rows
    >>> take_rows(data, torch.tensor([2, 0]), torch.tensor([1, 0, 1])).shape
    torch.Size([3, 2, 2])
    """
    if views is None:
        return data[rows]
    if isinstance(rows, slice):
        return data[:, rows][views]
    # One gather of K x B rows, not a (V, B) copy then a (K, B) one.
    n = data.shape[1]
    flat = (views.unsqueeze(1) * n + rows.unsqueeze(0)).reshape(-1)
    out = data.reshape(-1, *data.shape[2:]).index_select(0, flat)
    return out.view(len(views), len(rows), *data.shape[2:])


def member_losses(
    members: Members,
    loss_fn: LossFn,
    params: Params,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    trim: float,
    all_rows: bool,
    precision: str,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed member losses of one batch, and each member's row count.

    ``weights`` ``(K, B)`` is 1 for a member's own rows; with ``trim`` the
    member's largest losses are dropped first (a selection, not differentiated).
    """
    with precision_context(precision, device):
        outputs = members.forward(params, inputs)
    per_example = loss_fn(outputs.float(), targets)  # (K, B)
    if trim > 0:
        weights = trim_weights(per_example.detach(), weights, trim, all_rows)
    counts = weights.sum(dim=1)
    member_loss = (per_example * weights).sum(dim=1) / counts.clamp_min(1.0)
    return member_loss.sum(), counts


@dataclass
class ChunkResult:
    """What one chunk of members brings back (host tensors, read after the sync)."""

    params: Params
    stores: list[_Store]
    snapshots: list[Params] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ChunkRun:
    """Everything a chunk of members needs; :meth:`train` runs one chunk.

    ``rows`` is the schedule's row table on the training device (uploaded once
    per call of :func:`~imod.engine.train_ensemble`, shared by all chunks).
    """

    members: Members
    loss_fn: LossFn
    spec: OptimizerSpec
    recorders: list[Recorder]
    eval_sets: list[tuple[torch.Tensor, torch.Tensor]]
    schedule: Schedule
    rows: torch.Tensor
    keep_snapshots: bool
    eval_batch_size: int
    precision: str
    device: torch.device
    trim: float = 0.0
    compile: bool = False

    def train(
        self,
        init_params: Params,
        mask: np.ndarray,
        x: torch.Tensor,
        targets: torch.Tensor,
        bar: tqdm,
        views: torch.Tensor | None = None,
    ) -> ChunkResult:
        """Train one chunk of members from ``init_params`` on their ``mask`` rows."""
        dev = self.device
        params = {k: v.to(dev).requires_grad_(True) for k, v in init_params.items()}
        mask_dev = torch.as_tensor(mask, device=dev)
        # Host decisions for every update, read off the mask once (one sync).
        flags = batch_flags(mask_dev, self.rows, self.schedule.real)
        out = ChunkResult(params, [_Store(r.reduce) for r in self.recorders])
        sync(dev)
        start = time.perf_counter()
        self.update_loop(params, mask_dev, flags, x, targets, views, out, bar)
        sync(dev)
        out.seconds = time.perf_counter() - start
        out.params = {k: v.detach().cpu() for k, v in params.items()}
        return out

    def update_loop(
        self,
        params: Params,
        mask: torch.Tensor,
        flags: tuple[np.ndarray, np.ndarray],
        x: torch.Tensor,
        targets: torch.Tensor,
        views: torch.Tensor | None,
        out: ChunkResult,
        bar: tqdm,
    ) -> None:
        """Every update of the chunk, with its recordings; nothing here waits for the device."""
        sched, dev = self.schedule, self.device
        names, leaves = list(params), list(params.values())
        opt = StackedOptimizer(self.spec, params)
        all_active, all_rows = flags
        real, batch = sched.real.tolist(), sched.batch
        losses = maybe_compile(member_losses, self.compile)
        records = list(sched.records)
        while records and records[0][0] == 0:
            self._record(out, records.pop(0), views)
        for t in range(sched.updates):
            idx = self.rows[t]  # (B,) on the device
            weights = mask[:, idx].to(x.dtype)  # (K, B): 1 where the row is the member's
            if real[t] < batch:
                weights[:, real[t] :] = 0.0  # padding rows of a short batch
            loss, counts = losses(
                self.members, self.loss_fn, params, take_rows(x, idx, views),
                take_rows(targets, idx, views), weights, self.trim, bool(all_rows[t]),
                self.precision, dev,
            )  # fmt: skip
            grads = torch.autograd.grad(loss, leaves)
            # A member with no row in the batch (counts == 0) takes no step.
            opt.step(params, dict(zip(names, grads)), counts > 0, bool(all_active[t]))
            bar.update(1)
            while records and records[0][0] == t + 1:
                self._record(out, records.pop(0), views)

    @torch.no_grad()
    def _record(
        self, out: ChunkResult, when: tuple[int, float], views: torch.Tensor | None
    ) -> None:
        """Evaluate every recorder; values stay on the device or go to pinned memory."""
        step = self.eval_batch_size
        for rec, (ex, ey), store in zip(self.recorders, self.eval_sets, out.stores):
            m = ex.shape[0 if views is None else 1]
            with precision_context("ieee", self.device):  # recordings in exact float32
                parts = [
                    rec.fn(
                        self.members.forward(out.params, take_rows(ex, slice(i, i + step), views)),
                        take_rows(ey, slice(i, i + step), views),
                    )
                    for i in range(0, m, step)
                ]
            vals = torch.cat(parts, dim=1)
            if rec.transform is not None:
                vals = rec.transform(vals)
            store.add(vals)
        if self.keep_snapshots:
            out.snapshots.append({k: to_host(v, copy=True) for k, v in out.params.items()})
        out.updates.append(when[0])
        out.epochs.append(when[1])
