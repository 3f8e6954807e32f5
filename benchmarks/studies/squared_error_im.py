"""Study variant (issue 23, round 15): IMDetector that trains on the absolute error, as the
default does, but records and scores the squared error.

The whitened view's rows are spread evenly over their directions, so the members' residual
is about as large in every column, and a row that breaks one correlation (a dependency
anomaly) or sits far out in one direction (a local one) differs in a few columns only.
The mean absolute error over d columns raises such a row by about (5 - 0.8) / d for one
column 5 standard deviations out, against inlier noise of 0.6 / sqrt(d); the mean squared
error by (25 - 1) / d against 1.4 / sqrt(d): 2.4x the signal to noise. MCD, the best peer
on dependency anomalies, scores the squared (Mahalanobis) distance. Training stays on the
absolute error, whose bounded gradients keep the outliers from pulling the members early
(the IM effect); only the recordings that score rows, and the scoring of new rows, use the
squared error. ``candidates.c41_mse_loss`` trains on it as well.

This is study code, not part of ``imod``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.r_[rng.normal(size=(300, 5)), rng.uniform(-8, 8, size=(15, 5))]
>>> det = SquaredErrorScoresIM(random_state=0).fit(X)
>>> {v.loss for v in det.views_}
{'mse'}
>>> bool(np.allclose(det.train_scores_, det.score_samples(X), atol=1e-5))
True
"""

from __future__ import annotations

from unittest import mock

from imod.detector import IMDetector, training
from imod.engine.recorders import per_example_loss


class SquaredErrorScoresIM(IMDetector):
    """IMDetector trained on the absolute error, scored by the squared error."""

    def fit(self, X, y=None) -> SquaredErrorScoresIM:
        squared = per_example_loss("mse")
        with mock.patch.object(training, "per_example_loss", lambda loss: squared):
            super().fit(X, y)
        for view in self.views_:  # new rows are scored as the training rows were recorded
            view.loss = "mse"
        return self


class SquaredErrorIM(IMDetector):
    """IMDetector trained and scored on the squared error."""

    _fixed = IMDetector._fixed | {"loss": "mse"}


__all__ = ["SquaredErrorIM", "SquaredErrorScoresIM"]
