"""PyOD face of the detector: ``IMDetectorPyOD``.

PyOD and scikit-learn disagree on label values (0/1 vs +1/-1) and on score
direction (higher = more abnormal vs more normal), so the PyOD face is a
separate class that *wraps* an :class:`IMDetector` (composition) rather than a
subclass sharing method names.
"""

from __future__ import annotations

import numpy as np
from pyod.models.base import BaseDetector
from sklearn.utils.validation import check_is_fitted

from .estimator import IMDetector

__all__ = ["IMDetectorPyOD"]


class IMDetectorPyOD(BaseDetector):
    """Inlier-memorization detector with PyOD's conventions.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected outlier fraction; sets ``threshold_`` (PyOD semantics).
    n_members, preprocessing, scoring, max_updates, random_state, device
        Passed to :class:`IMDetector`; the defaults are the same as there.
    detector_params : dict, optional
        Any other :class:`IMDetector` parameter.

    Attributes
    ----------
    detector_ : IMDetector
        The fitted scikit-learn detector.
    decision_scores_ : ndarray of shape (n_samples,)
        Outlier scores of the training data (higher = more abnormal).
    threshold_ : float
    labels_ : ndarray of int (0 inlier, 1 outlier)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(size=(300, 4)), rng.uniform(-9, 9, size=(15, 4))]
    >>> clf = IMDetectorPyOD(contamination=0.05, random_state=0).fit(X)
    >>> clf.labels_[300:].mean() > clf.labels_[:300].mean()
    np.True_
    >>> sorted(set(clf.predict(X).tolist()))
    [0, 1]
    """

    def __init__(
        self,
        contamination: float = 0.1,
        n_members: int = 8,
        preprocessing: str | tuple[str, ...] = ("standard", "robust", "whiten"),
        scoring: str = "window",
        max_updates: int = 100,
        random_state=None,
        device: str = "auto",
        detector_params: dict | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.n_members = n_members
        self.preprocessing = preprocessing
        self.scoring = scoring
        self.max_updates = max_updates
        self.random_state = random_state
        self.device = device
        self.detector_params = detector_params

    def _make_detector(self) -> IMDetector:
        params = dict(self.detector_params or {})
        params.update(
            n_members=self.n_members,
            preprocessing=self.preprocessing,
            scoring=self.scoring,
            max_updates=self.max_updates,
            random_state=self.random_state,
            device=self.device,
        )
        if isinstance(self.contamination, (float, int)):
            params["contamination"] = float(self.contamination)
        return IMDetector(**params)

    def fit(self, X, y=None) -> IMDetectorPyOD:
        """Fit the wrapped detector; ``y`` is ignored (PyOD warns if given)."""
        self._set_n_classes(y)
        self.detector_ = self._make_detector().fit(X)
        self.decision_scores_ = -np.asarray(self.detector_.train_scores_, dtype=np.float64)
        self._process_decision_scores()
        return self

    def decision_function(self, X) -> np.ndarray:
        """Outlier scores of ``X`` (higher = more abnormal)."""
        check_is_fitted(self, ["detector_"])
        return -self.detector_.score_samples(X)
