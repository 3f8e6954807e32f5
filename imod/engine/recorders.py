"""Recorders: what the engine measures on chosen examples during training.

A :class:`Recorder` evaluates every member on its own evaluation set at each
recording point (after every epoch, or every N updates) and stores a
``(K, n_eval)`` array. The caller gets them stacked over time,
``(n_records, K, n_eval)``, or as a running aggregate (mean or last), so a long
run need not keep every snapshot of a million-row dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .losses import LossFn, get_loss
from .runtime import to_host

__all__ = ["Recorder", "per_example_loss", "correctness", "margin", "REDUCTIONS"]

RecordFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
REDUCTIONS = ("stack", "mean", "last")


@dataclass
class Recorder:
    """Measure ``fn(outputs, targets) -> (K, n_eval)`` during training.

    Parameters
    ----------
    name : str
        Key of the result in ``EnsembleResult.records``.
    fn : callable
        Maps member outputs ``(K, m, ...)`` and targets ``(m, ...)`` to ``(K, m)``.
    X, y : array-like, optional
        Evaluation inputs and targets; default to the training data (and, for
        unsupervised training, the inputs themselves as targets).
    reduce : {"stack", "mean", "last"}, default="stack"
        Keep every recording (``(T, K, m)``), their running mean (``(K, m)``) or
        only the last one.
    transform : callable, optional
        Applied to each ``(K, m)`` recording before it is stored; it must treat
        members independently (members may arrive in chunks).

    Examples
    --------
    >>> rec = Recorder("loss", per_example_loss("mse"))
    >>> rec.name
    'loss'
    """

    name: str
    fn: RecordFn
    X: Any = None
    y: Any = None
    reduce: str = "stack"
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {self.reduce!r}; choose one of {REDUCTIONS}")
        if not callable(self.fn):
            raise TypeError("Recorder.fn must be callable")


def per_example_loss(loss: str | LossFn) -> RecordFn:
    """Record the training loss of each example (e.g. reconstruction error).

    Examples
    --------
    >>> import torch
    >>> record = per_example_loss("mse")
    >>> record(torch.zeros(2, 3, 4), torch.ones(3, 4))  # (K, m) = (2, 3)
    tensor([[1., 1., 1.],
            [1., 1., 1.]])
    """
    fn = get_loss(loss)

    def record(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return fn(outputs, targets)

    return record


def correctness(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1.0 where a member's arg-max class equals the label, else 0.0.

    Examples
    --------
    >>> import torch
    >>> outputs = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],   # member 0: both right
    ...                         [[0.0, 3.0], [1.0, 0.0]]])  # member 1: both wrong
    >>> correctness(outputs, torch.tensor([0, 1]))
    tensor([[1., 1.],
            [0., 0.]])
    """
    return (outputs.argmax(dim=-1) == targets.unsqueeze(0)).to(torch.float32)


def margin(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the largest other logit (LiRA-style confidence).

    Examples
    --------
    >>> import torch
    >>> outputs = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],
    ...                         [[0.0, 3.0], [1.0, 0.0]]])  # (K=2, m=2, classes=2)
    >>> margin(outputs, torch.tensor([0, 1]))
    tensor([[ 2.,  1.],
            [-3., -1.]])
    """
    idx = targets.view(1, -1, 1).expand(outputs.shape[0], -1, 1)
    true = outputs.gather(-1, idx).squeeze(-1)
    others = outputs.scatter(-1, idx, float("-inf"))
    return true - others.max(dim=-1).values


class RecorderStore:
    """One recorder's values for one chunk of members, kept off the host until the end.

    ``"stack"`` recordings go to host memory asynchronously (:func:`to_host`),
    ``"mean"`` and ``"last"`` stay on the device; :meth:`result` reads them once,
    after the chunk's final device sync.
    """

    def __init__(self, reduce: str) -> None:
        self.reduce = reduce
        self.items: list[torch.Tensor] = []
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, values: torch.Tensor) -> None:
        if self.reduce == "stack":
            self.items.append(to_host(values.float()))
        elif self.reduce == "last":
            self.total, self.count = values.float(), 1
        else:
            self.total = values.double() if self.total is None else self.total + values
            self.count += 1

    def result(self) -> np.ndarray:
        if self.reduce == "stack":
            return np.stack([t.numpy() for t in self.items])
        if self.total is None:
            raise RuntimeError("nothing was recorded")
        if self.reduce == "last":
            return self.total.cpu().numpy()
        return (self.total / self.count).float().cpu().numpy()
