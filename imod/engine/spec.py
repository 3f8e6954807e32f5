"""The four records of a training run: what to train, how, where, and what to record.

:func:`~imod.engine.train_ensemble` takes one of each. Every record checks its own
fields when it is built, so a bad value is refused where it was written, in the
user's words, before any work starts:

* :class:`Task` -- what to train: the member architecture, the data, which rows
  each member trains on (a mask, or ``n_members`` members on every row), the
  loss, and (autoencoders) which version of the data each member reads.
* :class:`Training` -- how: optimizer, epochs, batch size, seeds, initialization,
  trimmed loss.
* :class:`Placement` -- where: device, precision, members per chunk, compilation,
  progress bar.
* :class:`Recording` -- what to record: recorders, when, and whether to keep the
  parameters at each recording.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .init import InitHook, check_init
from .losses import LossFn, get_loss
from .masks import validate_mask
from .members import Members, ModuleMembers, StackedMLP, make_members
from .optim import OptimizerSpec
from .recorders import Recorder
from .runtime import PRECISIONS, resolve_device

__all__ = ["Placement", "Recording", "Task", "Training", "as_tensor"]


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


def _nonnegative_int(value, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)


def _check_views(views, x: torch.Tensor, y, members: Members) -> np.ndarray:
    """Validate the member -> version map of ``Task(views=...)``."""
    if not isinstance(members, StackedMLP):
        raise ValueError("views need a StackedMLP model (members with their own inputs)")
    if x.ndim != 3:
        raise ValueError(f"with views, X must have shape (V, n, d), got {tuple(x.shape)}")
    arr = np.asarray(views)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("views must be a 1-D array of integers, one per member")
    if arr.min() < 0 or arr.max() >= x.shape[0]:
        raise ValueError(f"views must index the {x.shape[0]} versions of X (0..{x.shape[0] - 1})")
    if y is not None and (np.ndim(y) != 3 or tuple(np.shape(y)[:2]) != tuple(x.shape[:2])):
        raise ValueError(f"with views, y must have shape (V, n, d_out) = ({x.shape[0]}, "
                         f"{x.shape[1]}, d_out), got {tuple(np.shape(y))}")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class Task:
    """What to train: K networks, each on its own rows of ``X``.

    Parameters
    ----------
    model : StackedMLP, ModuleMembers, or callable
        Member architecture. A :class:`StackedMLP` takes the fast path; any
        ``torch.nn.Module`` factory takes the ``torch.func`` path. Held as the
        members object after construction.
    X : array-like of shape (n, ...)
        Training inputs (held as a float32 tensor).
    y : array-like of shape (n, ...), optional
        Targets. ``None`` trains an autoencoder (targets are the inputs).
    mask : ndarray of shape (K, n), optional
        ``mask[k, i]`` is True when member ``k`` trains on example ``i`` (see
        :func:`~imod.engine.masks.balanced_mask` and friends). Defaults to every
        row for ``n_members`` members.
    n_members : int, optional
        K, when no mask is given (or the number of ``views``).
    views : ndarray of int of shape (K,), optional
        With a :class:`StackedMLP` only: ``X`` then has shape ``(V, n, d)``, V
        versions of the same rows (e.g. under V feature scalings), and member
        ``k`` reads ``X[views[k]]`` and learns ``y[views[k]]`` (``y`` of shape
        ``(V, n, d_out)``), or reconstructs ``X[views[k]]`` without ``y``; so do
        recorders, whose ``X`` (and ``y``) must then be ``(V, m, ...)``.
    loss : {"mse", "l1", "cross_entropy", "bce"} or callable
        Per-example loss ``(outputs (K, B, ...), targets) -> (K, B)``; targets
        are ``(B, ...)`` when members share a batch and ``(K, B, ...)`` when each
        member has its own rows.
    first_member : int
        Global index of the first member (row 0 of the mask). Member ``k`` is
        seeded from ``(random_state, first_member + k)``, so an ensemble trained
        in blocks (to resume, extend, or spread over workers) gets exactly the
        numbers of one run over all members.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((10, 3), dtype="float32")
    >>> task = Task(StackedMLP((3, 2, 3)), X, n_members=4)
    >>> task.mask.shape, task.n_samples, task.targets is task.X
    ((4, 10), 10, True)
    >>> Task(StackedMLP((3, 2, 3)), X)
    Traceback (most recent call last):
    ...
    ValueError: give either a mask (K x n), n_members or views
    """

    model: StackedMLP | ModuleMembers | Callable[[], nn.Module]
    X: Any
    y: Any = None
    mask: np.ndarray | None = None
    n_members: int | None = None
    views: np.ndarray | None = None
    loss: str | LossFn = "mse"
    first_member: int = 0

    def __post_init__(self) -> None:
        members = make_members(self.model)
        x = as_tensor(self.X, "X")
        get_loss(self.loss)
        views = None if self.views is None else _check_views(self.views, x, self.y, members)
        n = x.shape[0] if views is None else x.shape[1]
        y = None
        if self.y is not None:
            y = as_tensor(self.y, "y", integer=self.loss == "cross_entropy")
            if views is None and y.shape[0] != n:  # with views, _check_views checked it
                raise ValueError(f"X has {n} examples but y has {y.shape[0]}")
        mask = self._mask(n, views)
        if views is not None and len(views) != mask.shape[0]:
            raise ValueError(
                f"views has {len(views)} entries but there are {mask.shape[0]} members")
        first = _nonnegative_int(self.first_member, "first_member")
        for name, value in (("model", members), ("X", x), ("y", y), ("mask", mask),
                            ("n_members", mask.shape[0]), ("views", views),
                            ("first_member", first)):
            object.__setattr__(self, name, value)

    def _mask(self, n: int, views) -> np.ndarray:
        n_members = self.n_members
        if self.mask is None and n_members is None and views is not None:
            n_members = len(views)
        if self.mask is None:
            if n_members is None:
                raise ValueError("give either a mask (K x n), n_members or views")
            if not isinstance(n_members, (int, np.integer)) or n_members < 1:
                raise ValueError(f"n_members must be an integer >= 1 (K >= 1), got {n_members!r}")
            return np.ones((int(n_members), n), dtype=bool)
        mask = validate_mask(self.mask, n)
        if n_members is not None and n_members != mask.shape[0]:
            raise ValueError(f"n_members={n_members} but the mask has {mask.shape[0]} rows")
        return mask

    @property
    def members(self) -> Members:
        return self.model  # type: ignore[return-value]

    @property
    def targets(self) -> torch.Tensor:
        return self.X if self.y is None else self.y

    @property
    def n_samples(self) -> int:
        return int(self.mask.shape[1])

    @property
    def loss_fn(self) -> LossFn:
        return get_loss(self.loss)

    def eval_sets(self, recorders: Sequence[Recorder]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each recorder's ``(X, y)``, converted and checked against this task."""
        x, views, out = self.X, self.views, []
        inputs: dict[int, torch.Tensor] = {}  # one tensor per input array: one forward pass
        for rec in recorders:
            if rec.X is not None and id(rec.X) not in inputs:
                inputs[id(rec.X)] = as_tensor(rec.X, f"recorder {rec.name!r} X")
            ex = x if rec.X is None else inputs[id(rec.X)]
            if views is not None and (ex.ndim != x.ndim or ex.shape[0] != x.shape[0]):
                raise ValueError(
                    f"recorder {rec.name!r}: with views, X must have shape (V={x.shape[0]}, m, ...)"
                )
            if rec.y is not None:
                ey = as_tensor(rec.y, f"recorder {rec.name!r} y",
                               integer=self.targets.dtype == torch.long)
            elif rec.X is None:
                ey = self.targets
            elif self.y is None:
                ey = ex
            else:
                raise ValueError(f"recorder {rec.name!r} has X but no y for a supervised model")
            if ey.shape[0] != ex.shape[0] or (views is not None and ey.shape[:2] != ex.shape[:2]):
                raise ValueError(f"recorder {rec.name!r}: X and y lengths differ")
            out.append((ex, ey))
        return out


@dataclass(frozen=True)
class Training:
    """How every member trains.

    Parameters
    ----------
    optimizer : OptimizerSpec, str or dict
        E.g. ``"adam"`` or ``OptimizerSpec("sgd", lr=0.1, momentum=0.9)`` (held
        as an :class:`OptimizerSpec`).
    epochs : int
        Passes of every member over its own rows.
    batch_size : int
        Rows of its own per member per update.
    random_state : int or None
        Seeds the initialization and the batch order.
    init, init_scale
        Initialization scheme and weight scale; see :mod:`imod.engine.init`.
    trim : float in [0, 1)
        Trimmed loss: in every update each member leaves out the
        ``floor(trim * rows)`` rows of its own with the largest loss. The rows a
        network cannot yet fit (outliers, mislabelled examples) then never pull
        on it, however long it trains. 0 uses every row.

    Examples
    --------
    >>> Training(epochs=3, optimizer="sgd").optimizer.name
    'sgd'
    >>> Training(trim=1.0)
    Traceback (most recent call last):
    ...
    ValueError: trim must be a number in [0, 1), got 1.0
    """

    optimizer: OptimizerSpec | str | dict = "adam"
    epochs: int = 10
    batch_size: int = 64
    random_state: int | None = 0
    init: str | InitHook = "default"
    init_scale: float = 1.0
    trim: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", OptimizerSpec.coerce(self.optimizer))
        object.__setattr__(self, "epochs", _nonnegative_int(self.epochs, "epochs"))
        object.__setattr__(self, "batch_size", _nonnegative_int(self.batch_size, "batch_size", 1))
        check_init(self.init, self.init_scale)
        trim = self.trim
        if isinstance(trim, bool) or not isinstance(trim, (int, float)) or not 0.0 <= trim < 1.0:
            raise ValueError(f"trim must be a number in [0, 1), got {trim!r}")
        object.__setattr__(self, "trim", float(trim))


@dataclass(frozen=True)
class Placement:
    """Where and how the run executes.

    Parameters
    ----------
    device : "auto", "cpu", "cuda" or torch.device
        Resolved when training starts (a worker resolves ``"auto"`` to its own GPU).
    precision : {"fp32", "ieee", "tf32", "bf16"}
        Matrix-product precision (see :mod:`imod.engine.runtime`). Parameters
        are float32 in every mode, and so is the optimizer state unless
        ``OptimizerSpec(state_precision="bf16")`` asks for bfloat16 Adam moments.
        Recordings are always taken in float32.
    compile : bool
        Compile the loss and its backward pass with ``torch.compile`` (falls back
        to eager execution with a warning where compilation is unavailable).
    chunk_size : "auto" or int
        Members trained together; ``"auto"`` fits the training memory budget
        (:func:`~imod.engine.runtime.memory_budget`). It never changes the numbers.
    eval_batch_size : int
        Most rows per forward pass when recording (fewer when K members'
        activations would not fit the memory budget).
    progress : bool
        Show a tqdm progress bar.

    Examples
    --------
    >>> Placement(device="cpu", precision="bf16").precision
    'bf16'
    >>> Placement(chunk_size=0)
    Traceback (most recent call last):
    ...
    ValueError: chunk_size must be 'auto' or a positive int, got 0
    """

    device: str | torch.device = "auto"
    precision: str = "fp32"
    compile: bool = False
    chunk_size: int | str = "auto"
    eval_batch_size: int = 8192
    progress: bool = False

    def __post_init__(self) -> None:
        resolve_device(self.device)  # refuses an unknown or missing device now
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if not isinstance(self.compile, (bool, np.bool_)):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        chunk = self.chunk_size
        if chunk != "auto" and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                                or chunk < 1):
            raise ValueError(f"chunk_size must be 'auto' or a positive int, got {chunk!r}")
        _nonnegative_int(self.eval_batch_size, "eval_batch_size", 1)

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)


@dataclass(frozen=True)
class Recording:
    """What to measure during training, and when.

    Parameters
    ----------
    recorders : sequence of Recorder
        What to measure (names must be unique).
    every : "epoch", "end" or int
        Record after each epoch, once after training, or every N updates.
    initial : bool
        Also record before the first update.
    keep_snapshots : bool
        Keep the stacked parameters at every recording (on the CPU).

    Examples
    --------
    >>> from imod.engine import per_example_loss
    >>> Recording([Recorder("loss", per_example_loss("mse"))], every=5).every
    5
    >>> Recording(every=0)
    Traceback (most recent call last):
    ...
    ValueError: every must be 'epoch', 'end' or a positive int, got 0
    """

    recorders: Sequence[Recorder] = field(default_factory=tuple)
    every: str | int = "epoch"
    initial: bool = False
    keep_snapshots: bool = False

    def __post_init__(self) -> None:
        recorders = tuple(self.recorders)
        if not all(isinstance(r, Recorder) for r in recorders):
            raise TypeError("recorders must be Recorder objects")
        names = [r.name for r in recorders]
        if len(set(names)) != len(names):
            raise ValueError(f"recorder names must be unique, got {names}")
        every = self.every
        if every not in ("epoch", "end") and not (
            isinstance(every, (int, np.integer)) and not isinstance(every, bool) and every >= 1
        ):
            raise ValueError(
                f"every must be 'epoch', 'end' or a positive int, got {every!r}")
        object.__setattr__(self, "recorders", recorders)
