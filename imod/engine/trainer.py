"""Train K small networks at once, each on its own subset of the data.

The whole schedule in one place (see :func:`train_ensemble`):

1. Every epoch draws one permutation of all examples from ``random_state``.
   It is cut into *shared* batches of ``ceil(batch_size / mean rate)`` rows, so a
   member whose mask holds a fraction ``r`` of the data sees about
   ``batch_size`` of its own examples per update.
2. All members run on the shared batch (one wide matrix product for the first
   layer). Member ``k``'s loss is the mean over the rows of the batch that are
   in its mask: rows outside the mask are multiplied by zero, so they never
   reach its gradient. A member with no rows in a batch takes no step. With
   ``trim > 0`` each member also leaves out the largest ``floor(trim * rows)``
   of its own losses in the batch (a trimmed loss).
4. With ``views`` (autoencoders), ``X`` holds V versions of the same rows, e.g.
   under V feature scalings, and member ``k`` reads and reconstructs version
   ``views[k]``: the batch order, the masks and every update stay shared, so
   V small ensembles cost about one update loop instead of V.
3. Recorders run after every epoch (or every N updates) on their evaluation sets.

Members are processed in chunks that fit a memory budget; a member's initial
weights and the batch order depend only on ``random_state`` and the member's
index, so the chunk size never changes the numbers.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._runtime import resolve_device
from .init import InitHook, check_init
from .losses import LossFn, get_loss
from .masks import validate_mask
from .members import Members, ModuleMembers, StackedMLP, make_members, member_state_dict
from .optim import OptimizerSpec, StackedOptimizer
from .recorders import Recorder, _Store

__all__ = [
    "PRECISIONS",
    "EnsembleResult",
    "as_tensor",
    "batch_order",
    "precision_context",
    "shared_batch_size",
    "resolve_device",
    "train_ensemble",
    "trim_weights",
]

Params = dict[str, torch.Tensor]


def as_tensor(data, name: str, *, integer: bool = False) -> torch.Tensor:
    """Convert inputs/targets to a tensor, refusing NaN/inf and empty data.

    Examples
    --------
    >>> as_tensor([[1, 2], [3, 4]], "X").dtype
    torch.float32
    >>> as_tensor([0.0, 1.0, 1.0], "y", integer=True)
    tensor([0, 1, 1])
    >>> as_tensor([[1.0, float("nan")]], "X")
    Traceback (most recent call last):
    ...
    ValueError: X contains 1 NaN or infinite value(s)
    """
    t = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    if t.ndim == 0 or t.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one example")
    if integer:
        if t.is_floating_point():
            if not torch.equal(t, t.round()):
                raise ValueError(f"{name} must hold integer class labels")
        return t.long()
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return t.to(torch.float32)


PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Matrix-product precision for a training run.

    ``"tf32"`` lets CUDA matrix products use TensorFloat-32; ``"bf16"`` runs the
    forward pass under bfloat16 autocast. Parameters, gradients and optimizer
    state stay float32 in every mode.

    Examples
    --------
    >>> import torch
    >>> cpu = torch.device("cpu")
    >>> with precision_context("fp32", cpu):
    ...     a = torch.ones(2, 2) @ torch.ones(2, 2)
    >>> with precision_context("bf16", cpu):
    ...     b = torch.ones(2, 2) @ torch.ones(2, 2)
    >>> a.dtype, b.dtype
    (torch.float32, torch.bfloat16)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "fp32":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        if precision == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def shared_batch_size(batch_size: int, rate: float, n_samples: int) -> int:
    """Rows of a shared batch, so each member sees about ``batch_size`` of its own.

    ``ceil(batch_size / rate)`` rounded up to a multiple of 8 when that changes
    it (matrix units run best on such sizes), and at most ``n_samples``.

    Examples
    --------
    >>> shared_batch_size(64, rate=1.0, n_samples=1000)
    64
    >>> shared_batch_size(64, rate=0.7, n_samples=1000)  # ceil(64 / 0.7) = 92, rounded up to 96
    96
    >>> shared_batch_size(64, rate=0.5, n_samples=100)  # never more rows than the data
    100
    """
    rows = math.ceil(batch_size / rate)
    if rows != batch_size:
        rows = 8 * math.ceil(rows / 8)
    return min(n_samples, rows)


def batch_order(random_state: int | None, epoch: int, n_samples: int) -> np.ndarray:
    """The permutation of examples for one epoch (shared by all members).

    Examples
    --------
    >>> order = batch_order(0, epoch=0, n_samples=10)
    >>> sorted(order.tolist()) == list(range(10))
    True
    >>> bool((order == batch_order(0, 0, 10)).all()), bool((order == batch_order(0, 1, 10)).all())
    (True, False)
    """
    seed = [0 if random_state is None else int(random_state), int(epoch)]
    return np.random.default_rng(seed).permutation(n_samples)


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
        Number of shared batches processed at each recording.
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
    >>> X = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    >>> res = train_ensemble(StackedMLP((3, 2, 3)), X, n_members=2, epochs=1, device="cpu")
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory_budget(device: torch.device) -> int:
    """Bytes one chunk may use: 2 GiB on the CPU, half the free GPU memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.5 * free)
    return 2 * 1024**3


def _activation_width(members: Members, params_per_member: int) -> int:
    """Floats of activation per example and member (a bound for unknown modules)."""
    if isinstance(members, StackedMLP):
        return sum(members.sizes[1:])
    return 4 * params_per_member


def _auto_chunk(
    members: Members, params_per_member: int, batch_rows: int, device: torch.device
) -> int:
    """Members per chunk so that training one chunk stays within the budget."""
    width = _activation_width(members, params_per_member)
    # Parameters, gradients, two optimizer moments and a contiguous gradient
    # copy; activations kept for backward (pre/post activation and gradient).
    per_member = 4 * (6 * params_per_member + 3 * width * batch_rows)
    return max(1, _memory_budget(device) // per_member)


def _auto_eval_rows(
    members: Members, params_per_member: int, n_members: int, device: torch.device, cap: int
) -> int:
    """Rows per recording pass so that K members' activations fit a quarter budget."""
    width = _activation_width(members, params_per_member)
    rows = _memory_budget(device) // (4 * 4 * 2 * width * n_members)
    return int(min(cap, max(16, rows)))


def trim_weights(
    losses: torch.Tensor, weights: torch.Tensor, fraction: float, all_rows: bool | None = None
) -> torch.Tensor:
    """Zero each member's ``floor(fraction * rows)`` largest losses in a batch.

    ``losses`` and ``weights`` are ``(K, B)``; ``weights`` is 1 where the row is
    in the member's mask. The rows dropped are the largest among the member's
    own rows, and at least one row is kept whenever ``fraction < 1``.
    ``all_rows=True`` says every member has every row of the batch (the trainer
    knows it on the host, which spares a device sync); ``None`` checks.

    Examples
    --------
    >>> import torch
    >>> losses = torch.tensor([[1.0, 5.0, 2.0, 9.0], [1.0, 5.0, 2.0, 9.0]])
    >>> weights = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    >>> trim_weights(losses, weights, 0.5)  # member 1 drops one of its 3 rows
    tensor([[1., 0., 1., 0.],
            [1., 0., 1., 0.]])
    """
    if all_rows is None:
        all_rows = bool((weights > 0).all())
    if all_rows:
        # Every member has every row (the common case): one top-k, no ranking.
        k = math.floor(losses.shape[1] * fraction)
        if k == 0:
            return weights
        return weights.scatter(1, losses.topk(k, dim=1).indices, 0.0)
    # float64, so that floor() agrees with the host's math.floor above
    n_drop = torch.floor(weights.sum(dim=1, keepdim=True).double() * fraction)
    own = torch.where(weights > 0, losses, torch.full_like(losses, -math.inf))
    rank = own.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = largest
    return weights * (rank >= n_drop).to(weights.dtype)


def _check_views(views, x: torch.Tensor, y, members: Members) -> np.ndarray:
    """Validate the member -> version map of ``train_ensemble(..., views=...)``."""
    if y is not None:
        raise ValueError("views are for autoencoders: y must be None")
    if not isinstance(members, StackedMLP):
        raise ValueError("views need a StackedMLP model (members with their own inputs)")
    if x.ndim != 3:
        raise ValueError(f"with views, X must have shape (V, n, d), got {tuple(x.shape)}")
    arr = np.asarray(views)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("views must be a 1-D array of integers, one per member")
    if arr.min() < 0 or arr.max() >= x.shape[0]:
        raise ValueError(f"views must index the {x.shape[0]} versions of X (0..{x.shape[0] - 1})")
    return arr.astype(np.int64)


@dataclass
class _ChunkResult:
    params: Params
    stores: list[_Store]
    snapshots: list[Params]
    epochs: list[float]
    updates: list[int]
    seconds: float = 0.0


@dataclass
class _ChunkRun:
    """Everything a chunk of members needs; :meth:`train` runs one chunk."""

    members: Members
    loss_fn: LossFn
    spec: OptimizerSpec
    recorders: list[Recorder]
    eval_sets: list[tuple[torch.Tensor, torch.Tensor]]
    epochs: int
    shared_batch: int
    steps_per_epoch: int
    record_every: str | int
    record_initial: bool
    keep_snapshots: bool
    eval_batch_size: int
    precision: str
    device: torch.device
    orders: list[np.ndarray]
    trim: float = 0.0

    @staticmethod
    def _rows(data: torch.Tensor, rows, views: torch.Tensor | None) -> torch.Tensor:
        """``data[rows]``, or each member's own version ``(K, B, ...)`` with views."""
        if views is None:
            return data[rows]
        if isinstance(rows, slice):
            return data[:, rows][views]
        # One gather of K x B rows, not a (V, B) copy then a (K, B) one.
        n = data.shape[1]
        flat = (views.unsqueeze(1) * n + rows.unsqueeze(0)).reshape(-1)
        out = data.reshape(-1, *data.shape[2:]).index_select(0, flat)
        return out.view(len(views), len(rows), *data.shape[2:])

    def train(
        self,
        init_params: Params,
        mask: np.ndarray,
        x: torch.Tensor,
        targets: torch.Tensor,
        bar: tqdm,
        views: torch.Tensor | None = None,
    ) -> _ChunkResult:
        params = {k: v.to(self.device).requires_grad_(True) for k, v in init_params.items()}
        opt = StackedOptimizer(self.spec, params)
        mask_dev = torch.as_tensor(mask, device=self.device)
        out = _ChunkResult(params, [_Store(r.reduce) for r in self.recorders], [], [], [])
        updates = 0
        if self.record_initial:
            self._record(out, 0.0, 0, views)
        _sync(self.device)
        start = time.perf_counter()
        for epoch in range(self.epochs):
            order = self.orders[epoch]
            for s in range(self.steps_per_epoch):
                idx_np = order[s * self.shared_batch : (s + 1) * self.shared_batch]
                idx = torch.as_tensor(idx_np, device=self.device)
                weights = mask_dev[:, idx].to(x.dtype)  # (K, B): 1 where in the member
                counts = weights.sum(dim=1)
                # Known on the host, so the optimizer needs no device sync.
                in_mask = mask[:, idx_np]
                all_active = bool(in_mask.any(axis=1).all())
                with precision_context(self.precision, self.device):
                    outputs = self.members.forward(params, self._rows(x, idx, views))
                    per_example = self.loss_fn(outputs.float(), self._rows(targets, idx, views))
                if self.trim > 0:
                    # Which rows are dropped is a selection, not a function to differentiate.
                    weights = trim_weights(
                        per_example.detach(), weights, self.trim, bool(in_mask.all())
                    )
                    counts = weights.sum(dim=1)
                member_loss = (per_example * weights).sum(dim=1) / counts.clamp_min(1.0)
                grads = torch.autograd.grad(member_loss.sum(), list(params.values()))
                opt.step(params, dict(zip(params.keys(), grads)), counts > 0, all_active)
                updates += 1
                bar.update(1)
                if isinstance(self.record_every, int) and updates % self.record_every == 0:
                    self._record(out, epoch + (s + 1) / self.steps_per_epoch, updates, views)
            if self.record_every == "epoch":
                self._record(out, float(epoch + 1), updates, views)
        if self.record_every == "end":
            self._record(out, float(self.epochs), updates, views)
        _sync(self.device)
        out.seconds = time.perf_counter() - start
        out.params = {k: v.detach().cpu() for k, v in params.items()}
        return out

    @torch.no_grad()
    def _record(
        self, out: _ChunkResult, epoch_pos: float, updates: int, views: torch.Tensor | None
    ) -> None:
        step = self.eval_batch_size
        for rec, (ex, ey), store in zip(self.recorders, self.eval_sets, out.stores):
            m = ex.shape[0 if views is None else 1]
            parts = [
                rec.fn(
                    self.members.forward(out.params, self._rows(ex, slice(i, i + step), views)),
                    self._rows(ey, slice(i, i + step), views),
                )
                for i in range(0, m, step)
            ]
            vals = torch.cat(parts, dim=1)
            if rec.transform is not None:
                vals = rec.transform(vals)
            store.add(vals.float().cpu().numpy())
        if self.keep_snapshots:
            out.snapshots.append({k: v.detach().cpu().clone() for k, v in out.params.items()})
        out.epochs.append(epoch_pos)
        out.updates.append(updates)


def train_ensemble(
    model: StackedMLP | ModuleMembers | Callable[[], nn.Module],
    X,
    y=None,
    *,
    mask: np.ndarray | None = None,
    n_members: int | None = None,
    loss: str | LossFn = "mse",
    optimizer: OptimizerSpec | str | dict = "adam",
    epochs: int = 10,
    batch_size: int = 64,
    random_state: int | None = 0,
    init: str | InitHook = "default",
    init_scale: float = 1.0,
    recorders: Sequence[Recorder] = (),
    record_every: str | int = "epoch",
    record_initial: bool = False,
    keep_snapshots: bool = False,
    chunk_size: int | str = "auto",
    first_member: int = 0,
    rate: float | None = None,
    trim: float = 0.0,
    views: np.ndarray | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    eval_batch_size: int = 8192,
    progress: bool = False,
) -> EnsembleResult:
    """Train an ensemble of K networks, each on its own subset of ``X``.

    Parameters
    ----------
    model : StackedMLP, ModuleMembers, or callable
        Member architecture. A :class:`StackedMLP` takes the fast path; any
        ``torch.nn.Module`` factory takes the ``torch.func`` path.
    X : array-like of shape (n, ...)
        Training inputs.
    y : array-like of shape (n, ...), optional
        Targets. ``None`` trains an autoencoder (targets are the inputs).
    mask : ndarray of shape (K, n), optional
        ``mask[k, i]`` is True when member ``k`` trains on example ``i``. See
        :func:`~imod.engine.masks.balanced_mask` and friends. Defaults to all
        examples for ``n_members`` members.
    n_members : int, optional
        K, when no mask is given.
    loss : {"mse", "cross_entropy", "bce"} or callable
        Per-example loss ``(outputs (K, B, ...), targets (B, ...)) -> (K, B)``.
    optimizer : OptimizerSpec, str or dict
        E.g. ``"adam"`` or ``OptimizerSpec("sgd", lr=0.1, momentum=0.9)``.
    epochs : int
        Passes over the data.
    batch_size : int
        Examples of its own per member per update (on average).
    random_state : int or None
        Seeds the initialization and the batch order.
    init, init_scale
        Initialization scheme and weight scale; see :mod:`imod.engine.init`.
    recorders : sequence of Recorder
        What to measure during training.
    record_every : "epoch", "end" or int
        Record after each epoch, once after training, or every N updates.
    record_initial : bool
        Also record before the first update.
    keep_snapshots : bool
        Keep the stacked parameters at every recording (on the CPU).
    chunk_size : "auto" or int
        Members trained together; ``"auto"`` fits a memory budget (2 GiB on
        the CPU, half the free memory on a GPU).
    first_member : int
        Global index of the first member (row 0 of the mask). Member ``k`` is
        seeded from ``(random_state, first_member + k)``, so an ensemble trained
        in blocks (to resume, extend, or spread over workers) gets exactly the
        numbers of one run over all members.
    rate : float, optional
        Mean fraction of the data in a member's mask (sets the shared batch
        size); defaults to the mask's mean.
    trim : float in [0, 1), default=0.0
        Trimmed loss: in every update each member leaves out the
        ``floor(trim * rows)`` rows of its own with the largest loss. The rows
        a network cannot yet fit (outliers, mislabelled examples) then never
        pull on it, however long it trains. 0 uses every row.
    views : ndarray of int of shape (K,), optional
        Autoencoders (``y=None``) with a :class:`StackedMLP` only. ``X`` then has
        shape ``(V, n, d)``: V versions of the same n rows (for example under V
        feature scalings), and member ``k`` reads and reconstructs
        ``X[views[k]]``; so do recorders, whose ``X`` must then be ``(V, m, d)``.
        All members still share one batch order and one update loop.
    device : "auto", "cpu", "cuda" or torch.device
    precision : {"fp32", "tf32", "bf16"}
        Matrix-product precision (see :func:`precision_context`); the speed-ups
        are on GPUs, and recordings are always taken in float32.
    eval_batch_size : int
        Most rows per forward pass when recording (fewer when K members'
        activations would not fit the memory budget).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    EnsembleResult

    Examples
    --------
    >>> import numpy as np
    >>> from imod.engine import StackedMLP, Recorder, per_example_loss, train_ensemble
    >>> X = np.random.default_rng(0).normal(size=(100, 5)).astype("float32")
    >>> res = train_ensemble(StackedMLP((5, 3, 5)), X, n_members=4, epochs=3,
    ...                      recorders=[Recorder("loss", per_example_loss("mse"))],
    ...                      device="cpu")
    >>> res.records["loss"].shape
    (3, 4, 100)
    """
    start_time = time.perf_counter()
    members = make_members(model)
    x = as_tensor(X, "X")
    n = x.shape[0]
    loss_fn = get_loss(loss)
    if views is not None:
        views = _check_views(views, x, y, members)
        n = x.shape[1]
    if y is None:
        targets = x
    else:
        classify = loss == "cross_entropy"
        targets = as_tensor(y, "y", integer=classify)
        if targets.shape[0] != n:
            raise ValueError(f"X has {n} examples but y has {targets.shape[0]}")
    if mask is None and n_members is None and views is not None:
        n_members = len(views)
    if mask is None:
        if n_members is None:
            raise ValueError("give either a mask (K x n), n_members or views")
        if not isinstance(n_members, (int, np.integer)) or n_members < 1:
            raise ValueError(f"n_members must be an integer >= 1 (K >= 1), got {n_members!r}")
        mask = np.ones((int(n_members), n), dtype=bool)
    else:
        mask = validate_mask(mask, n)
        if n_members is not None and n_members != mask.shape[0]:
            raise ValueError(f"n_members={n_members} but the mask has {mask.shape[0]} rows")
    n_total = mask.shape[0]
    if views is not None and len(views) != n_total:
        raise ValueError(f"views has {len(views)} entries but there are {n_total} members")
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if record_every not in ("epoch", "end") and not (
        isinstance(record_every, int) and record_every >= 1
    ):
        raise ValueError(
            f"record_every must be 'epoch', 'end' or a positive int, got {record_every!r}"
        )
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    check_init(init, init_scale)
    if isinstance(trim, bool) or not isinstance(trim, (int, float)) or not 0.0 <= trim < 1.0:
        raise ValueError(f"trim must be a number in [0, 1), got {trim!r}")
    spec = OptimizerSpec.coerce(optimizer)
    dev = resolve_device(device)
    names = [r.name for r in recorders]
    if len(set(names)) != len(names):
        raise ValueError(f"recorder names must be unique, got {names}")

    # Evaluation sets, converted and checked once.
    eval_sets = []
    for rec in recorders:
        ex = x if rec.X is None else as_tensor(rec.X, f"recorder {rec.name!r} X")
        if views is not None and (ex.ndim != x.ndim or ex.shape[0] != x.shape[0]):
            raise ValueError(
                f"recorder {rec.name!r}: with views, X must have shape (V={x.shape[0]}, m, ...)"
            )
        if rec.y is not None:
            ey = as_tensor(rec.y, f"recorder {rec.name!r} y", integer=targets.dtype == torch.long)
        elif rec.X is None:
            ey = targets
        elif y is None:
            ey = ex
        else:
            raise ValueError(f"recorder {rec.name!r} has X but no y for a supervised model")
        if ey.shape[0] != ex.shape[0] or (views is not None and ey.shape != ex.shape):
            raise ValueError(f"recorder {rec.name!r}: X and y lengths differ")
        eval_sets.append((ex.to(dev), ey.to(dev)))

    if rate is None:
        rate = float(mask.mean())
    elif not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate!r}")
    shared_batch = shared_batch_size(batch_size, rate, n)
    steps_per_epoch = math.ceil(n / shared_batch)

    if not isinstance(first_member, (int, np.integer)) or first_member < 0:
        raise ValueError(f"first_member must be a non-negative integer, got {first_member!r}")
    probe = members.init(random_state, range(0, 1), init, init_scale)
    params_per_member = sum(t[0].numel() for t in probe.values())
    if chunk_size == "auto":
        chunk = _auto_chunk(members, params_per_member, shared_batch, dev)
    elif isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1:
        chunk = int(chunk_size)
    else:
        raise ValueError(f"chunk_size must be 'auto' or a positive int, got {chunk_size!r}")
    chunk = min(chunk, n_total)
    eval_rows = _auto_eval_rows(members, params_per_member, chunk, dev, eval_batch_size)

    x_dev, t_dev = x.to(dev), targets.to(dev)
    run = _ChunkRun(
        members=members,
        loss_fn=loss_fn,
        spec=spec,
        recorders=list(recorders),
        eval_sets=eval_sets,
        epochs=epochs,
        shared_batch=shared_batch,
        steps_per_epoch=steps_per_epoch,
        record_every=record_every,
        record_initial=record_initial,
        keep_snapshots=keep_snapshots,
        eval_batch_size=eval_rows,
        precision=precision,
        device=dev,
        orders=[batch_order(random_state, e, n) for e in range(epochs)],
        trim=float(trim),
    )
    n_chunks = math.ceil(n_total / chunk)
    bar = tqdm(
        total=n_chunks * epochs * steps_per_epoch,
        disable=not progress,
        desc="training ensemble",
        unit="update",
        leave=False,
    )
    chunks = []
    for c0 in range(0, n_total, chunk):
        c1 = min(c0 + chunk, n_total)
        seeds = range(first_member + c0, first_member + c1)
        init_params = members.init(random_state, seeds, init, init_scale)
        chunk_views = None if views is None else torch.as_tensor(views[c0:c1], device=dev)
        chunks.append(run.train(init_params, mask[c0:c1], x_dev, t_dev, bar, chunk_views))
    bar.close()
    rec_epochs, rec_updates = chunks[0].epochs, chunks[0].updates

    final = {k: torch.cat([c.params[k] for c in chunks]) for k in chunks[0].params}
    records = {}
    for i, rec in enumerate(recorders):
        parts = [c.stores[i].result() for c in chunks]
        records[rec.name] = np.concatenate(parts, axis=1 if rec.reduce == "stack" else 0)
    snapshots = None
    if keep_snapshots:
        snapshots = [
            {k: torch.cat([c.snapshots[t][k] for c in chunks]) for k in final}
            for t in range(len(chunks[0].snapshots))
        ]
    return EnsembleResult(
        members=members,
        params=final,
        records=records,
        record_epochs=np.asarray(rec_epochs, dtype=float),
        record_updates=np.asarray(rec_updates, dtype=int),
        snapshots=snapshots,
        mask=mask,
        seconds=time.perf_counter() - start_time,
        train_seconds=sum(c.seconds for c in chunks),
        chunk_size=chunk,
    )
