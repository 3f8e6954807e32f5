"""Why a row scores as it does: each input feature's share of its outlier score.

A view's outlier score of a row is a weighted mean over member-snapshots ``m`` of a
normalized loss, ``o = sum_m W_m z_m`` with ``z_m = log(L_m / c_m)`` (``c_m`` the member's
median training loss), and the loss is a mean over the view's columns,
``L_m = mean_j e_mj`` (``e = |x_hat - x|``). Three steps take ``o`` apart, each exact in
its sum:

1. **Inside the network** (exact): column ``j`` gets its share of the loss,
   ``sum_m W_m z_m e_mj / sum_j e_mj``. The contributions of a row sum to ``o``, whose
   zero is a row at every member's median training loss. (For a robust z-score
   normalization, ``z_m = (L_m - c_m) / s_m`` is linear in the ``e_mj`` and each column
   gets ``W_m (e_mj - c_m) / (d s_m)``.) This is not a gradient: a reconstruction loss
   already says where the network failed, column by column.
2. **Through a linear map** (exact for the map): a whitened component
   ``u_k = sum_i M_ki a_i`` (``a`` the centered inputs) and a randomly projected column
   are linear, and input ``i``'s term ``M_ki a_i`` is its exact Shapley value in ``u_k``
   against the training mean. Column ``k``'s contribution is split in proportion to
   those terms, ``M_ki a_i / u_k``, so the split sums to it exactly. Where the terms
   cancel (``|u_k| <= 1e-2 sum_i |M_ki a_i|``) the ratios grow without bound and
   credit inputs with large opposite amounts for a column they barely move; there the
   split follows ``|M_ki a_i|`` instead (still summing exactly; the threshold was
   chosen out of fold, see ``_CANCELLATION``). What is *not* exact
   is the attribution of the network's non-linear response to those inputs: step 1
   credits the column where the loss appears, step 2 credits the inputs in proportion
   to what they put into that column. A projection to fewer columns than inputs can
   only tell inputs apart through their share of each column; an input far from its
   training range dominates every column it enters, which is what the known-answer test
   (a feature shifted far out of range ranks first) checks.
3. **Across the views** (exact): the score is the largest of the views' outlier scores
   after each is put on a common scale by an affine map (``view_maps``); the deciding
   view's contributions are scaled by its map's factor, and the map's offset is the
   row's ``reference``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine import StackedMLP
from ..engine.runtime import memory_budget
from .scoring import normalize, view_maps
from .ties import first_copies
from .views import View, batch_rows

__all__ = ["Explanation", "explain_rows"]

# Below this ratio of |u_k| to sum_i |M_ki a_i| the inputs' terms cancel, and the split
# follows their sizes instead of their signed ratios (step 2 of the module docstring).
# Chosen out of fold among 1e-4 ... 1e-1 by how often a feature moved out of its range
# ranks first (benchmarks/conventions/explain_known_answer.py; each of the 5 folds'
# other four chose 1e-2; mean rate 0.959 on the 48 development sets against 0.904 at
# 1e-4 and 0.945 at 1e-1).
_CANCELLATION = 1e-2
# Rows explained at a time: the linear maps hold a few rows x inputs float64 arrays, and
# at 2048 rows they stay small enough to be reused (10,000 x 768: 1.5 s at 2048 rows,
# 2.0 s at 8192 or 512; scoring them 0.76 s).
_ROW_BLOCK = 2048


@dataclass(frozen=True)
class Explanation:
    """Per-feature contributions to outlier scores (:meth:`IMDetector.explain`).

    Attributes
    ----------
    contributions : ndarray of shape (n_samples, n_features)
        Each input feature's contribution to the row's outlier score, in the units of the
        score (positive: makes the row more abnormal).
    scores : ndarray of shape (n_samples,)
        The outlier scores explained (higher = more abnormal): ``-score_samples(X)`` up to
        the float32 rounding of the losses (below 1e-5).
    reference : ndarray of shape (n_samples,)
        The score of a row at every member's median training loss in the deciding view
        (one value per view, close to the median training score):
        ``contributions.sum(axis=1) == scores - reference`` to float64 rounding.
    feature_names : ndarray of str of shape (n_features,)
    views : ndarray of str of shape (n_samples,)
        The preprocessing view that decided each row's score.
    """

    contributions: np.ndarray
    scores: np.ndarray
    reference: np.ndarray
    feature_names: np.ndarray
    views: np.ndarray

    def top_features(self, row: int, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` features with the largest contributions to ``row``'s score."""
        c = self.contributions[row]
        order = np.argsort(-c, kind="stable")[:k]
        return [(str(self.feature_names[j]), float(c[j])) for j in order]


def explain_rows(detector, X: np.ndarray, device: torch.device) -> Explanation:
    """:class:`Explanation` of the validated rows ``X`` by a fitted ``IMDetector``."""
    n, d = X.shape
    # copies of a row get the first copy's numbers, bit for bit: only first copies are
    # explained
    first = first_copies(X)
    own = np.flatnonzero(first == np.arange(n))
    contributions, scores, reference = np.empty((n, d)), np.empty(n), np.empty(n)
    views = np.empty(n, dtype=object)
    for i in range(0, len(own), _ROW_BLOCK):  # written in place: the contributions are n x d
        rows = own[i : i + _ROW_BLOCK]
        (contributions[rows], scores[rows], reference[rows],
         views[rows]) = _explain_block(detector, X[rows], device)
    copies = np.flatnonzero(first != np.arange(n))
    for values in (contributions, scores, reference, views):
        values[copies] = values[first[copies]]
    names = getattr(detector, "feature_names_in_", None)
    return Explanation(
        contributions=contributions, scores=scores, reference=reference,
        feature_names=np.asarray([f"x{j}" for j in range(d)] if names is None else names,
                                 dtype=object),
        views=views)


def _explain_block(detector, X: np.ndarray, device: torch.device):
    projection = detector.projection_
    if projection is None:
        Xp = X
    else:  # RandomProjection.transform, keeping the centered rows A
        A = projection.centered(X)
        Xp = A @ projection.components_
    per_view = [_view_contributions(v, Xp, device) for v in detector.views_]
    outlier = np.stack([o for o, _ in per_view])  # (V, n)
    methods = np.asarray([v.method for v in detector.views_], dtype=object)
    combination = detector._fixed["view_combination"]
    if len(per_view) == 1 or combination == "mean":
        contributions = np.mean([c for _, c in per_view], axis=0)
        scores, reference = outlier.mean(axis=0), np.zeros(X.shape[0])
        winner = np.zeros(X.shape[0], dtype=int)
    else:
        # combine_views in outlier terms: the largest of -target + (o_v + center_v) f_v
        target, center, factor = view_maps([v.train_scores for v in detector.views_],
                                           combination)
        mapped = -target + (outlier + center[:, None]) * factor[:, None]
        winner = np.argmax(mapped, axis=0)
        rows = np.arange(X.shape[0])
        scores = mapped[winner, rows]
        reference = -target + center[winner] * factor[winner]
        stacked = np.stack([c for _, c in per_view])  # (V, n, d_p)
        contributions = stacked[winner, rows] * factor[winner][:, None]
    if projection is not None:
        contributions = _through_linear(contributions, A, projection.components_.T, u=Xp)
    return contributions, scores, reference, methods[winner]


def _view_contributions(view: View, Xp: np.ndarray, device: torch.device):
    """The view's outlier scores ``(n,)`` and their split over the view's input columns
    (the projected columns when the detector projects), ``(n, d_p)``."""
    pre = view.preprocessor
    Xt = pre.transform(Xp)
    used = view.used_recordings
    w = torch.as_tensor(view.weights[used].reshape(-1), dtype=torch.float64, device=device)
    center = torch.as_tensor(view.center[used].reshape(-1, 1), dtype=torch.float64,
                             device=device)
    scale = torch.as_tensor(view.scale[used].reshape(-1, 1), dtype=torch.float64,
                            device=device)
    params = {name: torch.cat([snap[name] for snap in view.snapshots]).to(device)
              for name in view.snapshots[0]}
    members = StackedMLP(view.sizes, activation=view.activation)
    n_members = len(used) * view.n_members
    # the per-column losses of every member: about twice the activations' bytes
    step = batch_rows(view.sizes, 2 * n_members, memory_budget(device, "score"))
    x = torch.as_tensor(Xt, dtype=torch.float32, device=device)
    d = x.shape[1]
    scores, columns = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], step):
            xb = x[i : i + step]
            e = members.forward(params, xb).sub_(xb)  # (M, b, d) residuals, float32
            e = e.abs_() if view.loss == "l1" else e.square_()
            total = e.sum(dim=2)  # (M, b)
            if view.normalization == "log_ratio":
                # each member's weighted normalized loss, split over the columns in
                # proportion to their losses (a member without loss: evenly)
                q = w[:, None] * normalize(total.double() / d, center[:, 0], None,
                                           "log_ratio")  # (M, b) float64
                per = q / torch.where(total > 0, total, 1.0).double()
                even = torch.where(total > 0, 0.0, q).sum(dim=0, keepdim=True).T / d
            else:  # robust z-score: linear in the per-column losses
                q = w[:, None] * (total.double() / d - center) / scale
                per = (w[:, None] / scale / d).expand_as(q)
                even = -(w[:, None] * center / scale).sum(dim=0, keepdim=True).T / d
            weights = per.float()[:, :, None]
            cols = e[0] * weights[0]
            for m in range(1, e.shape[0]):  # 2x faster than a weighted sum over dim 0
                cols.addcmul_(e[m], weights[m])
            cols = cols.double() + even
            scores.append(q.sum(dim=0))
            columns.append(cols)
    scores_np = torch.cat(scores).cpu().numpy()
    cols_np = _keep_sums(torch.cat(columns).cpu().numpy(), scores_np)
    if pre.components_ is not None:  # whitening: linear in the prescaled, centered inputs
        A = pre.centered(Xp)
        cols_np = _through_linear(cols_np, A, pre.components_ / pre.scale_[:, None])
    return scores_np, cols_np


def _keep_sums(cols: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """``cols`` (changed in place) with each row's float32 rounding gap to ``sums`` spread
    over its entries in proportion to their sizes, so the rows sum to ``sums`` to float64
    rounding."""
    gap = sums - cols.sum(axis=1)
    part = np.abs(cols)
    size = part.sum(axis=1)
    part *= (gap / np.where(size > 0, size, 1.0))[:, None]
    cols += part
    cols[size == 0] += (gap[size == 0] / cols.shape[1])[:, None]
    return cols


def _through_linear(c: np.ndarray, A: np.ndarray, M: np.ndarray,
                    u: np.ndarray | None = None) -> np.ndarray:
    """Split contributions ``c`` ``(n, k)`` of the columns ``u = A @ M.T`` (given or
    computed) over the inputs ``A`` ``(n, d)`` (step 2 of the module docstring); each
    row's sum is kept (to float64 rounding). Three ``(n, k, d)`` matrix products.

    Examples
    --------
    >>> import numpy as np
    >>> A, M = np.array([[3.0, 1.0]]), np.array([[1.0, 1.0], [1.0, -3.0]])
    >>> out = _through_linear(np.array([[4.0, 2.0]]), A, M)  # u = [4, 0]: terms cancel
    >>> out.round(3).tolist(), float(out.sum())
    ([[4.0, 2.0]], 6.0)
    """
    u = A @ M.T if u is None else u
    abs_a, abs_m = np.abs(A), np.abs(M)
    size = abs_a @ abs_m.T  # sum_i |M_ki a_i|
    signed = np.abs(u) > _CANCELLATION * size
    moved = ~signed & (size > 0)
    out = np.where(signed, c / np.where(signed, u, 1.0), 0.0) @ M
    out *= A  # in place: arrays of n x d are the cost here
    if moved.any():
        part = np.where(moved, c / np.where(moved, size, 1.0), 0.0) @ abs_m
        part *= abs_a
        out += part
    # columns no input moved (a row at the training mean): spread evenly
    still = np.where(signed | moved, 0.0, c).sum(axis=1)
    out += still[:, None] / A.shape[1]
    return out
