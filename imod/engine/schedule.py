"""The batch schedule: which rows every update sees, and which it leaves out.

1. Every epoch draws one permutation of all examples from ``random_state``
   (:func:`batch_order`). It is cut into *shared* batches of
   ``ceil(batch_size / mean rate)`` rows (:func:`shared_batch_size`), so a member
   whose mask holds a fraction ``r`` of the data sees about ``batch_size`` of its
   own examples per update.
2. :class:`Schedule` lays the whole run out before the first update: a
   ``(updates, B)`` table of row indices, every batch padded to the same ``B``
   rows (the last batch of an epoch is shorter; its padding rows get weight 0),
   the number of real rows of each batch, and the updates after which to record.
   Static shapes let the update step be compiled or captured once.
3. :func:`batch_flags` reads off the mask, once per chunk of members, what the
   loop would otherwise ask the device at every update: does every member have
   a row in this batch (then the optimizer may use torch's fused step), and does
   every member have every row (then trimming is one top-k).
4. :func:`trim_weights`: with ``trim > 0`` each member leaves out the largest
   ``floor(trim * rows)`` of its own losses in the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Schedule", "batch_flags", "batch_order", "shared_batch_size", "trim_weights"]


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


@dataclass(frozen=True)
class Schedule:
    """Every update of a run, laid out before the first one.

    Attributes
    ----------
    rows : ndarray of shape (updates, batch)
        Row indices of each shared batch; a short batch is padded with row 0.
    real : ndarray of shape (updates,)
        Real rows of each batch (the rest is padding, weight 0).
    records : tuple of (int, float)
        ``(updates done, epoch position)`` of each recording, in order
        (``(0, 0.0)`` is before the first update).
    epochs, steps_per_epoch : int

    Examples
    --------
    >>> s = Schedule.build(random_state=0, epochs=2, n_samples=10, batch=4, record_every="epoch")
    >>> s.rows.shape, s.real.tolist()  # 3 updates per epoch, the last one with 2 rows
    ((6, 4), [4, 4, 2, 4, 4, 2])
    >>> s.records
    ((3, 1.0), (6, 2.0))
    >>> Schedule.build(0, 1, 10, 4, record_every=2, record_initial=True).records
    ((0, 0.0), (2, 0.6666666666666666))
    """

    rows: np.ndarray
    real: np.ndarray
    records: tuple[tuple[int, float], ...]
    epochs: int
    steps_per_epoch: int

    @property
    def batch(self) -> int:
        return int(self.rows.shape[1])

    @property
    def updates(self) -> int:
        return int(self.rows.shape[0])

    @classmethod
    def build(
        cls,
        random_state: int | None,
        epochs: int,
        n_samples: int,
        batch: int,
        record_every: str | int = "epoch",
        record_initial: bool = False,
    ) -> Schedule:
        steps = math.ceil(n_samples / batch)
        padded = steps * batch
        rows = np.zeros((epochs, padded), dtype=np.int64)
        for e in range(epochs):
            rows[e, :n_samples] = batch_order(random_state, e, n_samples)
        real = np.full((epochs, steps), batch, dtype=np.int64)
        real[:, -1] = n_samples - (steps - 1) * batch
        records: list[tuple[int, float]] = [(0, 0.0)] if record_initial else []
        if record_every == "epoch":
            records += [((e + 1) * steps, float(e + 1)) for e in range(epochs)]
        elif record_every == "end":
            records.append((epochs * steps, float(epochs)))
        else:
            for t in range(int(record_every), epochs * steps + 1, int(record_every)):
                e, s = divmod(t - 1, steps)
                records.append((t, e + (s + 1) / steps))
        return cls(rows.reshape(-1, batch), real.reshape(-1), tuple(records), epochs, steps)


def batch_flags(
    mask: torch.Tensor, rows: torch.Tensor, real: np.ndarray, block_bytes: int = 2**26
) -> tuple[np.ndarray, np.ndarray]:
    """Per update: does every member have a row, and does every member have every row?

    ``mask`` is the chunk's ``(K, n)`` bool mask and ``rows`` the schedule's
    ``(updates, B)`` table, both on the training device. Computed there in
    blocks of at most ``block_bytes`` and brought back once, before the loop.

    Examples
    --------
    >>> import numpy as np, torch
    >>> mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    >>> rows = torch.tensor([[0, 1], [2, 3], [3, 0]])  # the last batch: row 3 and padding
    >>> active, full = batch_flags(mask, rows, np.array([2, 2, 1]))
    >>> active.tolist(), full.tolist()  # member 0 has no row in the last batch
    ([True, True, False], [True, False, False])
    """
    n_members, batch = mask.shape[0], rows.shape[1]
    if bool(mask.all()):
        return np.ones(len(real), dtype=bool), real == batch
    real_dev = torch.as_tensor(real, device=rows.device)
    valid = torch.arange(batch, device=rows.device) < real_dev.unsqueeze(1)  # (T, B)
    step = max(1, block_bytes // max(1, n_members * batch))
    active, full = [], []
    for t0 in range(0, rows.shape[0], step):
        t1 = t0 + step
        counts = (mask[:, rows[t0:t1]] & valid[t0:t1]).sum(dim=2)  # (K, steps)
        active.append((counts > 0).all(dim=0))
        full.append((counts == real_dev[t0:t1]).all(dim=0))
    both = torch.stack([torch.cat(active), torch.cat(full)]).cpu().numpy()
    return both[0], both[1] & (real == batch)


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
