"""The subsampled memorization estimator (Feldman & Zhang 2020) with the critique's fixes.

:class:`MemorizationEstimator` trains ``n_members`` classifiers on random subsets
of ``rate * n`` training examples through the shared ensemble engine, then
computes per-example memorization scores and train-test influence from one
mask matrix and one correctness matrix (see :mod:`imod.memorization.scores`).

The critique's fixes are options: ``rate=0.95`` (less sampling bias),
``score="fractional"`` (fewer false positives), ``threshold="null"`` (a
threshold from the scores of randomly relabelled points) and de-duplicated test
sets (:func:`imod.memorization.leakage.find_near_duplicates`). The same masks and
recordings give C-scores and online LiRA membership scores
(:mod:`imod.memorization.membership`).

Every fit also reports how stable its scores are (``stability_``: the two halves of the
members scored apart, :mod:`imod.memorization.stability`) and a one-run proxy, the
cumulative training loss of the pilot's members (``cumulative_loss_``, Ravikumar et al.
2025).

Masks are generated per block of ``block_size`` members and balanced within each
block, so every example is IN exactly ``sum_b round(rate * size_b)`` members (the
same for all examples) and a run can be resumed or extended (``out_dir``).
"""

from __future__ import annotations

import numbers
import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions

from imod._runtime import TrainingDiverged
from imod._version import __version__, code_digest
from imod.engine import OptimizerSpec, balanced_mask

from .fitted_results import FittedResultsMixin
from .inputs import (
    CHANCE_AUROC,
    MEMORIZED_ACCURACY,
    NotMemorizedWarning,
    build_model,
    check_classification_data,
    check_member_counts,
    is_widths,
    relabel_random,
)
from .membership import lira_scores, membership_auroc
from .runs import (
    AUTO_MAX_EPOCHS,
    MemberResults,
    TrainingConfig,
    array_digest,
    derive_seed,
    fit_epoch,
    pilot_run,
    train_in_blocks,
)
from .scores import (
    SCORES,
    cumulative_loss,
    detection_metrics,
    influence_matrix,
    null_threshold,
    subsample_scores,
)
from .stability import half_assignment, split_half_stability

__all__ = ["MemorizationEstimator", "NotMemorizedWarning", "check_classification_data",
           "relabel_random", "build_model", "CHANCE_AUROC", "MEMORIZED_ACCURACY"]


# An example needs one member that trained on it for p_in (its other member counts are
# min_out's business): the one possible value, so not a parameter.
MIN_IN = 1

# A member whose mean cross-entropy on its own rows ends above this many times the chance
# level log(C) has diverged (training starts near log(C) and only goes down when it works).
DIVERGED_LOSS = 10.0


class MemorizationEstimator(FittedResultsMixin, BaseEstimator):
    """Subsampled memorization and influence estimator on the ensemble engine.

    The defaults train each member until it fits its own training rows, random
    labels included (Feldman & Zhang's setting): an MLP with one hidden layer of
    512 units, Adam at learning rate 3e-3, batch 32, and ``epochs="auto"``.

    Parameters
    ----------
    model : None, sequence of int, StackedMLP, ModuleMembers or module factory
        Member architecture. ``None`` = MLP with hidden widths
        :data:`~imod.memorization.runs.DEFAULT_HIDDEN` (512,); a sequence of ints =
        those hidden widths; a ``torch.nn.Module`` factory (e.g. ``lambda: MyCNN()``)
        for image-like ``X`` of any shape.
    n_members : int
        K, models trained on random subsets.
    rate : float in (0, 1)
        Fraction of the training set each member trains on (F&Z: 0.7; the
        critique: 0.95).
    epochs : int or "auto"
        Passes over each member's subset. ``"auto"``: a pilot of the first 4
        members trains up to 200 epochs, and the run trains 1.25 times as long as
        the pilot needed to fit 99 % of its own natural and of its own random-label
        rows (:func:`~imod.memorization.runs.epochs_to_fit`); ``epochs_`` says how long.
    batch_size : int
        Examples per member per update.
    optimizer : None, OptimizerSpec, str or dict
        ``None`` = Adam, learning rate 3e-3.
    score : {"fractional", "difference"}
        Which score ``scores_``, ``threshold_`` and ``memorized_`` use.
    random_label_fraction : float
        Fraction of training points relabelled to a random different class (the
        null distribution). 0 disables it (then give a numeric ``threshold``).
    alpha : float
        Null threshold at the ``alpha`` quantile of the null scores (``null_side=
        "lower"``: 95 % of random-label points lie at or above it, i.e. 95 % TPR) or
        at the ``(1 - alpha)`` quantile (``"upper"``, the critique's Eq. 3; when the
        members fit the random labels, the null scores pile up at the maximum and no
        natural point exceeds it).
    threshold : "null" or float
        ``"null"`` or a fixed score threshold (F&Z: 0.25 on the difference score).
    null_side : {"lower", "upper"}
        See ``alpha``.
    min_out : int
        Examples held out of fewer members get NaN scores; too few members for it is an
        error raised before training (every example is IN at least one member too).
    block_size : int
        Members per engine call, per saved block and per progress-bar step.
    influence : bool
        Compute the ``(n_train, n_test)`` influence matrix when a test set is given.
    random_state : int
        Seeds masks, relabelling, initialization and batch order.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    chunk_size : int, optional
        Members trained at once inside a block (default: as many as the memory budget
        allows, and on the CPU as keep a layer's activations near 1 MiB; the numbers
        do not depend on it).
    precision : str, optional
        Engine precision (default fp32).
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
        tqdm progress bars: the pilot's epochs, then the members block by block.

    Attributes
    ----------
    classes_ : ndarray
    y_train_ : ndarray          labels trained on (encoded, with the random labels)
    random_label_idx_ : ndarray indices of relabelled points
    is_random_label_ : ndarray  bool mask of them
    epochs_ : int               epochs each member trained (``epochs`` or the auto budget)
    training_ : TrainingConfig  the training record of the run
    mask_ : ndarray (K, n)
    correct_ : ndarray (K, n), correct_test_ : ndarray (K, m) or None
    in_sample_accuracy_ : dict  mean accuracy of the members on the rows they trained on,
                                ``"natural"`` and ``"random_label"`` (NaN without them)
    p_in_, p_out_, in_counts_, out_counts_, difference_, fractional_ : ndarray (n,)
    scores_ : ndarray (n,)      the chosen score
    c_scores_ : ndarray (n,)    C-score at this rate (held-out accuracy, Jiang et al. 2021)
    lira_ : ndarray (K, n)      online LiRA log likelihood ratio of member k on example i
    lira_scores_ : ndarray (n,) mean of ``lira_`` over the members that trained on i
    membership_ : dict          AUROC and TPR at 1 % / 0.1 % FPR of ``lira_`` (all pairs)
    influence_ : ndarray (n, m) or None
    null_scores_ : ndarray      scores_ of the random-label points
    threshold_ : float
    null_meaningful_ : bool     the random-label rows were memorized and found (AUROC)
    memorized_ : ndarray        indices of natural points with score > threshold_ (>= for
                                the lower null side)
    memorized_mask_ : ndarray (n,) bool
    detection_ : dict           AUROC/AUPR/FPR@95%TPR of the scores on the random-label points
                                (``difference``, ``fractional``, ``lira``, ``cumulative_loss``)
    cumulative_loss_ : ndarray (n,)  cumulative training loss (Ravikumar et al. 2025): the
                                sum over ``epochs_`` epochs of a row's cross-entropy, averaged
                                over the pilot members (the run's first 4) that trained on it,
                                NaN where none did. With ``epochs="auto"`` it comes from the
                                pilot's recordings (no training of its own); with a fixed
                                ``epochs`` the 4 pilot members train for it
    stability_ : dict           split-half stability: ``spearman`` of the scores of two halves
                                of the members (alternate blocks), ``spearman_brown`` (the
                                correlation predicted for two runs of K members), ``jaccard``
                                of their memorized sets, ``members_per_half``
                                (:func:`~imod.memorization.stability.split_half_stability`).
                                It is the agreement of two independent runs of K/2 members:
                                on digits two runs agree at 0.82 / 0.85 / 0.90 with 32 / 64 /
                                256 members, on MNIST-1D at 0.91 / 0.95 with 32 / 64
                                (``benchmarks/studies/memorization_stability.py``)
    train_seconds_ : float      time inside the block tasks (training + correctness passes)
    fit_seconds_ : float        wall time of training or loading the members (with the pilot)
    pilot_seconds_ : float      wall time of the pilot
    score_seconds_ : float      time to compute the scores from the matrices

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> est = MemorizationEstimator(model=(32,), n_members=8, rate=0.5, epochs=2,
    ...                             threshold=0.25, min_out=1, device="cpu")
    >>> import warnings; warnings.simplefilter("ignore", NotMemorizedWarning)
    >>> est = est.fit(X[:200] / 16, y[:200])
    >>> est.scores_.shape, est.lira_.shape
    ((200,), (8, 200))
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        "n_members": [Interval(numbers.Integral, 1, None, closed="left")],
        "rate": [Interval(numbers.Real, 0, 1, closed="neither")],
        "epochs": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "optimizer": [None, OptimizerSpec, str, dict],
        "score": [StrOptions(set(SCORES))],
        "random_label_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "alpha": [Interval(numbers.Real, 0, 1, closed="neither")],
        "threshold": [StrOptions({"null"}), numbers.Real],
        "null_side": [StrOptions({"lower", "upper"})],
        "min_out": [Interval(numbers.Integral, 0, None, closed="left")],
        "block_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "influence": ["boolean"],
        "random_state": [None, numbers.Integral],
        "device": "no_validation",
        "chunk_size": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "precision": [None, str],
        "out_dir": [None, str, os.PathLike],
        "scheduler": "no_validation",
        "n_threads": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "overwrite": ["boolean"],
        "progress": ["boolean"],
    }

    def __init__(
        self,
        *,
        model=None,
        n_members: int = 64,
        rate: float = 0.7,
        epochs: int | str = "auto",
        batch_size: int = 32,
        optimizer: OptimizerSpec | str | dict | None = None,
        score: str = "fractional",
        random_label_fraction: float = 0.05,
        alpha: float = 0.05,
        threshold: str | float = "null",
        null_side: str = "lower",
        min_out: int = 3,
        block_size: int = 16,
        influence: bool = True,
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
        self.min_out = min_out
        self.block_size = block_size
        self.influence = influence
        self.random_state = random_state
        self.device = device
        self.chunk_size = chunk_size
        self.precision = precision
        self.out_dir = out_dir
        self.scheduler = scheduler
        self.n_threads = n_threads
        self.overwrite = overwrite
        self.progress = progress

    def _check_params(self) -> None:
        self._validate_params()
        if self.threshold == "null" and not self.random_label_fraction > 0:
            raise ValueError("threshold='null' needs random_label_fraction > 0 (the null points)")
        check_member_counts(self.n_members, self.block_size, self.rate, MIN_IN, self.min_out)

    def _training(self, epochs: int) -> TrainingConfig:
        dask = self.scheduler not in (None, "local")
        return TrainingConfig(
            epochs=int(epochs), batch_size=int(self.batch_size),
            optimizer=OptimizerSpec("adam", lr=3e-3) if self.optimizer is None
            else self.optimizer,
            random_state=self.random_state, device=self.device,
            block_size=int(self.block_size), chunk_size=self.chunk_size,
            precision=self.precision,
            torch_threads=self.n_threads if self.n_threads is not None else (1 if dask else None),
            scheduler=self.scheduler, overwrite=self.overwrite,
        )

    # --------------------------------------------------------------------- fit
    def _mask_for_block(self, n: int):
        rate, rs = float(self.rate), self.random_state

        def make(b: int, size: int) -> np.ndarray:
            # balanced within the block: every example is IN the same number of members
            return balanced_mask(size, n, rate, random_state=derive_seed(rs, 1, b))

        return make

    def fit(self, X, y, X_test=None, y_test=None) -> MemorizationEstimator:
        """Train the members (or load them from ``out_dir``) and compute every score.

        Parameters
        ----------
        X : array-like of shape (n, ...)
        y : array-like of shape (n,)
            Class labels.
        X_test, y_test : array-like, optional
            A test set for the influence matrix.

        Returns
        -------
        self
        """
        import time

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
        if is_widths(self.model) and X.ndim != 2:
            raise ValueError(
                f"the default MLP needs 2-D X, got shape {X.shape}; pass a module factory "
                "(e.g. model=lambda: MyCNN()) for image-like data"
            )
        model = build_model(self.model, X.shape[1], len(classes))
        make_mask = self._mask_for_block(n)
        t0 = time.perf_counter()
        # The pilot (the run's first members, seeded alike) sets the "auto" budget and
        # records every row's loss after every epoch: the cumulative loss comes from it.
        size = min(int(self.block_size), int(self.n_members))
        pilot = make_mask(0, size)[: min(4, size)]
        rec = pilot_run(model, X, y_used, pilot, self._training(1),
                        epochs=AUTO_MAX_EPOCHS if self.epochs == "auto" else int(self.epochs),
                        progress=self.progress)
        self.pilot_curve_ = None
        if self.epochs == "auto":
            groups = [~self.is_random_label_, self.is_random_label_]
            self.epochs_, self.pilot_curve_ = fit_epoch(rec >= 0, pilot, groups)
        else:
            self.epochs_ = int(self.epochs)
        self.cumulative_loss_ = cumulative_loss(np.abs(rec[: self.epochs_]), pilot)
        self.pilot_seconds_ = time.perf_counter() - t0
        self.training_ = self._training(self.epochs_)

        config = {
            "estimator": "subsampled",
            "rate": float(self.rate),
            "mask": "balanced",
            "random_label_fraction": float(self.random_label_fraction),
            "data": array_digest(X, y_used),
            "test": array_digest(X_test, yt_enc),
            # blocks made by other code (another release or any edit of imod) are refused
            "imod": {"version": __version__, "code": code_digest()},
        }
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(self.n_members), desc=f"members ({self.epochs_} epochs)",
                       unit="model")

        def cb(b, done, total):
            if bar is not None:
                bar.update(done - bar.n)

        try:
            runs = train_in_blocks(
                model, X, y_used, mask_for_block=make_mask, n_members=int(self.n_members),
                rate=float(self.rate), training=self.training_, X_test=X_test, y_test=yt_enc,
                out_dir=self.out_dir, config=config, callback=cb,
            )
        finally:
            if bar is not None:
                bar.close()
        _check_diverged(runs, len(classes), self.training_)
        self._set_results(runs)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _set_results(self, runs: MemberResults) -> None:
        import time

        t0 = time.perf_counter()
        self.members_ = runs
        self.mask_ = runs.mask
        self.correct_ = runs.correct_train
        self.correct_test_ = runs.correct_test
        self.train_seconds_ = runs.train_seconds
        rl = self.is_random_label_
        with np.errstate(invalid="ignore"):
            self.in_sample_accuracy_ = {
                "natural": float(self.correct_[self.mask_ & ~rl[None]].mean())
                if (~rl).any() else float("nan"),
                "random_label": float(self.correct_[self.mask_ & rl[None]].mean())
                if rl.any() else float("nan"),
            }
        s = subsample_scores(runs.mask, runs.correct_train, min_in=MIN_IN,
                             min_out=self.min_out)
        self.p_in_, self.p_out_ = s.p_in, s.p_out
        self.in_counts_, self.out_counts_ = s.in_counts, s.out_counts
        self.difference_, self.fractional_ = s.difference, s.fractional
        self.scores_ = s.score(self.score)
        self.c_scores_ = self.p_out_.copy()
        self.lira_ = lira_scores(runs.mask, runs.confidence_train)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.lira_scores_ = np.nanmean(np.where(runs.mask, self.lira_, np.nan), axis=0)
        self.membership_ = membership_auroc(runs.mask, self.lira_)
        self.influence_ = None
        if self.influence and runs.correct_test is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # already warned above
                self.influence_ = influence_matrix(runs.mask, runs.correct_test,
                                                   min_in=MIN_IN, min_out=self.min_out)
        self.null_scores_ = self.scores_[self.random_label_idx_]
        if self.threshold == "null":
            self.threshold_ = null_threshold(self.null_scores_, self.alpha, self.null_side)
        else:
            self.threshold_ = float(self.threshold)
        self.memorized_mask_ = self.memorized_for(
            self.scores_, self.threshold_,
            inclusive=self.threshold == "null" and self.null_side == "lower")
        self.memorized_ = np.flatnonzero(self.memorized_mask_)
        self.detection_ = {}
        if self.random_label_idx_.size:
            for name in (*SCORES, "lira_scores", "cumulative_loss"):
                self.detection_[name.removesuffix("_scores")] = detection_metrics(
                    getattr(self, name + "_"), self.is_random_label_)
        self.stability_ = split_half_stability(
            runs.mask, runs.correct_train, rl, halves=half_assignment(
                runs.n_members, int(self.block_size)), score=self.score,
            threshold=None if self.threshold == "null" else float(self.threshold),
            alpha=self.alpha, side=self.null_side, min_out=1)  # a half has half the OUT members
        self._warn_if_not_meaningful()
        self.score_seconds_ = time.perf_counter() - t0


def _check_diverged(runs: MemberResults, n_classes: int, training: TrainingConfig) -> None:
    """Refuse members whose training diverged: their outputs are non-finite or their mean
    cross-entropy on their own rows ended over ``DIVERGED_LOSS`` times the chance level
    ``log(C)`` (where training starts). Their predictions are arbitrary, and scores from
    them would call every point memorized at chance accuracy."""
    conf = runs.confidence_train.astype(np.float64)  # log(p_y / (1 - p_y))
    with np.errstate(over="ignore", invalid="ignore"):
        ce = np.logaddexp(0.0, -conf)  # -log p_y
        own = np.where(runs.mask, ce, 0.0).sum(axis=1) / np.maximum(runs.mask.sum(axis=1), 1)
    bad = ~np.isfinite(own) | (own > DIVERGED_LOSS * np.log(max(n_classes, 2)))
    if bad.any():
        raise TrainingDiverged(
            f"training diverged: {int(bad.sum())} of {len(bad)} members ended with infinite, "
            f"NaN or exploding losses on their own rows (optimizer "
            f"{getattr(training.optimizer, 'name', training.optimizer)}, lr="
            f"{getattr(training.optimizer, 'lr', '?')}); use a smaller learning rate")
