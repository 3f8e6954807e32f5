"""Study variant (issue 16, round 3): IMDetector on a Gaussian random projection.

Inputs wider than ``n_components`` columns are standardized (training mean and standard
deviation; constant columns map to 0; with ``standardize=False`` only centered, so the
projection keeps the distances of the columns as given, the metric that distance-based
peers such as KNN, LOF and CBLOF use) and multiplied by a fixed Gaussian matrix
``R`` of shape ``(d, n_components)`` with entries of variance ``1 / n_components``
(Johnson-Lindenstrauss: distances are kept up to a small distortion, the directions of
small variance included, unlike a principal-component projection). The default
IMDetector is then fitted on the projected rows. Narrower inputs go to IMDetector as
they are.

This is study code, not part of ``imod``.

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(300, 100))
>>> X[:5] += 4
>>> det = RandomProjectionIM(n_components=16, random_state=0).fit(X)
>>> s = -det.score_samples(X)
>>> bool(s[:5].mean() > np.median(s))
True
"""

from __future__ import annotations

import numpy as np

from imod.detector import IMDetector
from imod.detector.projection import random_projection


class RandomProjectionIM:
    """The default IMDetector on a random projection of wide inputs (see the module).

    Parameters
    ----------
    n_components : int, default=64
    standardize : bool, default=True
        Divide the centered columns by their standard deviations before projecting.
    random_state : int or None, default=None
        Seeds the projection and the detector.
    """

    def __init__(self, *, n_components: int = 64, standardize: bool = True,
                 random_state: int | None = None) -> None:
        self.n_components = n_components
        self.standardize = standardize
        self.random_state = random_state

    def fit(self, X, y=None) -> RandomProjectionIM:
        X = np.asarray(X, dtype=np.float64)
        d = X.shape[1]
        self.projection_ = None
        if d > self.n_components:
            self.mean_ = X.mean(axis=0)
            std = X.std(axis=0) if self.standardize else np.ones(d)
            self.std_ = np.where(std > 0, std, 1.0)
            self.projection_ = random_projection(d, self.n_components, self.random_state)
        self.detector_ = IMDetector(random_state=self.random_state).fit(self._project(X))
        return self

    def _project(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.projection_ is None:
            return X
        return ((X - self.mean_) / self.std_) @ self.projection_

    def score_samples(self, X) -> np.ndarray:
        """Higher = more normal (``imod bench`` scores ``-score_samples``)."""
        return self.detector_.score_samples(self._project(X))
