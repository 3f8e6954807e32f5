"""Identical rows get one score: the first copy's, bit for bit.

The networks score rows in batches, and a matrix product's rounding depends on where a
row sits in its batch (the BLAS kernels block and vectorize columns differently at the
edges). Copies of one row therefore got scores a few 1e-9 apart, and a percentile
threshold drawn through such a tie flagged some copies and not others (8 of 200
identical rows). :func:`first_copies` finds, for every row, the first row equal to it
(hashing the rows' bytes, then comparing the rows a hash pairs), and :func:`share_ties`
gives every copy that row's value, so a score, a label or an explanation never depends
on where a copy sat.
"""

from __future__ import annotations

import numpy as np

__all__ = ["first_copies", "share_ties"]

# splitmix64's constants: each 64-bit word is mixed before the words of a row are summed,
# so that rows differing in a structured way (a swap, a sign) hash apart.
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
# 64-bit words hashed at a time (4 MiB per buffer; 1.4x faster than 1 or 8 MiB)
_BLOCK_WORDS = 1 << 19


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """One uint64 per row; equal rows (``-0.0`` and ``0.0`` counted equal) hash equal.

    Rows are hashed a cache-sized block at a time in two reused buffers: no copy of
    ``X`` is made (on 10,000 x 768 a whole-array copy cost 0.1-0.7 s in page faults).
    """
    n, d = X.shape
    step = max(1, _BLOCK_WORDS // max(d, 1))
    columns = np.arange(1, d + 1, dtype=np.uint64) * np.uint64(_GOLDEN)  # the column enters
    z = np.empty((min(step, n), d), dtype=np.float64)
    t = np.empty(z.shape, dtype=np.uint64)
    out = np.empty(n, dtype=np.uint64)
    for i in range(0, n, step):
        rows = min(step, n - i)
        zf = z[:rows]
        np.add(X[i : i + rows], 0.0, out=zf)  # -0.0 -> 0.0
        zu, tu = zf.view(np.uint64), t[:rows]
        zu += columns
        for shift, mix in ((30, _MIX1), (27, _MIX2)):
            np.right_shift(zu, np.uint64(shift), out=tu)
            zu ^= tu
            zu *= np.uint64(mix)
        np.right_shift(zu, np.uint64(31), out=tu)
        zu ^= tu
        zu.sum(axis=1, dtype=np.uint64, out=out[i : i + rows])  # wraps modulo 2**64
    return out


def first_copies(X: np.ndarray) -> np.ndarray:
    """For each row of ``X`` (2-D, finite), the index of the first row equal to it.

    Examples
    --------
    >>> import numpy as np
    >>> first_copies(np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0], [-0.0, 1.0]])).tolist()
    [0, 1, 0, 1]
    """
    X = np.asarray(X)
    n = X.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    _, first, inverse = np.unique(_row_hashes(X), return_index=True, return_inverse=True)
    first = first[inverse.ravel()]
    # a hash shared by unequal rows (a collision, ~n^2 / 2^65) must not tie them
    moved = np.flatnonzero(first != np.arange(n))
    step = max(1, _BLOCK_WORDS // max(X.shape[1], 1))  # compared a block at a time
    for i in range(0, len(moved), step):
        rows = moved[i : i + step]
        unequal = rows[(X[first[rows]] != X[rows]).any(axis=1)]
        first[unequal] = unequal
    return first


def share_ties(X: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (one entry or row per row of ``X``) with every copy of a row given the
    first copy's entry, bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> share_ties(np.array([[3.0], [3.0], [1.0]]), np.array([0.5, 0.5 + 1e-12, 0.1]))
    array([0.5, 0.5, 0.1])
    """
    values = np.array(values)
    first = first_copies(X)
    moved = np.flatnonzero(first != np.arange(len(first)))
    values[moved] = values[first[moved]]  # only the copies are written
    return values
