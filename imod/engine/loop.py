"""The update loop: one step for all members of a chunk, every tensor op in view.

One update (:meth:`ChunkRun.update_loop`, with the loss in :func:`member_losses`):

1. ``idx``: the batch. Where members train on subsets, ``(K, B)`` rows of each
   member's own (:func:`~imod.engine.schedule.own_rows`, once per epoch), so no
   member computes on a row it would mask out; where every member has every
   row, one shared ``(B,)`` batch. With own rows ``B`` is the run's largest
   member's rows at that step (the batch size but at the last steps of an epoch).
   ``weights`` ``(K, B)`` is 1 on real rows and 0 on the padding of a member's
   short or empty last batches.
2. All members run on their batch: batched matrix products over ``(K, B, d)``
   (a shared batch makes the first layer one wide product), under the chosen
   precision.
3. Per-example losses ``(K, B)``; with ``trim`` each member's largest losses
   get weight 0. Member ``k``'s loss is the weighted mean over its real rows.
4. Gradients of the sum of member losses (autograd), then one optimizer step
   for all members; a member with no row in the batch takes no step (a
   device-side mask in the optimizer, not a branch on the host).

Nothing in the loop waits for the device: no ``.item()``, no copy to the host,
no branch on a device value. What the host must decide per update (may the
optimizer use torch's fused step? is trimming one top-k?) is read off the mask
before the loop (:func:`~imod.engine.schedule.batch_flags`), from the members'
row counts. Recordings stay on the device or go asynchronously into pinned host
memory and are read once, at the end of the chunk. Every batch has the same
shape, so with ``compile=True`` the forward pass and loss are compiled once
(:func:`~imod.engine.runtime.maybe_compile`).
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
from .recorders import Recorder, RecorderStore
from .runtime import maybe_compile, precision_context, sync, to_device, to_host
from .schedule import Schedule, batch_counts, batch_flags, own_rows, trim_weights

__all__ = ["ChunkResult", "ChunkRun", "member_losses", "take_rows"]

Params = dict[str, torch.Tensor]


def take_rows(data: torch.Tensor, rows, views: torch.Tensor | None) -> torch.Tensor:
    """``data[rows]`` for shared ``(B,)`` or own ``(K, B)`` rows; with views, each
    member's own version ``(K, B, ...)``.

    Examples
    --------
    >>> import torch
    >>> data = torch.arange(12.0).view(2, 3, 2)  # V=2 versions of 3 rows
    >>> take_rows(data, torch.tensor([2, 0]), torch.tensor([1, 0, 1])).shape
    torch.Size([3, 2, 2])
    >>> take_rows(data, torch.tensor([[2, 0], [1, 1], [0, 0]]), torch.tensor([1, 0, 1]))[1]
    tensor([[2., 3.],
            [2., 3.]])
    """
    if views is None:
        return data[rows]
    if isinstance(rows, slice):
        return data[:, rows][views]
    # One gather of K x B rows, not a (V, B) copy then a (K, B) one.
    n = data.shape[1]
    own = rows if rows.ndim == 2 else rows.unsqueeze(0)
    flat = (views.unsqueeze(1) * n + own).reshape(-1)
    out = data.reshape(-1, *data.shape[2:]).index_select(0, flat)
    return out.view(len(views), rows.shape[-1], *data.shape[2:])


def member_losses(
    members: Members,
    loss_fn: LossFn,
    params: Params,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    trim: float,
    full: bool,
    own: bool,
    precision: str,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed member losses of one batch (for autograd), and each member's rows.

    ``weights`` ``(K, B)`` is 1 on a member's real rows; with ``trim`` the
    member's largest losses are dropped first (a selection, not differentiated).
    ``full`` says every member has ``B`` real rows; ``own`` that ``inputs`` are
    ``(K, B, ...)``, each member's own rows (``targets`` too), not a shared batch.
    """
    with precision_context(precision, device):
        outputs = members.forward(params, inputs, own=own)
    per_example = loss_fn(outputs.float(), targets)  # (K, B)
    if trim > 0:
        weights = trim_weights(per_example.detach(), weights, trim, full)
    counts = weights.sum(dim=1)
    member_loss = (per_example * weights).sum(dim=1) / counts.clamp_min(1.0)
    return member_loss.sum(), counts


@dataclass
class ChunkResult:
    """What one chunk of members brings back (host tensors, read after the sync)."""

    params: Params
    stores: list[RecorderStore]
    snapshots: list[Params] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ChunkRun:
    """Everything a chunk of members needs; :meth:`train` runs one chunk.

    ``orders`` is the schedule's table of epoch permutations on the training
    device (uploaded once per call of :func:`~imod.engine.train_ensemble`).
    """

    members: Members
    loss_fn: LossFn
    spec: OptimizerSpec
    recorders: list[Recorder]
    eval_sets: list[tuple[torch.Tensor, torch.Tensor]]
    schedule: Schedule
    orders: torch.Tensor
    n_samples: int
    keep_snapshots: bool
    eval_batch_size: int
    precision: str
    device: torch.device
    trim: float = 0.0
    compile: bool = False
    #: Rows of each step's batch, ``(steps_per_epoch,)``: where members train on
    #: subsets, the largest member's count at that step over the whole run (the last
    #: steps of an epoch are short), so that a member's shapes, hence its numbers, do
    #: not depend on its chunk; ``batch`` everywhere when every member has every row.
    widths: np.ndarray | None = None

    def train(
        self,
        init_params: Params,
        mask: np.ndarray,
        x: torch.Tensor,
        targets: torch.Tensor,
        bar: tqdm,
        views: torch.Tensor | None = None,
    ) -> ChunkResult:
        """Train one chunk of members from ``init_params`` on their ``mask`` rows.

        One code path for both layouts, chosen by the mask: members that all
        have every row share each batch; otherwise each reads its own rows.
        """
        dev, sched = self.device, self.schedule
        params = {k: v.to(dev).requires_grad_(True) for k, v in init_params.items()}
        # Host decisions for every step of an epoch, read off the row counts.
        counts = batch_counts(mask.sum(axis=1), sched.batch, sched.steps_per_epoch)
        shared = None if mask.all() else torch.as_tensor(mask, device=dev)
        out = ChunkResult(params, [RecorderStore(r.reduce) for r in self.recorders])
        sync(dev)
        start = time.perf_counter()
        self.update_loop(params, shared, counts, x, targets, views, out, bar)
        # Through pinned memory: a plain copy to pageable memory took 0.9 s of a
        # 30-epoch run of 4,000 MLPs 40-256-256-10 on a GPU (1.3 GB of weights).
        out.params = {k: to_host(v) for k, v in params.items()}
        sync(dev)
        out.seconds = time.perf_counter() - start
        return out

    def update_loop(
        self,
        params: Params,
        mask: torch.Tensor | None,
        counts: np.ndarray,
        x: torch.Tensor,
        targets: torch.Tensor,
        views: torch.Tensor | None,
        out: ChunkResult,
        bar: tqdm,
    ) -> None:
        """Every update of the chunk, with its recordings; nothing here waits for the device.

        ``mask`` is the chunk's mask on the device, or None when every member has
        every row (shared batches); ``counts`` ``(steps, K)`` the real rows of
        each member's batch at each step of an epoch.
        """
        sched, dev, n = self.schedule, self.device, self.n_samples
        b, width = sched.batch, sched.steps_per_epoch * sched.batch
        widths = np.full(sched.steps_per_epoch, b) if self.widths is None else self.widths
        names, leaves = list(params), list(params.values())
        opt = StackedOptimizer(self.spec, params)
        active, full = batch_flags(counts, widths)
        real = to_device(counts, dev).unsqueeze(2)  # (steps, K, 1)
        weights = (torch.arange(b, device=dev) < real).to(x.dtype)  # (steps, K, B): 1 = real
        losses = maybe_compile(member_losses, self.compile)
        records, t = list(sched.records), 0
        while records and records[0][0] == 0:
            self._record(out, records.pop(0), views)
        # The TF32 switch for the backward pass too (autograd runs outside the forward's
        # context); bfloat16 autocast wraps only the forward (member_losses).
        with precision_context(self.precision, dev, autocast=False):
            for epoch in range(sched.epochs):
                order = self.orders[epoch]
                # (width,) shared rows, or (K, width): each member's own rows in this order
                table = order[:width] if mask is None else own_rows(mask, order[:n], width)
                for s in range(sched.steps_per_epoch):
                    # A chunk whose members have fewer rows than the run's largest member
                    # has steps where none of them has a row: nothing to compute.
                    if counts[s].any():
                        # (B,) or (K, B), on the device
                        idx = table[..., s * b : s * b + widths[s]]
                        inputs = take_rows(x, idx, views)
                        # an autoencoder's targets are its inputs: gathered once
                        goal = inputs if targets is x else take_rows(targets, idx, views)
                        loss, n_rows = losses(
                            self.members, self.loss_fn, params, inputs, goal,
                            weights[s, :, : widths[s]],
                            self.trim, bool(full[s]), mask is not None, self.precision, dev)
                        grads = dict(zip(names, torch.autograd.grad(loss, leaves)))
                        # A member with no row in the batch (n_rows == 0) takes no step.
                        opt.step(params, grads, n_rows > 0, bool(active[s]), counts[s] > 0)
                    else:
                        opt.idle()
                    bar.update(1)
                    t += 1
                    while records and records[0][0] == t:
                        self._record(out, records.pop(0), views)

    @torch.no_grad()
    def _record(
        self, out: ChunkResult, when: tuple[int, float], views: torch.Tensor | None
    ) -> None:
        """Evaluate every recorder; values stay on the device or go to pinned memory.

        Recorders that read the same inputs share one forward pass.
        """
        step, values = self.eval_batch_size, [None] * len(self.recorders)
        groups: dict[int, list[int]] = {}  # the recorders reading each input tensor
        for j, (ex, _) in enumerate(self.eval_sets):
            groups.setdefault(id(ex), []).append(j)
        for readers in groups.values():
            ex = self.eval_sets[readers[0]][0]
            parts: dict[int, list[torch.Tensor]] = {j: [] for j in readers}
            for i in range(0, ex.shape[0 if views is None else 1], step):
                rows = slice(i, i + step)
                with precision_context("ieee", self.device):  # recordings in exact float32
                    inputs = take_rows(ex, rows, views)
                    outputs = self.members.forward(out.params, inputs)
                    for j in readers:
                        ey = self.eval_sets[j][1]
                        ey = inputs if ey is ex else take_rows(ey, rows, views)
                        parts[j].append(self.recorders[j].fn(outputs, ey))
            for j in readers:
                values[j] = torch.cat(parts[j], dim=1)
        for rec, store, vals in zip(self.recorders, out.stores, values):
            store.add(vals if rec.transform is None else rec.transform(vals))
        if self.keep_snapshots:
            out.snapshots.append({k: to_host(v, copy=True) for k, v in out.params.items()})
        out.updates.append(when[0])
        out.epochs.append(when[1])
