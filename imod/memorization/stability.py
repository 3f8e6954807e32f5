"""How stable are the scores: two ensembles (or two halves of one) scored apart and compared.

The critique measures how many members the scores need by the Spearman correlation of
the scores of independent ensembles as their size grows (it stabilises at 225-350
models on CIFAR and ImageNet). :func:`score_agreement` compares two score vectors (the
Spearman correlation of the scores, the Jaccard overlap of the memorized sets), and
:func:`split_half_stability` applies it to the two halves of one run's members, which
every :class:`~imod.memorization.MemorizationEstimator` fit reports
(``stability_``): a run of K members is as stable as two independent ensembles of K/2
on the curve of ``benchmarks/studies/memorization_stability.py``.
"""

from __future__ import annotations

import warnings

import numpy as np

from .scores import StarvedExamplesWarning, null_threshold, subsample_scores

__all__ = ["score_agreement", "memorized_by_null", "split_half_stability", "half_assignment"]


def memorized_by_null(scores, is_random_label, *, alpha: float = 0.05,
                      side: str = "lower") -> np.ndarray:
    """Natural rows at or above (lower side) / above (upper side) the null threshold."""
    s = np.asarray(scores, dtype=float)
    rl = np.asarray(is_random_label, dtype=bool)
    thr = null_threshold(s[rl], alpha, side)
    with np.errstate(invalid="ignore"):
        above = s >= thr if side == "lower" else s > thr
    return np.isfinite(s) & above & ~rl


def score_agreement(a, b, memorized_a=None, memorized_b=None) -> dict[str, float]:
    """Spearman correlation of two score vectors and the Jaccard overlap of two row sets.

    Rows with a NaN score in either vector are left out of the correlation. The
    Jaccard overlap ``|A & B| / |A | B|`` is NaN when both sets are empty.

    Examples
    --------
    >>> r = score_agreement([0.1, 0.5, 0.9, 1.0], [0.2, 0.4, 1.0, 0.9],
    ...                     np.array([0, 0, 1, 1], bool), np.array([0, 0, 0, 1], bool))
    >>> round(r["spearman"], 2), r["jaccard"]
    (0.8, 0.5)
    """
    from scipy.stats import spearmanr

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    rho = float("nan")
    if ok.sum() > 2 and np.ptp(a[ok]) > 0 and np.ptp(b[ok]) > 0:
        rho = float(spearmanr(a[ok], b[ok]).statistic)
    out = {"spearman": rho, "n_compared": int(ok.sum())}
    if memorized_a is not None and memorized_b is not None:
        ma, mb = np.asarray(memorized_a, bool), np.asarray(memorized_b, bool)
        union = int((ma | mb).sum())
        out.update({"jaccard": float((ma & mb).sum() / union) if union else float("nan"),
                    "n_memorized_a": int(ma.sum()), "n_memorized_b": int(mb.sum())})
    return out


def half_assignment(n_members: int, block_size: int) -> np.ndarray:
    """Which half (0 / 1) every member goes to.

    Alternate whole blocks when the run is an even number of full blocks (each half is
    then itself a run of balanced blocks, like an independent ensemble of K/2); else
    alternate members.

    Examples
    --------
    >>> half_assignment(64, 16).reshape(4, 16)[:, 0].tolist()
    [0, 1, 0, 1]
    >>> half_assignment(6, 16).tolist()
    [0, 1, 0, 1, 0, 1]
    """
    k = np.arange(int(n_members))
    if n_members % (2 * block_size) == 0:
        return (k // int(block_size)) % 2
    return k % 2


def split_half_stability(mask, correct, is_random_label, *, halves=None,
                         score: str = "fractional", threshold: float | None = None,
                         alpha: float = 0.05, side: str = "lower", min_in: int = 1,
                         min_out: int = 3) -> dict[str, float]:
    """Agreement of the scores computed from two halves of the members.

    Parameters
    ----------
    mask, correct : arrays of shape (K, n)
        The run's membership mask and correctness on the training rows.
    is_random_label : array of shape (n,), bool
        The relabelled rows (the null); with none, the memorized sets are left out.
    halves : array of shape (K,) of 0 / 1, optional
        Which half every member goes to (default: alternate members).
    score : {"fractional", "difference"}
    threshold : float, optional
        A fixed threshold for the memorized sets (natural rows above it); default:
        each half's own null threshold (``alpha``, ``side``, see :func:`null_threshold`).
    min_in, min_out : rows with fewer IN / OUT members in a half get NaN there.

    Returns
    -------
    dict
        ``members_per_half``, ``spearman`` (of the two halves' scores),
        ``spearman_brown`` (``2 r / (1 + r)``, the correlation that the Spearman-Brown
        formula predicts for two ensembles of the full size), ``jaccard`` (overlap of
        the memorized natural rows) and the counts.
    """
    mask = np.asarray(mask, dtype=bool)
    correct = np.asarray(correct)
    rl = np.asarray(is_random_label, dtype=bool)
    k = mask.shape[0]
    halves = np.arange(k) % 2 if halves is None else np.asarray(halves)
    nan = float("nan")
    if k < 2 or not (halves == 0).any() or not (halves == 1).any():
        return {"members_per_half": k // 2, "spearman": nan, "spearman_brown": nan,
                "jaccard": nan, "n_compared": 0}
    scores, mem = [], []
    for h in (0, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StarvedExamplesWarning)
            s = subsample_scores(mask[halves == h], correct[halves == h], min_in=min_in,
                                 min_out=min_out).score(score)
        scores.append(s)
        if threshold is not None:
            with np.errstate(invalid="ignore"):
                mem.append(np.isfinite(s) & (s > threshold) & ~rl)
        elif rl.any() and np.isfinite(s[rl]).any():
            mem.append(memorized_by_null(s, rl, alpha=alpha, side=side))
        else:
            mem.append(None)
    res = score_agreement(scores[0], scores[1], *(mem if mem[0] is not None
                                                  and mem[1] is not None else (None, None)))
    r = res["spearman"]
    res["spearman_brown"] = 2 * r / (1 + r) if np.isfinite(r) and r > -1 else nan
    res.setdefault("jaccard", nan)
    res["members_per_half"] = int(min((halves == 0).sum(), (halves == 1).sum()))
    return res
