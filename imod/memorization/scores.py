"""Memorization and influence scores from one mask matrix and one correctness matrix.

Everything here is pure array code (no training): given the membership mask
``M`` of shape ``(K, n)`` (``M[k, i]`` is True when member ``k`` trained on
example ``i``) and 0/1 correctness matrices of the same members on the training
examples ``(K, n)`` and on test examples ``(K, m)``, compute

* ``p_in(i)``  = mean correctness on ``i`` over members that trained on ``i``,
* ``p_out(i)`` = mean correctness on ``i`` over members that did not,
* ``difference = p_in - p_out`` (Feldman & Zhang 2020, Eq. 1 of the critique),
* ``fractional = (p_in - p_out) / (p_in + p_out)`` (the critique's Eq. 2), with
  ``0/0 := 0``: an example that is never classified correctly, whether trained on
  or not, shows no evidence of memorization,
* ``influence(i, j) = P[correct on test j | i IN] - P[correct on test j | i OUT]``,
  all pairs by two matrix products ``M^T C`` and ``(1 - M)^T C``.

Examples held out by fewer than ``min_out`` members (or trained on by fewer than
``min_in``) get NaN scores and a :class:`StarvedExamplesWarning` -- never a
silent 0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SCORES",
    "StarvedExamplesWarning",
    "SubsampleScores",
    "subsample_scores",
    "fractional_difference",
    "influence_matrix",
    "high_influence_pairs",
    "null_threshold",
    "detection_metrics",
    "fpr_at_tpr",
    "cumulative_loss",
]

SCORES = ("difference", "fractional")


class StarvedExamplesWarning(UserWarning):
    """Some examples had too few IN or OUT members; their scores are NaN."""


@dataclass
class SubsampleScores:
    """Per-example results of the subsampled estimator (all arrays of shape ``(n,)``)."""

    p_in: np.ndarray
    p_out: np.ndarray
    in_counts: np.ndarray
    out_counts: np.ndarray
    difference: np.ndarray
    fractional: np.ndarray

    def score(self, name: str) -> np.ndarray:
        """``"difference"`` or ``"fractional"``."""
        if name not in SCORES:
            raise ValueError(f"unknown score {name!r}; choose one of {SCORES}")
        return getattr(self, name)


def _check_pair(mask: np.ndarray, correct: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(mask)
    correct = np.asarray(correct)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (K, n), got shape {mask.shape}")
    if correct.ndim != 2 or correct.shape[0] != mask.shape[0]:
        raise ValueError(
            f"{name} must be 2-D with one row per member ({mask.shape[0]}), "
            f"got shape {correct.shape}"
        )
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must be boolean (or 0/1)")
        mask = mask.astype(bool)
    return mask, correct


def _starved(in_counts, out_counts, min_in: int, min_out: int) -> np.ndarray:
    bad = (in_counts < min_in) | (out_counts < min_out)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of {bad.size} examples have fewer than min_in={min_in} IN or "
            f"min_out={min_out} OUT members (e.g. example {int(np.flatnonzero(bad)[0])}: "
            f"{int(in_counts[bad][0])} IN, {int(out_counts[bad][0])} OUT); their scores are NaN. "
            "Train more members or use a balanced mask.",
            StarvedExamplesWarning,
            stacklevel=3,
        )
    return bad


def fractional_difference(p_in, p_out) -> np.ndarray:
    """``(p_in - p_out) / (p_in + p_out)`` with ``0/0 := 0`` (NaN stays NaN).

    Examples
    --------
    >>> fractional_difference([0.25, 1.0, 0.0], [0.0, 0.75, 0.0]).round(3).tolist()
    [1.0, 0.143, 0.0]
    """
    p_in = np.asarray(p_in, dtype=float)
    p_out = np.asarray(p_out, dtype=float)
    num = p_in - p_out
    den = p_in + p_out
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def subsample_scores(mask, correct, *, min_in: int = 1, min_out: int = 3) -> SubsampleScores:
    """Memorization scores of every training example.

    Parameters
    ----------
    mask : array of shape (K, n)
        ``True`` where member ``k`` trained on example ``i``.
    correct : array of shape (K, n)
        1 where member ``k`` classifies training example ``i`` correctly (against
        the label it was trained with).
    min_in, min_out : int
        Examples with fewer IN / OUT members get NaN scores and a warning.

    Examples
    --------
    >>> m = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], bool)
    >>> c = np.array([[1, 1], [0, 1], [1, 0], [0, 1]])
    >>> s = subsample_scores(m, c, min_out=1)
    >>> s.difference.tolist(), s.fractional.tolist()
    ([1.0, 0.5], [1.0, 0.3333333333333333])
    """
    mask, correct = _check_pair(mask, correct, "correct")
    if correct.shape != mask.shape:
        raise ValueError(f"correct has shape {correct.shape} but the mask has {mask.shape}")
    c = correct.astype(np.float64)
    in_counts = mask.sum(axis=0)
    out_counts = mask.shape[0] - in_counts
    hits_in = (c * mask).sum(axis=0)
    hits_out = c.sum(axis=0) - hits_in
    bad = _starved(in_counts, out_counts, min_in, min_out)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_in = np.where(in_counts > 0, hits_in / np.maximum(in_counts, 1), np.nan)
        p_out = np.where(out_counts > 0, hits_out / np.maximum(out_counts, 1), np.nan)
    p_in[bad] = np.nan
    p_out[bad] = np.nan
    diff = p_in - p_out
    return SubsampleScores(
        p_in=p_in,
        p_out=p_out,
        in_counts=in_counts.astype(np.int64),
        out_counts=out_counts.astype(np.int64),
        difference=diff,
        fractional=fractional_difference(p_in, p_out),
    )


def influence_matrix(mask, correct_test, *, min_in: int = 1, min_out: int = 3) -> np.ndarray:
    """Influence of every training example on every test example, ``(n, m)``.

    ``infl[i, j] = mean_{k: i IN} C[k, j] - mean_{k: i OUT} C[k, j]``, computed as
    ``M^T C / n_in - (1 - M)^T C / n_out`` (float32 products of 0/1 values are
    exact counts up to 2^24 members). Rows of starved examples are NaN.
    """
    mask, correct_test = _check_pair(mask, correct_test, "correct_test")
    m32 = mask.astype(np.float32)
    c32 = np.asarray(correct_test, dtype=np.float32)
    hits_in = m32.T @ c32  # (n, m)
    hits_all = c32.sum(axis=0, dtype=np.float64)  # (m,)
    in_counts = mask.sum(axis=0)
    out_counts = mask.shape[0] - in_counts
    bad = _starved(in_counts, out_counts, min_in, min_out)
    with np.errstate(invalid="ignore", divide="ignore"):
        infl = hits_in / np.maximum(in_counts, 1)[:, None] - (
            hits_all[None, :] - hits_in
        ) / np.maximum(out_counts, 1)[:, None]
    infl = infl.astype(np.float32)
    infl[bad] = np.nan
    return infl


def high_influence_pairs(
    memorization,
    influence,
    *,
    mem_threshold: float = 0.25,
    infl_threshold: float = 0.15,
    top_k: int | None = None,
    train_labels=None,
    test_labels=None,
):
    """Train/test pairs with ``mem >= mem_threshold`` and ``infl >= infl_threshold``.

    Feldman & Zhang's defaults (0.25, 0.15). With ``top_k``, the ``top_k``
    pairs of largest influence among those (``top_k`` with both thresholds set
    to ``-inf`` lists the largest influences overall). Returns a DataFrame sorted
    by influence, with columns ``train_index, test_index, memorization,
    influence`` (and the labels when given).
    """
    import pandas as pd

    mem = np.asarray(memorization, dtype=float)
    infl = np.asarray(influence, dtype=float)
    if infl.ndim != 2 or infl.shape[0] != mem.shape[0]:
        raise ValueError(f"influence must be (n_train, n_test) with n_train={mem.shape[0]}")
    rows = np.flatnonzero(mem >= mem_threshold)
    sub = infl[rows]
    r, c = np.nonzero(sub >= infl_threshold)
    vals = sub[r, c]
    order = np.argsort(-vals, kind="stable")
    if top_k is not None:
        order = order[: int(top_k)]
    ti, tj = rows[r[order]], c[order]
    df = pd.DataFrame(
        {"train_index": ti, "test_index": tj, "memorization": mem[ti], "influence": vals[order]}
    )
    if train_labels is not None:
        df["train_label"] = np.asarray(train_labels)[ti]
    if test_labels is not None:
        df["test_label"] = np.asarray(test_labels)[tj]
    return df


def null_threshold(null_scores, alpha: float = 0.05, side: str = "upper") -> float:
    """Threshold from the scores of randomly relabelled points (the null).

    ``side="upper"``: the ``(1 - alpha)`` quantile (the critique's Eq. 3): a
    natural point is memorized when it scores above 95 % of random-label points.
    ``side="lower"``: the ``alpha`` quantile: the threshold that keeps ``1 - alpha``
    of the random-label points above it (95 % TPR on the null). NaNs are ignored.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if side not in ("upper", "lower"):
        raise ValueError(f"side must be 'upper' or 'lower', got {side!r}")
    s = np.asarray(null_scores, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("no finite null scores: relabel some points (random_label_fraction > 0)")
    q = 1.0 - alpha if side == "upper" else alpha
    return float(np.quantile(s, q))


def fpr_at_tpr(y_true, scores, tpr: float = 0.95) -> float:
    """False positive rate at the first threshold reaching ``tpr`` true positive rate."""
    from sklearn.metrics import roc_curve

    fpr, tprs, _ = roc_curve(y_true, scores)
    return float(fpr[np.searchsorted(tprs, tpr - 1e-12, side="left")])


def detection_metrics(scores, is_positive) -> dict[str, float]:
    """How well ``scores`` separate positives (random-label points) from the rest.

    Returns AUROC, AUPR (average precision) and FPR at 95 % TPR; examples with
    NaN scores are left out (``n_used`` says how many were used).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    s = np.asarray(scores, dtype=float)
    y = np.asarray(is_positive, dtype=bool)
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    if y.all() or not y.any():
        nan = float("nan")
        return {"auroc": nan, "aupr": nan, "fpr_at_95tpr": nan, "n_used": int(ok.sum())}
    return {
        "auroc": float(roc_auc_score(y, s)),
        "aupr": float(average_precision_score(y, s)),
        "fpr_at_95tpr": fpr_at_tpr(y, s, 0.95),
        "n_used": int(ok.sum()),
    }


def cumulative_loss(losses, mask) -> np.ndarray:
    """Cumulative training loss of every row (Ravikumar et al., ICML 2025), ``(n,)``.

    The sum over the recorded epochs of a row's loss, averaged over the members that
    trained on it (NaN where none did): a one-run proxy for memorization, high for rows
    that are fit late or never (mislabelled, atypical).

    Parameters
    ----------
    losses : array of shape (E, k, n)
        Per-row loss of every member after every epoch.
    mask : array of shape (k, n)
        ``True`` where member ``k`` trained on row ``i``.

    Examples
    --------
    >>> L = np.array([[[1.0, 2.0]], [[0.5, 2.0]]])  # 2 epochs, 1 member, 2 rows
    >>> cumulative_loss(L, np.array([[True, False]])).tolist()
    [1.5, nan]
    """
    L = np.asarray(losses, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if L.ndim != 3 or L.shape[1:] != m.shape:
        raise ValueError(f"losses must be (E, k, n) with (k, n) = mask's {m.shape}, "
                         f"got {L.shape}")
    total = (L.sum(axis=0) * m).sum(axis=0)
    count = m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
