"""Train-test leakage: near-duplicate pairs by cosine similarity.

Features are the raw inputs (flattened) by default, or any embedding the user
passes (e.g. penultimate-layer activations, as Barz & Denzler 2020 used for
ciFAIR). Every test example whose most similar training example has cosine
similarity ``>= threshold`` is a duplicate; the de-duplicated test set is the
rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LeakageReport", "find_near_duplicates"]


@dataclass
class LeakageReport:
    """Result of :func:`find_near_duplicates`.

    Attributes
    ----------
    pairs : DataFrame
        ``train_index, test_index, similarity`` of every pair at or above the
        threshold, most similar first.
    nearest_train : ndarray (m,)
        Index of the most similar training example of every test example.
    nearest_similarity : ndarray (m,)
        Its cosine similarity.
    duplicate_test_idx : ndarray
        Test examples with a near-duplicate in training.
    dedup_test_idx : ndarray
        The de-duplicated test set (all other test examples).
    threshold : float
    """

    pairs: object
    nearest_train: np.ndarray
    nearest_similarity: np.ndarray
    duplicate_test_idx: np.ndarray
    dedup_test_idx: np.ndarray
    threshold: float

    @property
    def duplicate_fraction(self) -> float:
        return float(len(self.duplicate_test_idx) / max(1, len(self.nearest_train)))


def _unit_rows(F) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64).reshape(len(F), -1)
    if not np.isfinite(F).all():
        raise ValueError("features contain NaN or infinite values")
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    return (F / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def find_near_duplicates(
    X_train,
    X_test,
    *,
    threshold: float = 0.98,
    features=None,
    center: bool = False,
    batch_size: int = 2048,
) -> LeakageReport:
    """Near-duplicate train/test pairs by cosine similarity.

    Parameters
    ----------
    X_train, X_test : array-like (n, ...) and (m, ...)
        Raw inputs (flattened), used when ``features`` is None.
    threshold : float in [-1, 1]
        Pairs with cosine similarity ``>= threshold`` are duplicates.
    features : tuple (F_train, F_test) or callable, optional
        Embeddings to compare instead of the raw inputs, or a function mapping
        an input array to its embedding.
    center : bool
        Subtract the training mean before comparing (makes the cosine less
        dominated by a shared background, e.g. blank image borders).
    batch_size : int
        Test rows per similarity block (memory is ``batch_size * n`` floats).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(50, 8)); B = rng.normal(size=(10, 8)); B[3] = A[7] + 1e-3
    >>> rep = find_near_duplicates(A, B, threshold=0.99)
    >>> rep.pairs[["train_index", "test_index"]].values.tolist(), len(rep.dedup_test_idx)
    ([[7, 3]], 9)
    """
    import pandas as pd

    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
    if features is None:
        F_tr, F_te = X_train, X_test
    elif callable(features):
        F_tr, F_te = features(X_train), features(X_test)
    else:
        F_tr, F_te = features
    F_tr = np.asarray(F_tr, dtype=np.float64).reshape(len(F_tr), -1)
    F_te = np.asarray(F_te, dtype=np.float64).reshape(len(F_te), -1)
    if F_tr.shape[1] != F_te.shape[1]:
        raise ValueError(f"train features have {F_tr.shape[1]} dims, test {F_te.shape[1]}")
    if len(F_tr) == 0 or len(F_te) == 0:
        raise ValueError("need at least one train and one test example")
    if center:
        mu = F_tr.mean(axis=0, keepdims=True)
        F_tr, F_te = F_tr - mu, F_te - mu
    A, B = _unit_rows(F_tr), _unit_rows(F_te)
    m = len(B)
    nearest = np.empty(m, dtype=np.int64)
    best = np.empty(m, dtype=np.float32)
    ti, tj, sims = [], [], []
    for s in range(0, m, batch_size):
        S = B[s : s + batch_size] @ A.T  # (b, n)
        nearest[s : s + batch_size] = S.argmax(axis=1)
        best[s : s + batch_size] = S.max(axis=1)
        r, c = np.nonzero(S >= threshold)
        tj.append(r + s)
        ti.append(c)
        sims.append(S[r, c])
    ti, tj, sims = np.concatenate(ti), np.concatenate(tj), np.concatenate(sims)
    order = np.lexsort((ti, tj, -sims))
    pairs = pd.DataFrame({"train_index": ti[order], "test_index": tj[order],
                          "similarity": sims[order].astype(float)})
    dup = np.unique(tj)
    keep = np.setdiff1d(np.arange(m), dup)
    return LeakageReport(pairs=pairs, nearest_train=nearest, nearest_similarity=best,
                         duplicate_test_idx=dup, dedup_test_idx=keep, threshold=float(threshold))
