"""Train K small networks at once, each on its own subset of the data.

:func:`train_ensemble` checks its arguments once, lays out the batch schedule
(:mod:`~imod.engine.schedule`), sizes chunks of members to the memory budget
(:mod:`~imod.engine.runtime`) and runs the update loop (:mod:`~imod.engine.loop`)
chunk by chunk. A member's initial weights and the batch order depend only on
``random_state`` and the member's index, so the chunk size never changes the
numbers. With ``views`` (autoencoders), ``X`` holds V versions of the same rows,
e.g. under V feature scalings, and member ``k`` reads and reconstructs version
``views[k]``: the batch order, the masks and every update stay shared, so V
small ensembles cost about one update loop instead of V.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .init import InitHook, check_init
from .loop import ChunkRun
from .losses import LossFn, get_loss
from .masks import validate_mask
from .members import Members, ModuleMembers, StackedMLP, make_members, member_state_dict
from .optim import OptimizerSpec
from .recorders import Recorder
from .runtime import PRECISIONS, auto_chunk, auto_eval_rows, resolve_device
from .schedule import Schedule, shared_batch_size

__all__ = ["EnsembleResult", "as_tensor", "train_ensemble"]

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
    compile: bool = False,
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
    precision : {"fp32", "ieee", "tf32", "bf16"}
        Matrix-product precision (see :mod:`imod.engine.runtime`). Parameters
        are float32 in every mode, and so is the optimizer state unless
        ``OptimizerSpec(state_precision="bf16")`` asks for bfloat16 Adam
        moments. ``"fp32"`` runs CUDA products in TF32 (``"ieee"`` turns that
        off); ``"bf16"`` trains under bfloat16 autocast (with bfloat16 moments,
        the low-memory path). Recordings are always taken in float32.
    compile : bool, default=False
        Compile the loss and its backward pass with ``torch.compile`` (every
        batch has the same shape, so once per chunk); falls back to eager
        execution with a warning where compilation is unavailable.
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
    if not isinstance(compile, (bool, np.bool_)):
        raise ValueError(f"compile must be True or False, got {compile!r}")
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
    schedule = Schedule.build(random_state, epochs, n, shared_batch, record_every, record_initial)

    if not isinstance(first_member, (int, np.integer)) or first_member < 0:
        raise ValueError(f"first_member must be a non-negative integer, got {first_member!r}")
    probe = members.init(random_state, range(0, 1), init, init_scale)
    params_per_member = sum(t[0].numel() for t in probe.values())
    if chunk_size == "auto":
        chunk = auto_chunk(members, params_per_member, shared_batch, dev)
    elif isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1:
        chunk = int(chunk_size)
    else:
        raise ValueError(f"chunk_size must be 'auto' or a positive int, got {chunk_size!r}")
    chunk = min(chunk, n_total)
    eval_rows = auto_eval_rows(members, params_per_member, chunk, dev, eval_batch_size)

    x_dev, t_dev = x.to(dev), targets.to(dev)
    run = ChunkRun(
        members=members,
        loss_fn=loss_fn,
        spec=spec,
        recorders=list(recorders),
        eval_sets=eval_sets,
        schedule=schedule,
        rows=torch.as_tensor(schedule.rows, device=dev),
        keep_snapshots=keep_snapshots,
        eval_batch_size=eval_rows,
        precision=precision,
        device=dev,
        trim=float(trim),
        compile=compile,
    )
    n_chunks = math.ceil(n_total / chunk)
    bar = tqdm(
        total=n_chunks * schedule.updates,
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
