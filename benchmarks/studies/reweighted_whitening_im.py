"""Study variant (issue 23, round 14): the whitened view estimated without the anomalies.

The whitened view divides each principal direction by its spread, so its early losses
grow with a row's Mahalanobis-like distance: the view that carries dependency anomalies
(every marginal normal, only the joint broken). Its mean and covariance are today those
of *every* training row, anomalies included. Anomalies whose features are independent
dilute the inliers' correlations (by about the anomaly rate), and a clustered group far
out stretches the variance towards itself, so in both cases the very rows to be found
set the yardstick that should expose them. MCD, the best peer on dependency anomalies
and second on the real Classical sets, estimates its covariance from the rows closest
to the centre instead.

Here the whitening is reweighted as MCD's C-steps do it, from the ordinary estimate:
keep the 70 % of rows with the smallest whitened distance (the share the members'
trimmed loss, ``trim=0.3``, already treats as possibly anomalous), re-estimate centre,
directions and Ledoit-Wolf-shrunk variances on them, repeat until the kept rows no
longer change (at most 10 steps), then scale the variances so the median distance of
all rows is the chi-square median (MCD's consistency correction: the kept rows are the
central ones, so their variances alone are too small by a common factor). Everything
else is ``IMDetector(preprocessing=("robust", "whiten", "quantile"))`` (c37, today's
default): the other views are robust already (median and IQR; empirical quantiles).

c39 (:class:`PlainSelectionPreprocessor`, added after c38 was scored and before c39 was)
differs in one step only: which rows are central is decided by the distance under the
kept rows' plain covariance, as MCD's C-steps do, and the Ledoit-Wolf shrinkage enters
only the whitening that is applied. Found by a unit test, not by a score: with
shrinkage in the selection metric a direction of small variance is inflated there, the
rows are then chosen mostly along the large directions, those get truncated hardest,
and the steps feed that back (two correlated Gaussian columns, no anomalies: whitened
variances 2.18 and 0.31 on all rows where the ordinary whitening gives 1.00 and 0.12,
c39 0.89 and 0.14).

c40 (:class:`CentralCapPreprocessor`, added after c38 and c39 were scored and before c40
was) is c39 with one more step of the port's unit tests carried over: the whitening keeps
at most ``n_distinct / rows_per_component`` directions, counted on the rows it is fitted
to. c38 and c39 count every row's copies, so on a small set resampled with copies (as
ADBench does to image/text sets of a few hundred rows) the central 70 % holds fewer
distinct rows than the cap assumes and the smallest directions are fitted to those
rows again (60 digits copied to 600 rows: a new digit's whitened size 1.39x a training
row's, where the ordinary capped whitening gives under 0.7x the uncapped 1.61x).

The rule chose c38 (round 14; c39 and c40 tied with it within 0.0005 and lost the
tie to its lower median seconds), and ``IMPreprocessor("whiten")`` now fits c38's
whitening itself (the same numbers up to 20,000 rows; beyond, its C-steps run on a fixed
subset of 20,000). On today's ``imod`` these subclasses start their steps from that
converged estimate: c38's changes nothing, c39 and c40 are no longer what was scored
(check out 26e1176 to rerun them).

Study code, not part of ``imod``: the detector swaps its preprocessor class while it
fits; only IMDetector's public parameters are passed.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> z = rng.normal(size=(600, 1))
>>> X = np.c_[z, z + 0.3 * rng.normal(size=(600, 1)), rng.normal(size=(600, 1))]
>>> X[:120, 1] = rng.permutation(X[:120, 1])          # 20 % of rows break the joint
>>> every_row = np.corrcoef(X[:, 0], X[:, 1])[0, 1]
>>> central = ReweightedPreprocessor("whiten").fit(X)
>>> cov = (central.components_.T * central.scale_**2) @ central.components_
>>> bool(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) > every_row + 0.05)
True
"""

from __future__ import annotations

from unittest import mock

import numpy as np
from scipy.stats import chi2
from sklearn.covariance import ledoit_wolf_shrinkage

from imod.detector import IMDetector, training
from imod.detector.preprocessing import IMPreprocessor, _statistic_rows, _whiten_cap

KEEP = 0.7  # 1 - IMDetector's default trim
MAX_STEPS = 10


class ReweightedPreprocessor(IMPreprocessor):
    """IMPreprocessor whose ``"whiten"`` statistics come from the central rows (C-steps)."""

    cap_on_fitted_rows = False  # c40: the direction cap counts the kept rows' distinct rows

    def fit(self, X, y=None) -> ReweightedPreprocessor:
        super().fit(X, y)
        if self.method != "whiten":
            return self
        X = np.asarray(X, dtype=np.float64)
        Z = _statistic_rows(X) / self.prescale_
        h = max(int(np.ceil(KEEP * len(Z))), min(len(Z), Z.shape[1] + 1))
        kept = None
        for _ in range(MAX_STEPS):
            near = np.zeros(len(Z), dtype=bool)
            near[np.argsort(self._distances(Z), kind="stable")[:h]] = True
            if kept is not None and (near == kept).all():
                break
            kept = near
            self._fit_whitening(Z[kept], Z[kept] if self.cap_on_fitted_rows else X)
        # consistency: the median distance of every row at the chi-square median
        k = len(self.scale_)
        factor = float(np.median(self._distances(Z))) / chi2.ppf(0.5, k)
        if factor > 0 and np.isfinite(factor):
            self.scale_ = self.scale_ * np.sqrt(factor)
        return self

    def _distances(self, Z: np.ndarray) -> np.ndarray:
        W = ((Z - self.center_) @ self.components_.T) / self._selection_scale()
        return np.einsum("ij,ij->i", W, W)

    def _selection_scale(self) -> np.ndarray:
        return self.scale_

    def _fit_whitening(self, Zk: np.ndarray, X: np.ndarray) -> None:
        """The ordinary whitening (IMPreprocessor.fit's) of the rows ``Zk``."""
        center = Zk.mean(axis=0)
        S = Zk - center
        _, s, vt = np.linalg.svd(S, full_matrices=False)
        var = s**2 / max(S.shape[0] - 1, 1)
        keep = var > 1e-12 * max(float(var.max(initial=0.0)), 1e-300)
        if not keep.any():
            keep[:1] = True
            var[:1] = 1.0
        alpha = ledoit_wolf_shrinkage(S, assume_centered=True)
        plain = var
        var = (1.0 - alpha) * var + alpha * float(var.sum()) / Zk.shape[1]
        if self.rows_per_component is not None:
            cap = _whiten_cap(X, int(keep.sum()), float(self.rows_per_component))
            keep &= np.arange(len(keep)) < cap
        scale = np.sqrt(var[keep])
        self.plain_scale_ = np.sqrt(np.where(plain[keep] > 0, plain[keep], 1.0))
        self.center_, self.components_ = center, vt[keep]
        self.scale_, self.shrinkage_ = np.where(scale > 0, scale, 1.0), float(alpha)


class PlainSelectionPreprocessor(ReweightedPreprocessor):
    """c39: the central rows chosen by the plain (unshrunk) covariance's distance."""

    def fit(self, X, y=None) -> PlainSelectionPreprocessor:
        if self.method == "whiten":
            # the ordinary estimate's plain variances, for the first selection
            IMPreprocessor.fit(self, X, y)
            X64 = np.asarray(X, dtype=np.float64)
            self._fit_whitening(_statistic_rows(X64) / self.prescale_, X64)
        return super().fit(X, y)

    def _selection_scale(self) -> np.ndarray:
        return self.plain_scale_


class CentralCapPreprocessor(PlainSelectionPreprocessor):
    """c40: c39, and the whitening keeps at most n_distinct / 2 directions of the rows it
    is fitted to (the central ones), not of all rows."""

    cap_on_fitted_rows = True


class ReweightedWhiteningIM(IMDetector):
    """IMDetector whose whitened view is fitted by :class:`ReweightedPreprocessor`."""

    _preprocessor = ReweightedPreprocessor

    def fit(self, X, y=None) -> ReweightedWhiteningIM:
        with mock.patch.object(training, "IMPreprocessor", self._preprocessor):
            return super().fit(X, y)


class PlainSelectionIM(ReweightedWhiteningIM):
    """c39: :class:`ReweightedWhiteningIM` with :class:`PlainSelectionPreprocessor`."""

    _preprocessor = PlainSelectionPreprocessor


class CentralCapIM(ReweightedWhiteningIM):
    """c40: :class:`ReweightedWhiteningIM` with :class:`CentralCapPreprocessor`."""

    _preprocessor = CentralCapPreprocessor


__all__ = ["CentralCapIM", "CentralCapPreprocessor", "PlainSelectionIM",
           "PlainSelectionPreprocessor", "ReweightedPreprocessor", "ReweightedWhiteningIM"]
