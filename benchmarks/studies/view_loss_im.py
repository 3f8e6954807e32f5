"""Study variant (issue 23, round 16): the squared error on the Gaussian-like views only.

Round 15's c41 trained and scored every view on the squared error: it gained on
dependency anomalies (+1.1 points) and the real sets (+0.2 each) and lost on clustered
(-1.2), local and global anomalies (-0.3 each), a tie with c38. The squared error suits
a view whose inliers' residuals are about Gaussian and evenly spread over the columns:
the whitened view (every direction of unit variance), where a row that breaks one
correlation differs in a few columns and the squared error weighs that 2.4x more against
the inliers' noise than the absolute error (``squared_error_im.py``), as MCD's squared
Mahalanobis distance does. The robust view (median and IQR scaling of the raw columns)
keeps the columns' heavy tails and clusters: there one far column dominates a row's
squared error, and the members' gradients, which the absolute error bounds. So
``ViewLossIM`` trains and scores chosen views on the squared error and the others on the
absolute error, all in today's one engine call: c43 the whitened view; c44 the whitened
and the quantile view (per-column normal scores: Gaussian marginals).

This is study code, not part of ``imod``.

Examples
--------
Two correlated columns; the last 15 rows keep both marginals but break the correlation:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> a = rng.normal(size=(315, 1))
>>> b = np.r_[a[:300] + 0.1 * rng.normal(size=(300, 1)), rng.permutation(a[300:])]
>>> X = np.c_[a, b, rng.normal(size=(315, 2))]
>>> det = ViewLossIM(random_state=0).fit(X)
>>> [(v.method, v.loss) for v in det.views_]
[('robust', 'l1'), ('whiten', 'mse'), ('quantile', 'l1')]
>>> scores = det.score_samples(X)  # lower = more abnormal
>>> bool(np.allclose(det.train_scores_, scores, atol=1e-5))
True
>>> bool(scores[300:].mean() < scores[:300].mean())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from unittest import mock

import numpy as np
import torch

from imod.detector import IMDetector, training
from imod.engine.losses import l1, mse


def _mixed_loss(squared: np.ndarray):
    """A per-example loss whose members ``squared[k]`` use the squared error, the others
    the absolute error; members of one loss are contiguous (views in order)."""
    edges = np.flatnonzero(np.diff(squared.astype(np.int8))) + 1
    segments = [(int(a), int(b), mse if squared[a] else l1)
                for a, b in zip(np.r_[0, edges], np.r_[edges, len(squared)], strict=True)]

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.shape[0] != len(squared):  # a chunk of members: their flags are unknown
            raise RuntimeError(f"{outputs.shape[0]} members in a chunk, {len(squared)} expected")
        own = targets.ndim == outputs.ndim
        parts = [fn(outputs[a:b], targets[a:b] if own else targets) for a, b, fn in segments]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    return loss


class ViewLossIM(IMDetector):
    """IMDetector whose ``squared_views`` train and score on the squared error."""

    squared_views: Sequence[str] = ("whiten",)

    def fit(self, X, y=None) -> ViewLossIM:
        original = training._train_group
        task = training.Task
        current: dict[str, object] = {}

        def train_group(X_, methods, preprocessors, counts, *args, **kwargs):
            flags = np.repeat([m in self.squared_views for m in methods], counts)
            current["loss"] = _mixed_loss(flags)
            return original(X_, methods, preprocessors, counts, *args, **kwargs)

        def make_task(*args, **kwargs):
            return task(*args, **{**kwargs, "loss": current["loss"]})

        with mock.patch.object(training, "_train_group", train_group), \
                mock.patch.object(training, "Task", make_task), \
                mock.patch.object(training, "per_example_loss",
                                  lambda loss: lambda o, t: current["loss"](o, t)):
            super().fit(X, y)
        for view in self.views_:  # new rows are scored as the training rows were recorded
            if view.method in self.squared_views:
                view.loss = "mse"
        return self


class WhitenQuantileSquaredIM(ViewLossIM):
    """The whitened and the quantile view on the squared error, the robust on the absolute."""

    squared_views = ("whiten", "quantile")


__all__ = ["ViewLossIM", "WhitenQuantileSquaredIM"]
