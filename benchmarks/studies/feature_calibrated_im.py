"""Study variant (issue 23, round 9): IMDetector whose score also reads each feature's error
on that feature's own scale.

IMDetector's loss is a mean over a view's columns of ``e_j = |x_hat_j - x_j|`` at early
recordings: a column the members reconstruct poorly for every row weighs as much as the
error that sets an anomaly apart, and a row far out in two of 30 columns (ADBench's
local anomalies) or whose columns break their joint relation (dependency anomalies) is
diluted by the other 28. ECOD, the best peer on the local tasks, sums per-feature tail
scores instead. Here every (kept snapshot, member, column) gets its own scale: ``c_j``,
the median of ``e_j`` over the recorded training rows, and the row's per-feature score is

* ``aggregation="log"``: ``mean_j log((e_j + c_j) / (2 c_j))``: a column at its typical
  error adds 0, one ten times it adds log 5.5; errors below typical are floored near
  ``log(1/2)`` so the noise of small errors does not count;
* ``aggregation="robust"``: ``mean_j max(0, (e_j - c_j) / iqr_j)``, the positive part of
  a per-column robust z-score.

Each is weighted over (recording, member) with the detector's own weights ``W``, giving
one extra score per view; the default views' scores and these are combined by the
detector's ``scaled_max`` (each in units of its spread on the training rows, the largest
wins), so a row is flagged by whichever reading finds it most abnormal. Training is
IMDetector's, unchanged (an IM score of networks trained on the contaminated data).

In-sample probe that motivated it (exploration, not a result: 10 development sources,
their local/dependency/clustered tasks and the real set, seed 1, one 70/30 split):
mean AUROC default -> log-combined: clustered 0.9858 -> 0.9923, dependency 0.8602 ->
0.8632, local 0.9313 -> 0.9381, real 0.7392 -> 0.7352; robust-combined: 0.9861, 0.8837,
0.9315, 0.7269. The out-of-fold rule decides (``fold_selection.py``).

This is study code, not part of ``imod``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 6))
>>> X[:8, 0] += 6.0                     # far out in one column of six
>>> det = FeatureCalibratedIM(random_state=0).fit(X)
>>> s = -det.score_samples(X)
>>> bool(np.median(s[:8]) > np.quantile(s[8:], 0.95))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from imod._runtime import torch_threads
from imod.detector import IMDetector
from imod.detector.scoring import combine_views
from imod.engine import StackedMLP

AGGREGATIONS = ("log", "robust")
_ROWS = 2048  # rows per forward pass (S*K members x rows x columns of float32)


def column_errors(view, Xt: np.ndarray) -> torch.Tensor:
    """``|x_hat - x|`` of every kept snapshot's members: ``(S, K, n, d)`` float32."""
    params = {n: torch.cat([s[n] for s in view.snapshots]) for n in view.snapshots[0]}
    members = StackedMLP(view.sizes, activation=view.activation)
    x = torch.as_tensor(np.asarray(Xt, dtype=np.float32))
    parts = []
    with torch.no_grad():
        for i in range(0, len(x), _ROWS):
            xb = x[i : i + _ROWS]
            parts.append((members.forward(params, xb) - xb).abs_())
    e = torch.cat(parts, dim=1)
    return e.view(len(view.snapshots), view.n_members, *e.shape[1:])


class FeatureCalibratedIM:
    """IMDetector plus a per-column calibrated reading of the same errors; see the module.

    Parameters
    ----------
    aggregation : {"log", "robust"}, default="log"
    random_state : int or None
    **params
        IMDetector's public parameters (its defaults otherwise).
    """

    def __init__(self, *, aggregation: str = "log", random_state: int | None = None,
                 **params: Any) -> None:
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.aggregation, self.random_state = aggregation, random_state
        self.detector_ = IMDetector(random_state=random_state, **params)

    def _projected(self, X: np.ndarray) -> np.ndarray:
        p = self.detector_.projection_
        return X if p is None else p.transform(X)

    def _column_scores(self, view, e: torch.Tensor, stats) -> np.ndarray:
        """Outlier score per row (higher = more abnormal) from errors ``e`` (S, K, n, d)."""
        c, iqr = stats
        if self.aggregation == "log":
            per = torch.log((e + c) / (2 * c)).mean(dim=-1)
        else:
            per = ((e - c) / iqr).clamp_min_(0).mean(dim=-1)
        W = torch.as_tensor(view.weights[view.used_recordings], dtype=per.dtype)
        return torch.einsum("sk,skn->n", W, per).double().numpy()

    def fit(self, X, y=None) -> FeatureCalibratedIM:
        det = self.detector_.fit(X)
        X = np.asarray(X, dtype=np.float64)
        P = self._projected(X)
        self.stats_, extra = [], []
        with torch_threads(det.n_threads):
            for v in det.views_:
                e = column_errors(v, v.preprocessor.transform(P[v.record_index]))
                q = torch.tensor([0.25, 0.5, 0.75])
                # one (snapshot, member) at a time: torch.quantile takes at most 2**24 values
                qs = torch.stack([torch.quantile(e_sk, q, dim=0, keepdim=True)
                                  for e_sk in e.flatten(0, 1)])  # (S*K, 3, 1, d)
                q25, c, q75 = qs.view(*e.shape[:2], 3, 1, e.shape[-1]).unbind(2)
                stats = (c.clamp_min(1e-12), (q75 - q25).clamp_min(1e-9))
                self.stats_.append(stats)
                extra.append(-self._column_scores(v, e, stats))
        self.train_lists_ = [v.train_scores for v in det.views_] + extra
        return self

    def score_samples(self, X) -> np.ndarray:
        det = self.detector_
        X = np.asarray(X, dtype=np.float64)
        P = self._projected(X)
        with torch_threads(det.n_threads):
            default = [-v.outlier_scores(P, torch.device("cpu")) for v in det.views_]
            extra = [-self._column_scores(v, column_errors(v, v.preprocessor.transform(P)), st)
                     for v, st in zip(det.views_, self.stats_, strict=True)]
        return combine_views(default + extra, self.train_lists_, "scaled_max")

    def decision_function(self, X) -> np.ndarray:
        return -self.score_samples(X)
