"""The subsampled memorization estimator (Feldman & Zhang 2020) with the critique's fixes.

:class:`MemorizationEstimator` trains ``n_members`` classifiers on random subsets
of ``rate * n`` training examples through the shared ensemble engine, then
computes per-example memorization scores and train-test influence from one
mask matrix and one correctness matrix (see :mod:`imod.memorization.scores`).

The critique's fixes are options: ``rate=0.95`` (less sampling bias),
``score="fractional"`` (fewer false positives), ``threshold="null"`` (a
threshold from the scores of randomly relabelled points) and de-duplicated test
sets (:func:`imod.memorization.leakage.find_near_duplicates`).

Masks are generated per block of ``block_size`` members and balanced within each
block, so every example is IN exactly ``sum_b round(rate * size_b)`` members (the
same for all examples) and a run can be resumed or extended (``out_dir``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np

from imod.engine import OptimizerSpec, StackedMLP, balanced_mask, bernoulli_mask

from .runs import MemberResults, array_digest, block_sizes, derive_seed, train_in_blocks
from .scores import (
    SCORES,
    detection_metrics,
    high_influence_pairs,
    influence_matrix,
    null_threshold,
    subsample_scores,
)

__all__ = ["MemorizationEstimator", "check_classification_data", "relabel_random", "build_model"]

MASK_KINDS = ("balanced", "bernoulli")


def check_classification_data(X, y, X_test=None, y_test=None):
    """Validate inputs; return ``X, y_enc, classes, X_test, y_test_enc``.

    Raises
    ------
    ValueError
        Labels not matching X, fewer than two classes, test labels unseen in
        training, non-finite inputs, or only one of X_test / y_test.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim < 2:
        raise ValueError(f"X must be at least 2-D (n_samples, n_features...), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D class labels, got shape {y.shape}")
    if len(y) != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} examples but y has {len(y)} labels")
    if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
        raise ValueError("X must be numeric without NaN or infinite values")
    classes, y_enc = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); memorization needs >= 2 classes")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    yt_enc = None
    if X_test is not None:
        X_test = np.asarray(X_test)
        y_test = np.asarray(y_test)
        if X_test.shape[1:] != X.shape[1:]:
            raise ValueError(
                f"X_test has shape {X_test.shape[1:]} per example, X has {X.shape[1:]}"
            )
        if len(y_test) != X_test.shape[0]:
            raise ValueError(f"X_test has {X_test.shape[0]} examples but y_test has {len(y_test)}")
        if not np.isfinite(X_test).all():
            raise ValueError("X_test contains NaN or infinite values")
        unseen = np.setdiff1d(np.unique(y_test), classes)
        if unseen.size:
            raise ValueError(f"y_test has classes not in y: {unseen[:5].tolist()}")
        yt_enc = np.searchsorted(classes, y_test)
    return X.astype(np.float32), y_enc.astype(np.int64), classes, (
        None if X_test is None else X_test.astype(np.float32)
    ), yt_enc


def relabel_random(y, n_classes: int, fraction: float, random_state):
    """Give a ``fraction`` of examples a random *different* class.

    Returns ``(y_new, idx)`` with ``idx`` sorted. ``fraction > 0`` relabels at
    least one example.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"random_label_fraction must be in [0, 1), got {fraction!r}")
    y = np.asarray(y)
    n = len(y)
    count = 0 if fraction == 0 else max(1, int(round(fraction * n)))
    rng = np.random.default_rng(derive_seed(random_state, 7))
    idx = np.sort(rng.choice(n, size=count, replace=False))
    y_new = y.copy()
    y_new[idx] = (y[idx] + rng.integers(1, n_classes, size=count)) % n_classes
    return y_new, idx


def _is_widths(model) -> bool:
    return model is None or (
        isinstance(model, Sequence) and all(isinstance(w, numbers.Integral) for w in model)
    )


def build_model(model, n_features: int, n_classes: int):
    """None -> MLP (d, 256, 256, C); a sequence of ints -> those hidden widths."""
    if model is None:
        model = (256, 256)
    if _is_widths(model):
        return StackedMLP((n_features, *[int(w) for w in model], n_classes))
    return model


def check_member_counts(n_members, block_size, rate, min_in, min_out, mask_kind="balanced"):
    """Raise when some example would have < ``min_in`` IN or < ``min_out`` OUT members."""
    if not isinstance(n_members, numbers.Integral) or n_members < 1:
        raise ValueError(f"n_members must be a positive integer, got {n_members!r}")
    if not isinstance(rate, numbers.Real) or not 0.0 < float(rate) < 1.0:
        raise ValueError(f"rate must be in the open interval (0, 1), got {rate!r}")
    if mask_kind != "balanced":
        return
    sizes = block_sizes(n_members, block_size)
    n_in = sum(int(round(rate * s)) for s in sizes)
    n_out = int(n_members) - n_in
    if n_in < min_in or n_out < min_out:
        need = int(np.ceil(max(min_in / rate, min_out / (1.0 - rate)))) + 1
        raise ValueError(
            f"too few members for rate={rate}: with n_members={n_members} (blocks {sizes}) every "
            f"example is IN {n_in} and OUT {n_out} members, but min_in={min_in} and "
            f"min_out={min_out} are needed; use about n_members >= {need} "
            f"(a multiple of block_size={block_size})"
        )


class MemorizationEstimator:
    """Subsampled memorization and influence estimator on the ensemble engine.

    Parameters
    ----------
    model : None, sequence of int, StackedMLP, ModuleMembers or module factory
        Member architecture. ``None`` = MLP with hidden widths (256, 256); a
        sequence of ints = those hidden widths; a ``torch.nn.Module`` factory
        (e.g. ``lambda: MyCNN()``) for image-like ``X`` of any shape.
    n_members : int
        K, models trained on random subsets.
    rate : float in (0, 1)
        Fraction of the training set each member trains on (F&Z: 0.7; the
        critique: 0.95).
    epochs, batch_size, optimizer
        Training of each member (see :func:`imod.engine.train_ensemble`).
    score : {"fractional", "difference"}
        Which score ``scores_``, ``threshold_`` and ``memorized_`` use.
    random_label_fraction : float
        Fraction of training points relabelled to a random different class (the
        null distribution). 0 disables it (then give a numeric ``threshold``).
    alpha : float
        Null threshold at the ``(1 - alpha)`` quantile of the null scores
        (``null_side="upper"``, the critique's Eq. 3) or at the ``alpha`` quantile
        (``null_side="lower"``: 95 % of random-label points lie above it).
    threshold : "null" or float
        ``"null"`` or a fixed score threshold (F&Z: 0.25 on the difference score).
    min_in, min_out : int
        Examples with fewer IN / OUT members get NaN scores (and a warning);
        with balanced masks too few members is an error raised before training.
    mask : {"balanced", "bernoulli"}
        Balanced within each block (default) or independent coin flips.
    block_size : int
        Members per engine call and per saved block.
    influence : bool
        Compute the ``(n_train, n_test)`` influence matrix when a test set is given.
    mem_threshold, infl_threshold : float
        Defaults of :meth:`high_influence_pairs` (F&Z: 0.25 and 0.15).
    random_state : int
        Seeds masks, relabelling, initialization and batch order.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    chunk_size : int, optional
        Members trained at once inside a block (default: the whole block).
    precision : str, optional
        Passed to the engine when it supports a ``precision`` option.
    out_dir : path, optional
        Save every block there as it finishes; resume / extend from it.
    scheduler : None, str or distributed.Client
        Where the blocks train: ``None`` in this process; ``"local-cluster:N"`` (N
        single-threaded Dask workers on this machine), a scheduler address such as
        ``"tcp://10.0.0.5:8786"``, or a ``distributed.Client`` -- one Dask task per block
        (needs ``imod[distributed]``). The scores are the same either way.
    n_threads : int, optional
        Torch threads per block task (default: torch's own setting in-process, 1 on
        Dask workers).
    overwrite : bool
        Replace a run with another configuration in ``out_dir``.
    progress : bool
        tqdm progress bar over members.

    Attributes
    ----------
    classes_ : ndarray
    y_train_ : ndarray          labels trained on (encoded, with the random labels)
    random_label_idx_ : ndarray indices of relabelled points
    is_random_label_ : ndarray  bool mask of them
    mask_ : ndarray (K, n)
    correct_ : ndarray (K, n), correct_test_ : ndarray (K, m) or None
    p_in_, p_out_, in_counts_, out_counts_, difference_, fractional_ : ndarray (n,)
    scores_ : ndarray (n,)      the chosen score
    influence_ : ndarray (n, m) or None
    null_scores_ : ndarray      scores_ of the random-label points
    threshold_ : float
    memorized_ : ndarray        indices of natural points with score > threshold_
    memorized_mask_ : ndarray (n,) bool
    detection_ : dict           AUROC/AUPR/FPR@95%TPR of both scores on the random-label points
    train_seconds_ : float      time inside the block tasks (training + correctness passes)
    fit_seconds_ : float        wall time of training or loading the members
    score_seconds_ : float      time to compute the scores from the matrices

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> est = MemorizationEstimator(model=(32,), n_members=8, rate=0.5, epochs=2,
    ...                             threshold=0.25, min_out=1, device="cpu")
    >>> est = est.fit(X[:200] / 16, y[:200])
    >>> est.scores_.shape
    (200,)
    """

    def __init__(
        self,
        model=None,
        n_members: int = 64,
        rate: float = 0.7,
        epochs: int = 30,
        batch_size: int = 128,
        optimizer: OptimizerSpec | str | dict = "adam",
        score: str = "fractional",
        random_label_fraction: float = 0.05,
        alpha: float = 0.05,
        threshold: str | float = "null",
        null_side: str = "upper",
        min_in: int = 1,
        min_out: int = 3,
        mask: str = "balanced",
        block_size: int = 64,
        influence: bool = True,
        mem_threshold: float = 0.25,
        infl_threshold: float = 0.15,
        random_state: int | None = 0,
        device: str = "auto",
        chunk_size: int | None = None,
        precision: str | None = None,
        out_dir=None,
        scheduler=None,
        n_threads: int | None = None,
        overwrite: bool = False,
        progress: bool = False,
    ) -> None:
        self.model = model
        self.n_members = n_members
        self.rate = rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.score = score
        self.random_label_fraction = random_label_fraction
        self.alpha = alpha
        self.threshold = threshold
        self.null_side = null_side
        self.min_in = min_in
        self.min_out = min_out
        self.mask = mask
        self.block_size = block_size
        self.influence = influence
        self.mem_threshold = mem_threshold
        self.infl_threshold = infl_threshold
        self.random_state = random_state
        self.device = device
        self.chunk_size = chunk_size
        self.precision = precision
        self.out_dir = out_dir
        self.scheduler = scheduler
        self.n_threads = n_threads
        self.overwrite = overwrite
        self.progress = progress

    # ------------------------------------------------------------------ params
    def get_params(self, deep: bool = True) -> dict:
        import inspect

        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters
                if k != "self"}

    def set_params(self, **params) -> MemorizationEstimator:
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {MASK_KINDS}, got {self.mask!r}")
        if not (self.threshold == "null" or isinstance(self.threshold, numbers.Real)):
            raise ValueError(f"threshold must be 'null' or a number, got {self.threshold!r}")
        if self.threshold == "null" and not self.random_label_fraction > 0:
            raise ValueError("threshold='null' needs random_label_fraction > 0 (the null points)")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.null_side not in ("upper", "lower"):
            raise ValueError(f"null_side must be 'upper' or 'lower', got {self.null_side!r}")
        for name in ("min_in", "min_out", "block_size"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or v < (1 if name != "min_out" else 0):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        check_member_counts(self.n_members, self.block_size, self.rate, self.min_in,
                            self.min_out, self.mask)

    # --------------------------------------------------------------------- fit
    def _mask_for_block(self, n: int):
        rate, rs, kind = float(self.rate), self.random_state, self.mask

        def make(b: int, size: int) -> np.ndarray:
            seed = derive_seed(rs, 1, b)
            if kind == "balanced":
                return balanced_mask(size, n, rate, random_state=seed)
            return bernoulli_mask(size, n, rate, random_state=seed)

        return make

    def fit(self, X, y, X_test=None, y_test=None) -> MemorizationEstimator:
        """Train the members (or load them from ``out_dir``) and compute every score."""
        self._check_params()
        X, y_enc, classes, X_test, yt_enc = check_classification_data(X, y, X_test, y_test)
        n = len(y_enc)
        self.classes_ = classes
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        y_used, rl_idx = relabel_random(y_enc, len(classes), float(self.random_label_fraction),
                                        self.random_state)
        self.y_clean_ = y_enc
        self.y_train_ = y_used
        self.y_test_ = yt_enc
        self.random_label_idx_ = rl_idx
        self.is_random_label_ = np.zeros(n, dtype=bool)
        self.is_random_label_[rl_idx] = True
        if _is_widths(self.model) and X.ndim != 2:
            raise ValueError(
                f"the default MLP needs 2-D X, got shape {X.shape}; pass a module factory "
                "(e.g. model=lambda: MyCNN()) for image-like data"
            )
        model = build_model(self.model, X.shape[1], len(classes))

        config = {
            "estimator": "subsampled",
            "rate": float(self.rate),
            "mask": self.mask,
            "random_label_fraction": float(self.random_label_fraction),
            "data": array_digest(X, y_used),
            "test": array_digest(X_test, yt_enc),
        }
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(self.n_members), desc="memorization members", unit="model")

        def cb(b, done, total):
            if bar is not None:
                bar.update(done - bar.n)

        dask = self.scheduler not in (None, "local")
        threads = self.n_threads if self.n_threads is not None else (1 if dask else None)
        try:
            runs = train_in_blocks(
                model, X, y_used, mask_for_block=self._mask_for_block(n),
                n_members=int(self.n_members), block_size=int(self.block_size),
                rate=float(self.rate), epochs=self.epochs, batch_size=self.batch_size,
                optimizer=self.optimizer, random_state=self.random_state, X_test=X_test,
                y_test=yt_enc, device=self.device, chunk_size=self.chunk_size,
                precision=self.precision, out_dir=self.out_dir, config=config,
                overwrite=self.overwrite, callback=cb, backend="dask" if dask else "local",
                client=self.scheduler if dask else None, torch_threads=threads,
            )
        finally:
            if bar is not None:
                bar.close()
        self._set_results(runs)
        return self

    def _set_results(self, runs: MemberResults) -> None:
        import time

        t0 = time.perf_counter()
        self.members_ = runs
        self.mask_ = runs.mask
        self.correct_ = runs.correct_train
        self.correct_test_ = runs.correct_test
        self.train_seconds_ = runs.train_seconds
        self.fit_seconds_ = runs.seconds
        s = subsample_scores(runs.mask, runs.correct_train, min_in=self.min_in,
                             min_out=self.min_out)
        self.p_in_, self.p_out_ = s.p_in, s.p_out
        self.in_counts_, self.out_counts_ = s.in_counts, s.out_counts
        self.difference_, self.fractional_ = s.difference, s.fractional
        self.scores_ = s.score(self.score)
        self.influence_ = None
        if self.influence and runs.correct_test is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # already warned above
                self.influence_ = influence_matrix(runs.mask, runs.correct_test,
                                                   min_in=self.min_in, min_out=self.min_out)
        self.null_scores_ = self.scores_[self.random_label_idx_]
        if self.threshold == "null":
            self.threshold_ = null_threshold(self.null_scores_, self.alpha, self.null_side)
        else:
            self.threshold_ = float(self.threshold)
        self.memorized_mask_ = self.memorized_for(self.scores_, self.threshold_)
        if (self.threshold == "null" and self.null_side == "upper"
                and not self.memorized_mask_.any() and np.isfinite(self.threshold_)
                and self.threshold_ >= np.nanmax(self.scores_)):
            warnings.warn(
                f"the (1 - alpha) quantile of the null scores is the largest {self.score} score "
                f"({self.threshold_:.3g}): no natural point can exceed it, so memorized_ is empty. "
                "Random-label points are rarely predicted when held out, so their scores pile up "
                "at the maximum (always for the fractional score). null_side='lower' thresholds "
                "at 95 % TPR on the random-label points instead.",
                UserWarning, stacklevel=3,
            )
        self.memorized_ = np.flatnonzero(self.memorized_mask_)
        self.detection_ = {}
        if self.random_label_idx_.size:
            for name in SCORES:
                self.detection_[name] = detection_metrics(getattr(self, name + "_"),
                                                          self.is_random_label_)
        self.score_seconds_ = time.perf_counter() - t0

    def memorized_for(self, scores, threshold: float) -> np.ndarray:
        """Natural (not relabelled) points with a finite score above ``threshold``."""
        s = np.asarray(scores, dtype=float)
        with np.errstate(invalid="ignore"):
            return np.isfinite(s) & (s > threshold) & ~self.is_random_label_

    def null_threshold_for(self, score: str, alpha: float | None = None,
                           side: str | None = None) -> float:
        """The null threshold of another score (``"difference"`` / ``"fractional"``)."""
        s = getattr(self, score + "_")[self.random_label_idx_]
        return null_threshold(s, self.alpha if alpha is None else alpha,
                              self.null_side if side is None else side)

    # ------------------------------------------------------------- reporting
    def high_influence_pairs(self, mem_threshold: float | None = None,
                             infl_threshold: float | None = None, top_k: int | None = None,
                             score: str = "difference"):
        """Train/test pairs with high memorization and influence (F&Z: 0.25 / 0.15).

        Uses the ``difference`` score by default, as F&Z; relabelled points are
        left out (their influence is measured against a wrong label).
        """
        if self.influence_ is None:
            raise ValueError("no influence matrix: fit with X_test/y_test and influence=True")
        mem = getattr(self, score + "_").astype(float).copy()
        mem[self.is_random_label_] = np.nan
        return high_influence_pairs(
            mem, self.influence_,
            mem_threshold=self.mem_threshold if mem_threshold is None else mem_threshold,
            infl_threshold=self.infl_threshold if infl_threshold is None else infl_threshold,
            top_k=top_k, train_labels=self.classes_[self.y_clean_],
            test_labels=self.classes_[self.y_test_],
        )

    def to_frame(self):
        """One row per training example with every score."""
        import pandas as pd

        return pd.DataFrame({
            "index": np.arange(len(self.scores_)),
            "label": self.classes_[self.y_clean_],
            "train_label": self.classes_[self.y_train_],
            "random_label": self.is_random_label_,
            "in_count": self.in_counts_,
            "out_count": self.out_counts_,
            "p_in": self.p_in_,
            "p_out": self.p_out_,
            "difference": self.difference_,
            "fractional": self.fractional_,
            "score": self.scores_,
            "memorized": self.memorized_mask_,
        })
