"""C-scores and LiRA membership scores from the same masks and per-member recordings.

* :func:`c_scores` -- Jiang et al. (2021): the consistency score of an example is
  its expected accuracy under models trained on random subsets that leave it out,
  averaged over subset rates. One run at rate ``r`` gives the held-out accuracy at
  ``r`` (``p_out``); runs at several rates give the average over rates.
* :func:`lira_scores` -- Carlini et al. (2022), online LiRA: for every example fit
  one Gaussian to its logit-scaled confidence ``phi = z_y - logsumexp_{y' != y} z_y'``
  over the members that trained on it (IN) and one over those that did not (OUT);
  the membership score of example ``i`` against member ``k`` is the log likelihood
  ratio ``log N(phi_ki; mu_in, s_in) - log N(phi_ki; mu_out, s_out)``, the Gaussians
  fitted on the *other* members (member ``k`` is the target, the rest its shadows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["c_scores", "lira_scores", "membership_auroc"]

#: Floor on the per-example standard deviation of phi (a member that fits a point
#: perfectly gives near-constant confidences).
MIN_STD = 1e-3


def c_scores(runs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """C-score of every example: held-out accuracy, averaged over runs (subset rates).

    Parameters
    ----------
    runs : sequence of ``(mask, correct)`` pairs
        One pair per subset rate, each ``(K_r, n)``: ``mask[k, i]`` True when member
        ``k`` trained on example ``i``, ``correct[k, i]`` its 0/1 correctness.

    Returns
    -------
    ndarray of shape (n,)
        ``mean_r mean_{k: i OUT in run r} correct[k, i]``; NaN where some run never
        holds the example out.

    Examples
    --------
    >>> m = np.array([[1, 0], [0, 1], [0, 0]], bool)
    >>> c = np.array([[1, 1], [0, 1], [1, 0]])
    >>> c_scores([(m, c)]).tolist()
    [0.5, 0.5]
    """
    if len(runs) == 0:
        raise ValueError("c_scores needs at least one (mask, correct) run")
    per_rate = []
    for mask, correct in runs:
        mask = np.asarray(mask, dtype=bool)
        correct = np.asarray(correct, dtype=float)
        if mask.shape != correct.shape or mask.ndim != 2:
            raise ValueError(f"mask {mask.shape} and correct {correct.shape} must be equal (K, n)")
        out = ~mask
        n_out = out.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_rate.append(np.where(n_out > 0, (correct * out).sum(0) / n_out, np.nan))
    n = {p.shape for p in per_rate}
    if len(n) != 1:
        raise ValueError(f"all runs must cover the same examples, got shapes {sorted(n)}")
    return np.mean(per_rate, axis=0)


def _leave_one_out_moments(values, member_of):
    """Mean and std of ``values`` over the members of a group, leaving out each member.

    ``values, member_of`` are ``(K, n)``; returns ``(K, n)`` arrays: for member ``k``
    and example ``i`` the moments over the other members ``j != k`` of the group.
    """
    w = member_of.astype(np.float64)
    s0 = w.sum(0, keepdims=True) - w
    s1 = (w * values).sum(0, keepdims=True) - w * values
    s2 = (w * values**2).sum(0, keepdims=True) - w * values**2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / s0
        var = (s2 - s0 * mean**2) / (s0 - 1)
    std = np.sqrt(np.maximum(var, 0.0))
    return mean, np.maximum(std, MIN_STD), s0


def lira_scores(mask, phi, *, min_count: int = 2) -> np.ndarray:
    """Online LiRA log likelihood ratios, ``(K, n)``.

    Parameters
    ----------
    mask : array of shape (K, n)
        ``True`` where member ``k`` trained on example ``i``.
    phi : array of shape (K, n)
        Logit-scaled confidence of member ``k`` on example ``i``'s (training) label.
    min_count : int
        Fewer than ``min_count`` other IN or OUT members for an example -> NaN.

    Returns
    -------
    ndarray of shape (K, n)
        ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)`` with sample means and
        standard deviations (ddof=1, at least :data:`MIN_STD`) over the IN / OUT
        members other than ``k``; higher = more evidence that ``k`` trained on ``i``.

    Examples
    --------
    >>> mask = np.array([[1], [1], [1], [0], [0], [0]], bool)
    >>> phi = np.array([[5.0], [6.0], [7.0], [0.0], [1.0], [-1.0]])
    >>> s = lira_scores(mask, phi)
    >>> bool((s[:3] > 0).all() and (s[3:] < 0).all())
    True
    """
    mask = np.asarray(mask, dtype=bool)
    phi = np.asarray(phi, dtype=np.float64)
    if mask.ndim != 2 or phi.shape != mask.shape:
        raise ValueError(f"mask {mask.shape} and phi {phi.shape} must be equal (K, n)")
    if not np.isfinite(phi).all():
        raise ValueError("phi holds NaN or infinite values")
    mu_in, sd_in, n_in = _leave_one_out_moments(phi, mask)
    mu_out, sd_out, n_out = _leave_one_out_moments(phi, ~mask)

    def logpdf(x, mu, sd):
        return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)  # the 0.5 log(2 pi) terms cancel

    lr = logpdf(phi, mu_in, sd_in) - logpdf(phi, mu_out, sd_out)
    lr[(n_in < min_count) | (n_out < min_count)] = np.nan
    return lr


def membership_auroc(mask, scores) -> dict[str, float]:
    """AUROC and TPR at 1 % / 0.1 % FPR of a ``(K, n)`` membership score over all pairs."""
    from sklearn.metrics import roc_auc_score, roc_curve

    mask = np.asarray(mask, dtype=bool).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    ok = np.isfinite(s)
    if ok.sum() == 0 or mask[ok].all() or not mask[ok].any():
        nan = float("nan")
        return {"auroc": nan, "tpr_at_1fpr": nan, "tpr_at_01fpr": nan}
    fpr, tpr, _ = roc_curve(mask[ok], s[ok])
    return {
        "auroc": float(roc_auc_score(mask[ok], s[ok])),
        "tpr_at_1fpr": float(np.interp(0.01, fpr, tpr)),
        "tpr_at_01fpr": float(np.interp(0.001, fpr, tpr)),
    }
