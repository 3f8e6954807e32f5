"""PyOD face of the detector: ``IMDetectorPyOD``.

PyOD and scikit-learn disagree on label values (0/1 vs +1/-1) and on score
direction (higher = more abnormal vs more normal), so the PyOD face is a
separate class that *wraps* an :class:`IMDetector` (composition) rather than a
subclass sharing method names.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from pyod.models.base import BaseDetector
from sklearn.utils.validation import _num_samples, check_is_fitted

from .estimator import IMDetector

__all__ = ["IMDetectorPyOD"]


class IMDetectorPyOD(BaseDetector):
    """Inlier-memorization detector with PyOD's conventions.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected outlier fraction; sets ``threshold_`` (PyOD semantics) and is
        passed to the detector.
    **params
        Any :class:`IMDetector` parameter, passed through as given; those not
        given keep IMDetector's defaults.

    Attributes
    ----------
    detector_ : IMDetector
        The fitted scikit-learn detector.
    decision_scores_ : ndarray of shape (n_samples,)
        Outlier scores of every training row (higher = more abnormal): the detector's
        ``train_scores_``, or, when it scored only its recorded rows (more than
        ``max_record_samples`` rows), ``score_samples`` of the training data.
    threshold_ : float
    labels_ : ndarray of int (0 inlier, 1 outlier)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(size=(300, 4)), rng.uniform(-9, 9, size=(15, 4))]
    >>> clf = IMDetectorPyOD(contamination=0.05, n_members=4, random_state=0).fit(X)
    >>> clf.labels_[300:].mean() > clf.labels_[:300].mean()
    np.True_
    >>> sorted(set(clf.predict(X).tolist()))
    [0, 1]
    >>> clf.get_params()
    {'contamination': 0.05, 'n_members': 4, 'random_state': 0}
    """

    def __init__(self, contamination: float = 0.1, **params) -> None:
        _check_contamination(contamination)
        super().__init__(contamination=contamination)
        unknown = sorted(set(params) - set(IMDetector._get_param_names()))
        if unknown:
            raise TypeError(f"IMDetectorPyOD got unexpected parameter(s) {unknown}; it takes "
                            "contamination and IMDetector's parameters")
        for name, value in params.items():
            setattr(self, name, value)
        self._passed = tuple(params)

    def get_params(self, deep: bool = True) -> dict:
        """``contamination`` and the IMDetector parameters given (``deep`` is ignored)."""
        return {"contamination": self.contamination,
                **{name: getattr(self, name) for name in self._passed}}

    def set_params(self, **params) -> IMDetectorPyOD:
        """Set ``contamination`` or any IMDetector parameter."""
        valid = set(IMDetector._get_param_names()) - {"contamination"}
        for name, value in params.items():
            if name != "contamination" and name not in valid:
                raise ValueError(f"invalid parameter {name!r} for IMDetectorPyOD; valid: "
                                 f"contamination and {sorted(valid)}")
            setattr(self, name, value)
            if name != "contamination" and name not in self._passed:
                self._passed += (name,)
        return self

    def fit(self, X, y=None) -> IMDetectorPyOD:
        """Fit the wrapped detector; ``y`` is ignored (PyOD warns if given)."""
        _check_contamination(self.contamination)
        self._set_n_classes(y)
        params = {name: getattr(self, name) for name in self._passed}
        self.detector_ = IMDetector(**params, contamination=float(self.contamination)).fit(X)
        scores = self.detector_.train_scores_
        if len(scores) != _num_samples(X):
            # the detector scored only its recorded rows; PyOD's contract is every row
            scores = self.detector_.score_samples(X)
        self.decision_scores_ = -np.asarray(scores, dtype=np.float64)
        self._process_decision_scores()
        return self

    def decision_function(self, X) -> np.ndarray:
        """Outlier scores of ``X`` (higher = more abnormal)."""
        check_is_fitted(self, ["detector_"])
        return -self.detector_.score_samples(X)


def _check_contamination(value) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 0.5:
        raise ValueError(f"contamination must be a float in (0, 0.5], got {value!r}")
