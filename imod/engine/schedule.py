"""The batch schedule: which rows every update sees.

1. Every epoch draws one permutation of all examples from ``random_state``
   (:func:`batch_order`). Member ``k``'s epoch is that permutation restricted
   to its own rows (its mask), cut into batches of ``batch_size``: each member
   runs a proper epoch over its own rows, as it would trained alone with that
   data order, and computes on no row it would mask out (:func:`own_rows`).
   When every member has every row, the members share each batch (one row
   table, one wide first-layer product).
2. :class:`Schedule` lays the run out before the first update: the epoch
   permutations padded to ``steps_per_epoch * batch_size`` columns, and the
   updates after which to record. Every update has the same shape (a member's
   short or empty last batches are padding of weight 0), so the update step
   can be compiled or captured once.
3. :func:`batch_counts` says, per update and member, how many real rows the
   batch holds; the host reads off it what the loop would otherwise ask the
   device at every update (:func:`batch_flags`): does every member have a row
   (then the optimizer may use torch's fused step), and is every batch full
   (then trimming is one top-k).
4. :func:`trim_weights`: with ``trim > 0`` each member leaves out the largest
   ``floor(trim * rows)`` of its own losses in the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Schedule", "batch_counts", "batch_flags", "batch_order", "own_rows", "trim_weights"]


def batch_order(random_state: int | None, epoch: int, n_samples: int) -> np.ndarray:
    """The permutation of examples for one epoch (every member reads its rows in this order).

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


def own_rows(mask: torch.Tensor, order: torch.Tensor, width: int) -> torch.Tensor:
    """Each member's own rows in the epoch's order, ``(K, width)``.

    ``order`` is the epoch's permutation of all ``n`` rows. Row ``k`` of the
    result starts with member ``k``'s rows in the order they come in ``order``;
    the rest (``width`` is at least the largest member's row count) is padding,
    row 0. Runs on the device without a host round trip.

    Examples
    --------
    >>> import torch
    >>> mask = torch.tensor([[True, False, True, True], [False, True, True, False]])
    >>> own_rows(mask, torch.tensor([3, 1, 0, 2]), width=4)
    tensor([[3, 0, 2, 0],
            [1, 2, 0, 0]])
    """
    n_members, n = mask.shape[0], order.shape[0]
    mine = mask[:, order]  # (K, n): is the j-th row of the order the member's?
    slot = torch.where(mine, mine.cumsum(dim=1) - 1, width)  # its place in the member's epoch
    table = torch.zeros(n_members, width + 1, dtype=order.dtype, device=order.device)
    table.scatter_(1, slot, order.expand(n_members, n))  # other rows land in the last column
    return table[:, :width]


def batch_counts(own: np.ndarray, batch: int, steps: int) -> np.ndarray:
    """Real rows of each member's batch at each step of an epoch, ``(steps, K)``.

    Examples
    --------
    >>> batch_counts(np.array([5, 3]), batch=2, steps=3).tolist()
    [[2, 2], [2, 1], [1, 0]]
    """
    start = np.arange(steps)[:, None] * batch
    return np.clip(np.asarray(own)[None, :] - start, 0, batch)


def batch_flags(counts: np.ndarray, batch: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step: does every member have a row, and does every member fill the step's
    batch (``batch`` rows, one width or one per step)?

    Examples
    --------
    >>> active, full = batch_flags(np.array([[2, 2], [2, 1], [1, 0]]), batch=2)
    >>> active.tolist(), full.tolist()
    ([True, True, False], [True, False, False])
    """
    width = np.reshape(batch, (-1, 1))
    return (counts > 0).all(axis=1), (counts == width).all(axis=1)


@dataclass(frozen=True)
class Schedule:
    """Every update of a run, laid out before the first one.

    Attributes
    ----------
    orders : ndarray of shape (epochs, steps_per_epoch * batch)
        Each epoch's permutation of the rows, padded with row 0.
    batch : int
        Rows of its own per member and update.
    steps_per_epoch : int
        Updates per epoch: enough for the member with the most rows.
    records : tuple of (int, float)
        ``(updates done, epoch position)`` of each recording, in order
        (``(0, 0.0)`` is before the first update).

    Examples
    --------
    >>> s = Schedule.build(random_state=0, epochs=2, n_samples=10, own_max=10, batch=4,
    ...                    record_every="epoch")
    >>> s.orders.shape, s.steps_per_epoch, s.updates  # 3 updates per epoch, the last one short
    ((2, 12), 3, 6)
    >>> s.records
    ((3, 1.0), (6, 2.0))
    >>> Schedule.build(0, 1, 10, 10, 4, record_every=2, record_initial=True).records
    ((0, 0.0), (2, 0.6666666666666666))
    """

    orders: np.ndarray
    batch: int
    steps_per_epoch: int
    records: tuple[tuple[int, float], ...]

    @property
    def epochs(self) -> int:
        return int(self.orders.shape[0])

    @property
    def updates(self) -> int:
        return self.epochs * self.steps_per_epoch

    @classmethod
    def build(
        cls,
        random_state: int | None,
        epochs: int,
        n_samples: int,
        own_max: int,
        batch: int,
        record_every: str | int = "epoch",
        record_initial: bool = False,
    ) -> Schedule:
        """``own_max`` is the most rows any member has; it sets the epoch's length."""
        batch = min(batch, own_max)
        steps = math.ceil(own_max / batch)
        orders = np.zeros((epochs, max(n_samples, steps * batch)), dtype=np.int64)
        for e in range(epochs):
            orders[e, :n_samples] = batch_order(random_state, e, n_samples)
        records: list[tuple[int, float]] = [(0, 0.0)] if record_initial else []
        if record_every == "epoch":
            records += [((e + 1) * steps, float(e + 1)) for e in range(epochs)]
        elif record_every == "end":
            records.append((epochs * steps, float(epochs)))
        else:
            for t in range(int(record_every), epochs * steps + 1, int(record_every)):
                e, s = divmod(t - 1, steps)
                records.append((t, e + (s + 1) / steps))
        return cls(orders, batch, steps, tuple(records))


def trim_weights(
    losses: torch.Tensor, weights: torch.Tensor, fraction: float, all_rows: bool | None = None
) -> torch.Tensor:
    """Zero each member's ``floor(fraction * rows)`` largest losses in a batch.

    ``losses`` and ``weights`` are ``(K, B)``; ``weights`` is 1 where the row is
    in the member's mask. The rows dropped are the largest among the member's
    own rows, and at least one row is kept whenever ``fraction < 1``.
    ``all_rows=True`` says every member has every row of the batch (the
    schedule knows it beforehand, see :func:`batch_flags`); ``None`` checks,
    which costs a device sync.

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
