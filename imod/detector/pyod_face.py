"""PyOD face of the detector: ``IMDetectorPyOD``.

PyOD and scikit-learn disagree on label values (0/1 vs +1/-1) and on score
direction (higher = more abnormal vs more normal), so the PyOD face is a
separate class that *wraps* an :class:`IMDetector` (composition) rather than a
subclass sharing method names.

Every parameter is written out in ``__init__`` (PyOD's benchmarks and model zoo,
``sklearn.base.clone`` and hyper-parameter searches read the signature), and every
default except ``contamination``'s is read from :class:`IMDetector`'s own signature
(``_DEFAULTS``), so the two faces cannot disagree on a default;
``tests/test_detector_pyod.py`` checks that they take the same parameters.
"""

from __future__ import annotations

import inspect
from numbers import Real

import numpy as np
from pyod.models.base import BaseDetector
from sklearn.utils.validation import _num_samples, check_is_fitted

from .estimator import IMDetector
from .explain import Explanation
from .scoring import tie_margin

__all__ = ["IMDetectorPyOD", "pyod_threshold"]

# IMDetector's defaults: the one place they are written.
_DEFAULTS = {name: p.default for name, p in inspect.signature(IMDetector).parameters.items()}


class IMDetectorPyOD(BaseDetector):
    """Inlier-memorization detector with PyOD's conventions.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected outlier fraction (PyOD's default): ``threshold_`` is the
        ``1 - contamination`` quantile of ``decision_scores_``, raised by the
        detector's numerical resolution (:func:`pyod_threshold`), so rows whose
        scores differ by rounding only are never split by it.
    n_members, hidden_sizes, preprocessing, whiten_rows_per_component, projection_dim, \
init_scale, lr, batch_size, max_updates, max_epochs, trim, n_recordings, window, \
max_record_samples, random_state, device, n_threads, verbose
        As in :class:`IMDetector`, with its defaults.

    Attributes
    ----------
    detector_ : IMDetector
        The fitted scikit-learn detector.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When fitted on a DataFrame with string column names.
    decision_scores_ : ndarray of shape (n_samples,)
        Outlier scores of every training row (higher = more abnormal): the detector's
        ``train_scores_``, or, when it scored only its recorded rows (more than
        ``max_record_samples`` rows), ``score_samples`` of the training data.
        Identical rows have identical scores.
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
    >>> clf.get_params()["n_members"], clf.get_params()["lr"]
    (4, 0.03)
    """

    def __init__(
        self,
        contamination: float = 0.1,
        *,
        n_members: int = _DEFAULTS["n_members"],
        hidden_sizes: str | tuple[int, ...] = _DEFAULTS["hidden_sizes"],
        preprocessing: str | tuple[str, ...] = _DEFAULTS["preprocessing"],
        whiten_rows_per_component: float | None = _DEFAULTS["whiten_rows_per_component"],
        projection_dim: int | None = _DEFAULTS["projection_dim"],
        init_scale: float = _DEFAULTS["init_scale"],
        lr: float = _DEFAULTS["lr"],
        batch_size: int = _DEFAULTS["batch_size"],
        max_updates: int = _DEFAULTS["max_updates"],
        max_epochs: int = _DEFAULTS["max_epochs"],
        trim: float = _DEFAULTS["trim"],
        n_recordings: int = _DEFAULTS["n_recordings"],
        window: tuple[float, float] | None = _DEFAULTS["window"],
        max_record_samples: int = _DEFAULTS["max_record_samples"],
        random_state=_DEFAULTS["random_state"],
        device: str = _DEFAULTS["device"],
        n_threads: int | None = _DEFAULTS["n_threads"],
        verbose: int = _DEFAULTS["verbose"],
    ) -> None:
        # checked in fit, as scikit-learn's rules ask (PyOD's BaseDetector.__init__ checks
        # it on construction, so it is not called)
        self.contamination = contamination
        self.n_members = n_members
        self.hidden_sizes = hidden_sizes
        self.preprocessing = preprocessing
        self.whiten_rows_per_component = whiten_rows_per_component
        self.projection_dim = projection_dim
        self.init_scale = init_scale
        self.lr = lr
        self.batch_size = batch_size
        self.max_updates = max_updates
        self.max_epochs = max_epochs
        self.trim = trim
        self.n_recordings = n_recordings
        self.window = window
        self.max_record_samples = max_record_samples
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose

    def _detector(self) -> IMDetector:
        """An unfitted IMDetector with this face's parameters."""
        params = {name: value for name, value in self.get_params(deep=False).items()
                  if name != "contamination"}
        return IMDetector(**params, contamination=float(self.contamination))

    def fit(self, X, y=None) -> IMDetectorPyOD:
        """Fit the wrapped detector; ``y`` is ignored (PyOD warns if given)."""
        _check_contamination(self.contamination)
        self._set_n_classes(None if y is None else np.asarray(y))
        detector = self._detector().fit(X)
        scores = detector.train_scores_
        if len(scores) != _num_samples(X):
            # the detector scored only its recorded rows; PyOD's contract is every row
            scores = detector.score_samples(X)
        self.detector_ = detector
        self.n_features_in_ = detector.n_features_in_
        if hasattr(detector, "feature_names_in_"):
            self.feature_names_in_ = detector.feature_names_in_
        self.decision_scores_ = -np.asarray(scores, dtype=np.float64)
        self._process_decision_scores()
        return self

    def _process_decision_scores(self) -> IMDetectorPyOD:
        """PyOD's ``threshold_`` and ``labels_``, with the tie margin (:func:`pyod_threshold`)."""
        super()._process_decision_scores()
        self.threshold_ = pyod_threshold(self.decision_scores_, self.contamination)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int).ravel()
        return self

    def decision_function(self, X) -> np.ndarray:
        """Outlier scores of ``X`` (higher = more abnormal)."""
        check_is_fitted(self, ["detector_"])
        return -self.detector_.score_samples(X)

    def explain(self, X) -> Explanation:
        """Each input feature's contribution to each row's ``decision_function`` (the
        same outlier score): :meth:`IMDetector.explain` of the wrapped detector.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(300, 3))
        >>> clf = IMDetectorPyOD(n_members=3, random_state=0).fit(X)
        >>> ex = clf.explain([[0.0, -30.0, 0.0]])
        >>> ex.top_features(0, k=1)[0][0]
        'x1'
        """
        check_is_fitted(self, ["detector_"])
        return self.detector_.explain(X)


def pyod_threshold(outlier_scores: np.ndarray, contamination: float) -> float:
    """PyOD's threshold, the ``1 - contamination`` percentile of the outlier scores,
    raised by the detector's numerical resolution (:func:`~imod.detector.scoring.tie_margin`):
    a row is flagged only when it scores above it by more than rounding.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.r_[np.zeros(9), 1e-9]  # a difference of rounding only
    >>> bool((s > pyod_threshold(s, 0.1)).any())
    False
    """
    t = float(np.percentile(outlier_scores, 100.0 * (1.0 - contamination)))
    return t + tie_margin(t)


def _check_contamination(value) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 0.5:
        raise ValueError(f"contamination must be a float in (0, 0.5], got {value!r}")
