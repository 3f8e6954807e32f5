"""From early-training losses to outlier scores.

Everything here works on recorded losses ``L`` of shape ``(T, K, m)``: ``T``
recordings during training, ``K`` ensemble members, ``m`` recorded examples.

1. :func:`robust_stats` gives the median and inter-quartile range of each
   (recording, member) slice, and :func:`normalize` puts the slice on a common
   scale with them (the log of the loss over the median, or a robust z-score), so
   every recording and every member weighs the same in the final average (raw
   losses shrink by orders of magnitude during training, and members differ). The
   statistics are kept so new data is normalized identically.
2. A *selection rule* (``SELECTORS``) turns the normalized losses into a weight
   matrix ``W`` of shape ``(T, K)`` summing to 1. The outlier score of ``x`` is
   ``sum_{t,k} W[t, k] * z_{t,k}(x)``. Every scoring option is just a way to
   choose ``W``; adding one means adding a function to ``SELECTORS``.
3. :func:`bimodality` is ODIM's label-free criterion (Kim et al., ICML 2024):
   min-max scale the losses, fit a two-component 1-D Gaussian mixture, and
   measure ``(mu0 - mu1)^2 + (var0 - var1)^2``. It is large when the losses split
   into a low (memorized inliers) and a high (not yet fitted outliers) group.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "NORMALIZATIONS",
    "SCORE_METHODS",
    "SELECTORS",
    "VIEW_COMBINATIONS",
    "bimodality",
    "combine_views",
    "normalize",
    "offset_from",
    "robust_stats",
    "select_weights",
    "tie_margin",
    "view_maps",
]


def robust_stats(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and spread along the last axis, never zero.

    The spread is the inter-quartile range; where that is 0 (over half of the
    examples share one loss) the mean absolute deviation, and where that is 0
    too (all equal) 1, so normalized values stay finite.
    """
    x = np.asarray(losses, dtype=np.float64)
    q25, med, q75 = np.percentile(x, [25, 50, 75], axis=-1)
    spread = q75 - q25
    mad = np.abs(x - med[..., None]).mean(axis=-1)
    spread = np.where(spread > 0, spread, mad)
    spread = np.where(spread > 0, spread, 1.0)
    return med, spread


NORMALIZATIONS = ("log_ratio", "robust_z")

# Keeps the log finite for a loss (or a median) of exactly 0.
_LOG_FLOOR = 1e-12


def normalize(losses, center, scale, method: str = "robust_z"):
    """Normalized losses in float64, broadcast over the last (example) axis.

    ``"robust_z"``: ``(losses - center) / scale``. ``"log_ratio"``:
    ``log(losses + eps) - log(center + eps)``, scale-free (a loss 3x the member's
    median counts the same in every member and recording) and with the heavy upper
    tail compressed, so no single member or view dominates an average or a maximum.

    The one copy of the formula: NumPy arrays in, a NumPy array out (training's
    scores); torch tensors in, a tensor out on their device (scoring new rows, on a
    float64 copy changed in place).

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[1.0, 2.0, 4.0]])
    >>> normalize(L, np.array([2.0]), np.array([1.0]))
    array([[-1.,  0.,  2.]])
    >>> normalize(L, np.array([2.0]), np.array([1.0]), "log_ratio").round(3)
    array([[-0.693,  0.   ,  0.693]])
    """
    import torch

    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {method!r}; choose one of {NORMALIZATIONS}")
    if not isinstance(losses, torch.Tensor):
        as_t = [torch.from_numpy(np.array(a, dtype=np.float64)) for a in (losses, center, scale)]
        return normalize(*as_t, method).numpy()
    x = losses.to(torch.float64, copy=True)
    c = torch.as_tensor(center, dtype=torch.float64, device=x.device)[..., None]
    if method == "log_ratio":
        return x.add_(_LOG_FLOOR).log_().sub_(torch.log(c + _LOG_FLOOR))
    s = torch.as_tensor(scale, dtype=torch.float64, device=x.device)[..., None]
    return x.sub_(c).div_(s)


def bimodality(values: np.ndarray, n_iter: int = 60) -> np.ndarray:
    """ODIM's bimodality ``(mu0 - mu1)^2 + (var0 - var1)^2`` per row.

    Parameters
    ----------
    values : ndarray of shape (M, m)
        ``M`` independent series of ``m`` values each (e.g. one per recording).
    n_iter : int
        EM iterations. The fit is a vectorized 1-D two-component Gaussian
        mixture (k-means start, variance floor 1e-6 as in sklearn's
        ``GaussianMixture``), ~100x faster than one sklearn fit per row.

    Returns
    -------
    ndarray of shape (M,)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> one = rng.normal(size=500)
    >>> two = np.r_[rng.normal(size=450), rng.normal(8, 1, size=50)]
    >>> b = bimodality(np.stack([one, two]))
    >>> bool(b[1] > b[0])
    True
    """
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
    # k-means start from the quartiles (a few Lloyd steps), then EM.
    mu = np.percentile(x, [25, 75], axis=1).T  # (M, 2)
    for _ in range(5):
        upper = np.abs(x - mu[:, 1:2]) < np.abs(x - mu[:, 0:1])
        n1 = upper.sum(axis=1)
        n0 = x.shape[1] - n1
        mu0 = np.where(n0 > 0, (x * ~upper).sum(axis=1) / np.maximum(n0, 1), mu[:, 0])
        mu1 = np.where(n1 > 0, (x * upper).sum(axis=1) / np.maximum(n1, 1), mu[:, 1])
        mu = np.stack([mu0, mu1], axis=1)
    r1 = upper.astype(np.float64)
    reg = 1e-6
    for _ in range(n_iter):
        r0 = 1.0 - r1
        w0, w1 = r0.sum(axis=1) + 1e-12, r1.sum(axis=1) + 1e-12
        m0, m1 = (r0 * x).sum(axis=1) / w0, (r1 * x).sum(axis=1) / w1
        v0 = (r0 * (x - m0[:, None]) ** 2).sum(axis=1) / w0 + reg
        v1 = (r1 * (x - m1[:, None]) ** 2).sum(axis=1) / w1 + reg
        pi1 = w1 / (w0 + w1)
        # log densities, then responsibilities of component 1 (stable softmax)
        l0 = np.log1p(-pi1 + 1e-12)[:, None] - 0.5 * (
            np.log(v0)[:, None] + (x - m0[:, None]) ** 2 / v0[:, None]
        )
        l1 = np.log(pi1 + 1e-12)[:, None] - 0.5 * (
            np.log(v1)[:, None] + (x - m1[:, None]) ** 2 / v1[:, None]
        )
        r1 = 1.0 / (1.0 + np.exp(np.clip(l0 - l1, -700, 700)))
    return (m0 - m1) ** 2 + (v0 - v1) ** 2


# ----------------------------------------------------------------------------- selectors
# Each selector gets the normalized losses Z (T, K, m) and the recording epochs
# (T,) plus the detector's options, and returns (W (T, K), bimodality info (T,)).

Selector = Callable[..., tuple[np.ndarray, np.ndarray | None]]


def _select_window(Z, epochs, *, window=None, **_) -> tuple[np.ndarray, None]:
    T, K = Z.shape[:2]
    if window is None:
        use = np.ones(T, dtype=bool)
    else:
        start, stop = window
        use = (epochs >= start - 1e-9) & (epochs <= stop + 1e-9)
        if not use.any():
            raise ValueError(
                f"window={tuple(window)} holds no recording; recordings were at epochs "
                f"{np.round(epochs, 3).tolist()}"
            )
    W = np.zeros((T, K))
    W[use] = 1.0
    return W / W.sum(), None


def _select_last(Z, epochs, **_) -> tuple[np.ndarray, None]:
    W = np.zeros(Z.shape[:2])
    W[-1] = 1.0
    return W / W.sum(), None


def _select_auto(Z, epochs, *, auto_halfwidth: int = 1, **_) -> tuple[np.ndarray, np.ndarray]:
    # The ensemble-mean normalized loss is far less noisy than one member's, so
    # the bimodality peak is located once for all members.
    T, K = Z.shape[:2]
    b = bimodality(Z.mean(axis=1))
    best = int(np.argmax(b))
    lo, hi = max(0, best - auto_halfwidth), min(T, best + auto_halfwidth + 1)
    W = np.zeros((T, K))
    W[lo:hi] = 1.0
    return W / W.sum(), b


def _select_odim(Z, epochs, **_) -> tuple[np.ndarray, np.ndarray]:
    # ODIM: every member keeps its own snapshot of maximal bimodality.
    T, K, m = Z.shape
    b = bimodality(Z.reshape(T * K, m)).reshape(T, K)
    W = np.zeros((T, K))
    W[b.argmax(axis=0), np.arange(K)] = 1.0
    return W / W.sum(), b.mean(axis=1)


SELECTORS: dict[str, Selector] = {
    "auto": _select_auto,
    "window": _select_window,
    "last": _select_last,
    "odim": _select_odim,
    # "holdout" selects its window like "auto"; what differs is which members
    # score a training example (those that did not train on it).
    "holdout": _select_auto,
}
SCORE_METHODS = tuple(SELECTORS)


def select_weights(method: str, Z: np.ndarray, epochs: np.ndarray, **options):
    """Weights ``(T, K)`` (summing to 1) and bimodality per recording (or None)."""
    if method not in SELECTORS:
        raise ValueError(f"unknown score {method!r}; choose one of {SCORE_METHODS}")
    return SELECTORS[method](Z, epochs, **options)


# ----------------------------------------------------------------------------- views and threshold
# How the views' outlier scores become one.
VIEW_COMBINATIONS = ("scaled_max", "max", "mean")

# Margin beyond the threshold: rows level with it (up to rounding) are not flagged.
_TIE_MARGIN = 1e-6
# Scores are log ratios or robust z-scores, of order 1: a spread below this is rounding
# noise (e.g. identical rows), and dividing by it would blow the noise up.
_MIN_SPREAD = 1e-6


def combine_views(
    scores: list[np.ndarray], train_scores: list[np.ndarray], method: str
) -> np.ndarray:
    """One score (higher = more normal) from the views' scores.

    ``"max"``: the view that finds a row most abnormal (the minimum, since
    scores are higher = more normal). ``"scaled_max"``: the same after each
    view's scores are put in units of its own spread over the training rows
    (median and inter-quartile range of ``train_scores``) and mapped back to the
    views' mean median and spread, one affine map for all views, so the scale
    stays that of the views. A view whose spread is below ``1e-6`` (rounding
    noise, as when all training rows are identical) is left unscaled.
    ``"mean"``: the plain mean.

    Examples
    --------
    >>> import numpy as np
    >>> train = [np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 10.0, 20.0, 30.0])]
    >>> combine_views([np.array([1.5]), np.array([5.0])], train, "max")
    array([1.5])
    >>> combine_views([np.array([1.5]), np.array([5.0])], train, "scaled_max").round(3)
    array([2.75])
    """
    if len(scores) == 1:
        return np.asarray(scores[0], dtype=np.float64)
    if method == "mean":
        return np.mean(scores, axis=0)
    target, center, factor = view_maps(train_scores, method)
    return np.min([target + (s - ci) * fi for s, ci, fi in zip(scores, center, factor,
                                                                strict=True)], axis=0)


def view_maps(
    train_scores: list[np.ndarray], method: str
) -> tuple[float, np.ndarray, np.ndarray]:
    """The affine maps ``target + (s - center[v]) * factor[v]`` that put each view's
    scores on one scale before :func:`combine_views` takes their minimum (``"max"``:
    the identity; ``"scaled_max"``: see :func:`combine_views`)."""
    n_views = len(train_scores)
    if method == "max":
        return 0.0, np.zeros(n_views), np.ones(n_views)
    if method != "scaled_max":
        raise ValueError(f"unknown view_combination {method!r}; choose one of {VIEW_COMBINATIONS}")
    c, w = np.array([robust_stats(t) for t in train_scores]).T
    # A view without spread (rounding noise only) keeps its own units: dividing by
    # its spread would blow the noise up to the scale of the other views.
    spread = w >= _MIN_SPREAD
    unit = w[spread].mean() if spread.any() else 1.0
    factor = np.where(spread, unit / np.where(spread, w, 1.0), 1.0)
    return float(c.mean()), c, factor


def tie_margin(threshold: float) -> float:
    """How far a threshold at ``threshold`` is moved towards the outliers: ``1e-6``,
    relative beyond 1. Scores are means of logs of float32 losses; the same row scored
    at another place in a batch, or from training's records instead of by
    ``score_samples``, moved by up to 6e-8 (cardio and Pima, default detector), so a
    difference below this margin is rounding, not evidence, and flags no row.

    Examples
    --------
    >>> tie_margin(0.5), tie_margin(-250.0)
    (1e-06, 0.00025)
    """
    return _TIE_MARGIN * max(1.0, abs(float(threshold)))


def offset_from(train_scores: np.ndarray, contamination, normalization: str) -> float:
    """The threshold ``offset_`` on scores (higher = more normal) of the training rows.

    A float ``contamination``: that percentile of the training scores.
    ``"auto"``: Tukey's fence, Q3 + 1.5 IQR of the outlier scores, on the loss-ratio
    scale (``exp``) for ``"log_ratio"`` (a fence on the log scale flags almost
    nothing) and as they are for ``"robust_z"``. Either threshold is moved by
    ``1e-6`` (relative beyond 1) towards the outliers, so that rows level with it
    up to rounding, as tied or identical rows are, are not flagged.

    Examples
    --------
    >>> import numpy as np
    >>> offset_from(np.zeros(10), "auto", "log_ratio") < 0
    True
    """
    s = np.asarray(train_scores, dtype=np.float64)
    if contamination != "auto":
        p = float(np.percentile(s, 100.0 * contamination))
        return p - tie_margin(p)
    outlier = -s
    log_scale = normalization == "log_ratio"
    values = np.exp(np.minimum(outlier, 700.0)) if log_scale else outlier
    q1, q3 = np.percentile(values, [25, 75])
    fence = q3 + 1.5 * (q3 - q1)
    if log_scale:
        return float(-np.log(fence) - _TIE_MARGIN)
    return float(-fence - tie_margin(fence))
