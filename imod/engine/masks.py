"""Membership masks: which training examples each ensemble member sees.

A mask is a boolean array of shape ``(n_members, n_samples)``; ``mask[k, i]`` is
True when member ``k`` trains on example ``i``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["full_mask", "bernoulli_mask", "balanced_mask", "validate_mask"]


def _check_counts(n_members: int, n_samples: int) -> None:
    if not isinstance(n_members, (int, np.integer)) or n_members < 1:
        raise ValueError(f"n_members must be an integer >= 1, got {n_members!r}")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")


def _check_rate(rate: float) -> None:
    if not (0.0 < float(rate) <= 1.0):
        raise ValueError(f"rate must be in (0, 1], got {rate!r}")


def full_mask(n_members: int, n_samples: int) -> np.ndarray:
    """Every member trains on every example.

    Examples
    --------
    >>> full_mask(2, 3)
    array([[ True,  True,  True],
           [ True,  True,  True]])
    """
    _check_counts(n_members, n_samples)
    return np.ones((n_members, n_samples), dtype=bool)


def bernoulli_mask(
    n_members: int, n_samples: int, rate: float, random_state: int | None = None
) -> np.ndarray:
    """Each (member, example) pair is IN independently with probability ``rate``.

    A member that would end up empty gets one example drawn at random, so every
    member has something to train on.

    Examples
    --------
    >>> m = bernoulli_mask(100, 50, 0.7, random_state=0)
    >>> m.shape, bool(abs(m.mean() - 0.7) < 0.05)
    ((100, 50), True)
    """
    _check_counts(n_members, n_samples)
    _check_rate(rate)
    rng = np.random.default_rng(random_state)
    mask = rng.random((n_members, n_samples)) < rate
    for k in np.flatnonzero(~mask.any(axis=1)):
        mask[k, rng.integers(n_samples)] = True
    return mask


def balanced_mask(
    n_members: int, n_samples: int, rate: float, random_state: int | None = None
) -> np.ndarray:
    """Every example is IN exactly ``round(rate * n_members)`` members.

    This is the LiRA shadow-model pattern (Carlini et al. 2022): for each example
    a random permutation of the members decides which ones hold it, so every
    example has the same number of IN and OUT members and the subsampled
    memorization estimator has no example starved of held-out members.

    Examples
    --------
    >>> m = balanced_mask(10, 20, 0.7, random_state=0)
    >>> m.sum(axis=0).tolist() == [7] * 20
    True
    """
    _check_counts(n_members, n_samples)
    _check_rate(rate)
    n_in = int(round(rate * n_members))
    if n_in < 1:
        raise ValueError(
            f"rate={rate} with n_members={n_members} puts every example in "
            f"round(rate * n_members) = {n_in} members; use more members or a higher rate"
        )
    rng = np.random.default_rng(random_state)
    ranks = rng.random((n_members, n_samples)).argsort(axis=0).argsort(axis=0)
    mask = ranks < n_in
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(
            f"member {int(empty[0])} received no examples (n_members={n_members}, "
            f"n_samples={n_samples}, rate={rate}); use fewer members or more data"
        )
    return mask


def validate_mask(mask: np.ndarray, n_samples: int) -> np.ndarray:
    """Check a user mask and return it as a C-contiguous bool array.

    Examples
    --------
    >>> validate_mask([[1, 0, 1], [0, 1, 1]], n_samples=3)
    array([[ True, False,  True],
           [False,  True,  True]])
    >>> validate_mask([[1, 0, 1], [0, 0, 0]], n_samples=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 1 member(s) have no training examples in the mask (first: member 1); ...
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (n_members, n_samples), got shape {mask.shape}")
    if mask.shape[1] != n_samples:
        raise ValueError(
            f"mask has {mask.shape[1]} columns but the data has {n_samples} examples "
            "(mask shape must be (n_members, n_samples))"
        )
    if mask.shape[0] < 1:
        raise ValueError("mask has no rows: need at least one member (K >= 1)")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must be boolean (or 0/1)")
        mask = mask.astype(bool)
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(
            f"{empty.size} member(s) have no training examples in the mask "
            f"(first: member {int(empty[0])}); every member needs at least one"
        )
    return np.ascontiguousarray(mask)
