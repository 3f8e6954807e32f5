"""``IMDetector``: outlier scores from the inlier-memorization effect.

An ensemble of small autoencoders is trained for a few dozen updates only
(:mod:`imod.detector.training`, one :func:`imod.engine.train_ensemble` call).
Early in training they reconstruct the bulk of the data (the inliers) much
better than the rare, scattered outliers; the per-example reconstruction
losses recorded during this early phase, after normalization
(:mod:`imod.detector.scoring`), are the outlier score. The estimator holds one
plain record per preprocessing view (:class:`~imod.detector.views.View`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import fields
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from .._runtime import device_available, resolve_device, torch_threads
from .explain import Explanation, explain_rows
from .preprocessing import PREPROCESSING_METHODS, check_numeric_frame
from .projection import RandomProjection
from .scoring import combine_views, offset_from
from .ties import share_ties
from .training import TrainingSettings, auto_hidden_sizes, train_views

__all__ = ["IMDetector", "auto_hidden_sizes"]

# What the accuracy study fixed (docs/accuracy_study.md): the alternatives lost or
# made no difference beyond noise, so they are not parameters. A study varies them in
# a subclass (``_fixed = IMDetector._fixed | {"loss": "mse"}``); a saved detector
# records the loss and normalization of each view.
FIXED_CHOICES: dict[str, str] = {
    "init": "default",  # engine.init scheme of the initial weights
    "loss": "l1",  # per-example reconstruction loss: mean absolute error
    "normalization": "log_ratio",  # log of the loss over the member's median
    "scoring": "window",  # the mean over the recordings in ``window``
    "view_combination": "scaled_max",  # max over views in units of their spread
}


class IMDetector(OutlierMixin, BaseEstimator):
    """Unsupervised outlier detector from early autoencoder training losses.

    K small MLP autoencoders are trained together for a short, fixed budget of
    updates on the (preprocessed) data, on the mean absolute reconstruction error.
    The losses of every training example are recorded ``n_recordings`` times; each
    (recording, member) slice is put on a common scale (the log of the loss over the
    member's median training loss at that recording), and the outlier score is the
    mean of these over the recordings in ``window``; with several preprocessing
    views, the maximum over the views, each first put in units of its spread on the
    training rows. The members' parameters at the chosen recordings are kept, so new
    data is scored by the same early snapshots (inductive) while ``train_scores_``
    holds the transductive scores of the training rows (of the ``max_record_samples``
    rows training recorded, when there are more). Evidence for each default, and for
    the choices that are not parameters (initialization, loss, normalization, which
    recordings score, how views combine: the alternatives lost or made no difference
    beyond noise), in docs/accuracy_study.md.

    Parameters
    ----------
    n_members : int, default=8
        Ensemble size K, split evenly between the views (earlier views get the
        remainder).
    hidden_sizes : "auto", "odim" or sequence of int, default="auto"
        Encoder widths ending with the latent size; the decoder mirrors them
        (:func:`auto_hidden_sizes`).
    preprocessing : str or tuple of str, default=("robust", "whiten", "quantile")
        Feature scaling (:class:`IMPreprocessor` methods). A tuple trains one
        sub-ensemble per scaling ("view"): median/IQR scaling exposes outliers in
        a few skewed features, (shrunk) PCA whitening those off the correlation
        structure, each column through its empirical CDF to normal scores those in
        one column's tail (local anomalies). Chosen out of fold on the development
        tasks (``docs/accuracy_study.md``, round 13).
    whiten_rows_per_component : float or None, default=2.0
        Whitening keeps at most (distinct training rows) / this many directions
        (``None``: all). It matters when the rows barely outnumber the features,
        as in image/text embeddings of a few hundred rows.
    projection_dim : int or None, default=64
        Inputs with more columns than this are centered and multiplied by one fixed
        Gaussian random matrix (drawn from ``random_state``) to ``projection_dim``
        columns, once, before every view
        (:class:`~imod.detector.projection.RandomProjection`): the networks' cost
        grows with their input width (image and text embeddings have 512-768
        columns), and a random projection keeps the distances between rows. On the
        18 ADBench image/text sets it cut the time from 8x to 1.5x IForest's and
        raised the mean AUROC by 1.1 points (chosen out of fold,
        docs/accuracy_study.md). ``None``: never.
    init_scale : float, default=1.0
        Multiplies every initial weight matrix.
    lr : float, default=3e-2
        Adam learning rate.
    batch_size : int, default=128
        Examples per member per update.
    max_updates : int, default=100
        Training budget in updates (all views train together). When one pass
        over the data takes more, each member trains on a random subset of
        ``max_updates * batch_size`` rows; the other rows are scored by the
        trained snapshots like new data.
    max_epochs : int, default=50
        Cap on passes over small data sets.
    trim : float in [0, 1), default=0.3
        Trimmed training loss: in every update each member leaves out the
        ``floor(trim * batch)`` rows with the largest loss (mostly outliers, as the
        inliers are fitted first), which keeps the inlier/outlier loss gap open.
        Losses are still recorded on every row.
    n_recordings : int, default=10
        About how many times losses are recorded (evenly spaced in updates).
    window : tuple (start, stop) of float, optional
        Epoch range of the recordings the score averages (inclusive); ``None``: all.
    max_record_samples : int, default=20_000
        Losses during training are recorded on at most this many rows (a random
        subset when n is larger).
    contamination : "auto" or float in (0, 0.5], default=0.1
        Sets ``offset_``: a float flags that fraction of training rows;
        ``"auto"``: Tukey's fence, Q3 + 1.5 IQR of the training outlier scores
        (on the loss-ratio scale). On the 30 ADBench Classical development sets the
        labels of 0.1 (PyOD's default) had a higher F1 than ``"auto"``'s on each of the 5
        folds (mean 0.254 against 0.186: the fence flagged 5 % of the rows on average,
        too few for recall; docs/conventions.md).
    random_state : int, RandomState or None, default=None
        Seeds initialization, batch order and subsampling.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``; resolved
        each time the detector trains or scores, so a fitted detector can move
        with ``set_params(device=...)``.
    n_threads : int or None, default=1
        Torch CPU threads during fit and scoring (restored afterwards); ``None``
        keeps torch's global setting. One thread is fastest for these tiny nets.
    verbose : int, default=0
        ``> 0`` shows a progress bar and prints timings.

    Attributes
    ----------
    projection_ : RandomProjection or None
        The projection of inputs wider than ``projection_dim`` (``None`` otherwise);
        every view reads its output.
    views_ : list of View
        One record per preprocessing view (:class:`~imod.detector.views.View`:
        preprocessor, snapshots, normalization statistics, weights, training
        scores and trajectories).
    train_scores_ : ndarray of shape (n_train_scores,)
        Transductive ``score_samples`` of the training rows ``train_index_`` (higher =
        more normal): every row when ``n_samples <= max_record_samples``, else the
        ``max_record_samples`` rows whose losses training recorded (a random subset).
        Above that size ``fit`` does not score every training row (on 1M rows that
        would double the cost of fit plus one ``score_samples``); call
        ``score_samples(X)`` for all of them.
    train_index_ : ndarray of int of shape (n_train_scores,)
        Rows of the training data that ``train_scores_`` scores (increasing).
    offset_ : float
        ``decision_function = score_samples - offset_``, set from ``train_scores_``
        (``contamination``), as is each view's spread.
    loss_trajectory_ : pandas.DataFrame
        Per view and recording: epoch, update, mean and quantiles of the
        member-mean training loss, bimodality, weight.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When fitted on a DataFrame with string column names.
    fit_seconds_ : float

    Examples
    --------
    >>> import numpy as np
    >>> from imod import IMDetector
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(size=(300, 5)), rng.uniform(-8, 8, size=(15, 5))]
    >>> det = IMDetector(random_state=0).fit(X)
    >>> scores = -det.score_samples(X)          # higher = more abnormal
    >>> bool(scores[300:].mean() > scores[:300].mean())
    True
    >>> det.predict(X[:3]).tolist()
    [1, 1, 1]
    >>> [(v.method, v.n_members) for v in det.views_]
    [('robust', 3), ('whiten', 3), ('quantile', 2)]
    """

    _fixed: ClassVar[dict[str, str]] = FIXED_CHOICES

    _parameter_constraints: dict = {
        "n_members": [Interval(Integral, 1, None, closed="left")],
        "hidden_sizes": [StrOptions({"auto", "odim"}), "array-like"],
        "preprocessing": [StrOptions(set(PREPROCESSING_METHODS)), tuple, list],
        "whiten_rows_per_component": [Interval(Real, 0, None, closed="neither"), None],
        "projection_dim": [Interval(Integral, 1, None, closed="left"), None],
        "init_scale": [Interval(Real, 0, None, closed="neither")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_updates": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "trim": [Interval(Real, 0, 1, closed="left")],
        "n_recordings": [Interval(Integral, 1, None, closed="left")],
        "window": [tuple, list, None],
        "max_record_samples": [Interval(Integral, 2, None, closed="left")],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        n_members: int = 8,
        hidden_sizes: str | tuple[int, ...] = "auto",
        preprocessing: str | tuple[str, ...] = ("robust", "whiten", "quantile"),
        whiten_rows_per_component: float | None = 2.0,
        projection_dim: int | None = 64,
        init_scale: float = 1.0,
        lr: float = 3e-2,
        batch_size: int = 128,
        max_updates: int = 100,
        max_epochs: int = 50,
        trim: float = 0.3,
        n_recordings: int = 10,
        window: tuple[float, float] | None = None,
        max_record_samples: int = 20_000,
        contamination: str | float = 0.1,
        random_state=None,
        device: str = "auto",
        n_threads: int | None = 1,
        verbose: int = 0,
    ) -> None:
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
        self.contamination = contamination
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _views(self) -> tuple[str, ...]:
        """The preprocessing views as a tuple (one for a plain string)."""
        p = self.preprocessing
        return (p,) if isinstance(p, str) else tuple(p)

    def _check_params(self) -> None:
        """What the constraint table cannot say: relations and sequence contents."""
        views = self._views()
        bad = [v for v in views if v not in PREPROCESSING_METHODS]
        if not views or bad or len(set(views)) != len(views):
            raise ValueError(
                f"unknown preprocessing {self.preprocessing!r}: give one of "
                f"{PREPROCESSING_METHODS} or a tuple of distinct ones"
            )
        if self.n_members < len(views):
            raise ValueError(
                f"n_members={self.n_members} is fewer than the {len(views)} preprocessing "
                "views: every view needs at least one member"
            )
        w = self.window
        if w is not None and (len(w) != 2 or not all(isinstance(v, Real) for v in w)
                              or w[0] > w[1]):
            raise ValueError(f"window must be (start, stop) epochs with start <= stop, got {w!r}")
        hs = self.hidden_sizes
        if not isinstance(hs, str) and (
            len(hs) == 0 or not all(isinstance(h, Integral) and h >= 1 for h in hs)
        ):
            raise ValueError(
                f"hidden_sizes must be 'auto', 'odim' or positive integers, got {hs!r}"
            )
        resolve_device(self.device)  # an unknown or unavailable device fails before training

    def _training_settings(self) -> TrainingSettings:
        """How the views train: the parameters, and the choices the study fixed (``_fixed``)."""
        return TrainingSettings(**{
            f.name: self._fixed[f.name] if f.name in self._fixed else getattr(self, f.name)
            for f in fields(TrainingSettings)})

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None) -> IMDetector:
        """Train the ensemble on ``X`` and keep its early snapshots.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training data, outliers included (no labels needed).
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        imod._runtime.TrainingDiverged
            (a ``ValueError``) Training produced non-finite losses or weights.
        """
        before = _fitted_attributes(self)
        try:
            return self._fit(X)
        except BaseException:
            # A fit that raises leaves the estimator as it was (fitted or not): never the
            # new n_features_in_ beside the old views.
            for name in _fitted_attributes(self):
                delattr(self, name)
            vars(self).update(before)
            raise

    def _fit(self, X) -> IMDetector:
        self._check_params()
        check_numeric_frame(X)
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite=True,
                          ensure_min_samples=2)
        t0 = time.perf_counter()
        with torch_threads(self.n_threads):
            settings = self._training_settings()
            self.projection_ = None
            if self.projection_dim is not None and X.shape[1] > self.projection_dim:
                self.projection_ = RandomProjection(
                    self.projection_dim, random_state=self.random_state).fit(X)
            self.views_ = train_views(
                self._projected(X), settings, preprocessing=self._views(),
                n_members=self.n_members,
                whiten_rows_per_component=self.whiten_rows_per_component,
                random_state=self.random_state, device=resolve_device(self.device),
                verbose=self.verbose,
            )
        # copies of a row get the first copy's score, bit for bit (see .ties)
        self.train_scores_ = share_ties(X[self.views_[0].record_index],
                                        self._combine([v.train_scores for v in self.views_]))
        self.offset_ = offset_from(self.train_scores_, self.contamination,
                                   self._fixed["normalization"])
        self.fit_seconds_ = time.perf_counter() - t0
        if self.verbose:
            print(f"IMDetector: fit {X.shape[0]} x {X.shape[1]} in {self.fit_seconds_:.2f} s")
        return self

    @property
    def train_index_(self) -> np.ndarray:
        """Rows of the training data scored by ``train_scores_``."""
        check_is_fitted(self, "views_")
        return self.views_[0].record_index

    @property
    def loss_trajectory_(self) -> pd.DataFrame:
        """Per view and recording: epoch, update, member-mean loss statistics, weight."""
        check_is_fitted(self, "views_")
        return pd.concat([v.loss_trajectory().assign(view=v.method) for v in self.views_],
                         ignore_index=True)

    # ------------------------------------------------------------------ scoring
    def _combine(self, view_scores: list[np.ndarray]) -> np.ndarray:
        return combine_views(view_scores, [v.train_scores for v in self.views_],
                             self._fixed["view_combination"])

    def score_samples(self, X) -> np.ndarray:
        """Opposite of the outlier score: higher = more normal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        X = self._validate_frame(X)
        Xp = self._projected(X)
        device = resolve_device(self.device)
        with torch_threads(self.n_threads):
            scores = self._combine([-v.outlier_scores(Xp, device) for v in self.views_])
        scores = share_ties(X, scores)  # copies of a row: the first copy's score, bit for bit
        if not np.isfinite(scores).all():
            raise ValueError(
                f"{int((~np.isfinite(scores)).sum())} score(s) are NaN or infinite: the "
                "detector's weights are not usable (a diverged fit or a damaged file); refit it"
            )
        return scores

    def _projected(self, X: np.ndarray) -> np.ndarray:
        """Validated rows as every view reads them (projected when ``projection_``)."""
        return X if self.projection_ is None else self.projection_.transform(X)

    def _validate_frame(self, X) -> np.ndarray:
        """Validate data at predict time (any number of rows, same features)."""
        check_is_fitted(self, "views_")
        check_numeric_frame(X)
        return validate_data(self, X, dtype=np.float64, ensure_all_finite=True, reset=False)

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then label the training data from its transductive scores (scoring every
        row when ``train_scores_`` holds only the recorded ones)."""
        self.fit(X)
        scores = self.train_scores_
        if len(scores) != _num_samples(X):
            scores = self.score_samples(X)
        return np.where(scores - self.offset_ < 0, -1, 1)

    def explain(self, X) -> Explanation:
        """Each input feature's contribution to each row's outlier score
        ``-score_samples(X)``, in the units of the score (:mod:`imod.detector.explain`
        says what is exact and what is not; about the cost of scoring).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Explanation
            ``contributions`` ``(n_samples, n_features)``: ``contributions.sum(axis=1)``
            equals ``scores - reference`` within ``1e-9 * max(1, |score|)``, and
            ``scores`` equals ``-score_samples(X)`` within ``1e-5`` (float32 losses).
            Copies of a row get identical numbers.

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(300, 4))
        >>> det = IMDetector(n_members=3, random_state=0).fit(X)
        >>> row = np.array([[0.0, 0.0, 25.0, 0.0]])  # far out in feature x2 only
        >>> ex = det.explain(row)
        >>> ex.top_features(0, k=1)[0][0]
        'x2'
        >>> bool(np.allclose(ex.contributions.sum(axis=1), ex.scores - ex.reference))
        True
        """
        X = self._validate_frame(X)
        with torch_threads(self.n_threads):
            return explain_rows(self, X, resolve_device(self.device))

    def loss_trajectories(self, X) -> np.ndarray:
        """Member-mean raw losses ``(T_used, n)`` of ``X`` at the kept snapshots.

        With several views, the rows of each view in turn (``views_`` order).
        """
        X = self._projected(self._validate_frame(X))
        device = resolve_device(self.device)
        rows = []
        with torch_threads(self.n_threads):
            for v in self.views_:
                Xt = v.preprocessor.transform(X)
                rows += [losses.mean(dim=0).cpu().numpy() for losses in v.member_losses(Xt, device)]
        return np.stack(rows)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the fitted detector to the folder ``path`` (tensors plus JSON, no pickle).

        See :func:`imod.detector.persistence.save_detector`.
        """
        from .persistence import save_detector

        check_is_fitted(self, "views_")
        save_detector(path, self.get_params(deep=False), self._fitted_state())

    def _fitted_state(self) -> dict:
        state = {"views_": self.views_, "projection_": self.projection_,
                 "n_features_in_": self.n_features_in_,
                 "offset_": self.offset_, "train_scores_": self.train_scores_,
                 "fit_seconds_": self.fit_seconds_}
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = self.feature_names_in_
        return state

    @classmethod
    def load(cls, path) -> IMDetector:
        """Load a detector written by :meth:`save` (no pickle involved)."""
        from .persistence import load_detector

        params, state = load_detector(path)
        names = set(cls._get_param_names())
        if set(params) != names:
            raise ValueError(
                f"{path}: the saved parameters do not match IMDetector's (missing "
                f"{sorted(names - set(params))}, unknown {sorted(set(params) - names)}); "
                "refit the detector and save it again"
            )
        device = params["device"]
        if device != "auto" and not device_available(device):
            warnings.warn(f"{path} was saved with device={device!r}, which this machine "
                          "lacks: the detector uses device='auto' (the CPU)", stacklevel=2)
            params["device"] = "auto"
        det = cls(**params)
        for name, value in state.items():
            setattr(det, name, value)
        return det



def _fitted_attributes(est: IMDetector) -> dict:
    """The attributes ``fit`` sets (trailing underscore), by name."""
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}
