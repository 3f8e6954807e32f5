"""Train the detector's preprocessing views: one engine call, one plain record per view.

:func:`train_views` scales the data once per view, trains every view's members
together in one :func:`imod.engine.train_ensemble` call per input width (all
views share a width unless whitening dropped a direction), and returns one
:class:`~imod.detector.views.View` per view. It knows no estimator: it gets the
settings as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_random_state

from .._runtime import TrainingDiverged
from ..engine import (
    EnsembleResult,
    OptimizerSpec,
    Placement,
    Recorder,
    Recording,
    StackedMLP,
    Task,
    Training,
    bernoulli_mask,
    per_example_loss,
    train_ensemble,
)
from .preprocessing import IMPreprocessor
from .scoring import normalize, robust_stats, select_weights
from .views import View

__all__ = ["ACTIVATION", "HOLDOUT_RATE", "TrainingDiverged", "TrainingSettings",
           "auto_hidden_sizes", "split_members", "train_views"]

# Hidden activation of the autoencoders.
ACTIVATION = "leaky_relu"
# Fraction of rows each member trains on with scoring="holdout".
HOLDOUT_RATE = 0.5


@dataclass(frozen=True)
class TrainingSettings:
    """How every view's members train and how their recorded losses become scores.

    The estimator's parameters of the same names (see :class:`IMDetector`); one record
    passed along instead of fourteen arguments.
    """

    hidden_sizes: str | Sequence[int]
    init: str
    init_scale: float
    lr: float
    batch_size: int
    max_updates: int
    max_epochs: int
    trim: float
    loss: str
    normalization: str
    n_recordings: int
    scoring: str
    window: tuple[float, float] | None
    max_record_samples: int


def auto_hidden_sizes(n_features: int, style: str = "auto") -> tuple[int, ...]:
    """Encoder widths ending with the latent size (the decoder mirrors them).

    ``style="odim"``: ODIM's sizes (d <= 64: [32, 16] / latent <= 8; up to 500:
    [128, 64] / 32; above: [256, 128] / 64). ``style="auto"`` (the default)
    keeps [32, 16] / 8 for d > 64 too: on ADBench's musk (d=166), optdigits
    (64) and InternetAds (1555) it was as accurate or better, and 2-8x faster
    (the first layer's ``d x width`` product dominates the cost).

    Examples
    --------
    >>> auto_hidden_sizes(21), auto_hidden_sizes(6), auto_hidden_sizes(300)
    ((32, 16, 8), (32, 16, 3), (32, 16, 8))
    >>> auto_hidden_sizes(300, style="odim")
    (128, 64, 32)
    """
    d = int(n_features)
    if d <= 64 or style == "auto":
        return (32, 16, int(min(8, max(1, d // 2))))
    if d <= 500:
        return (128, 64, 32)
    return (256, 128, 64)


def split_members(n_members: int, n_views: int) -> list[int]:
    """Members per view: an even split, earlier views get the remainder.

    Examples
    --------
    >>> split_members(8, 3)
    [3, 3, 2]
    """
    counts = np.full(n_views, n_members // n_views)
    counts[: n_members % n_views] += 1
    return [int(k) for k in counts]


def train_views(
    X: np.ndarray,
    settings: TrainingSettings,
    *,
    preprocessing: Sequence[str],
    n_members: int,
    whiten_rows_per_component: float | None,
    random_state,
    device: torch.device,
    verbose: int = 0,
) -> list[View]:
    """Fit one preprocessor per view and train all views' members; one record per view.

    The members of ``n_members`` are split between the views
    (:func:`split_members`). With one view ``random_state`` seeds its run; with
    several, each view draws its own seed from it in order, and a group of
    views of equal width trains under its first view's seed.

    Raises
    ------
    TrainingDiverged
        The recorded losses or the members' weights are not finite.
    """
    views = list(preprocessing)
    if len(views) == 1:
        seeds = [random_state]
    else:
        rs = check_random_state(random_state)
        seeds = [int(rs.randint(2**31 - 1)) for _ in views]
    pre = [IMPreprocessor(m, rows_per_component=whiten_rows_per_component).fit(X) for m in views]
    counts = split_members(n_members, len(views))
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(pre):
        groups.setdefault(p.n_features_out_, []).append(i)
    out: list[View | None] = [None] * len(views)
    record_index = None  # the first group draws the recorded rows; the others share them
    for members in groups.values():
        group = _train_group(X, [views[i] for i in members], [pre[i] for i in members],
                             [counts[i] for i in members], seeds[members[0]], settings,
                             record_index=record_index, device=device, verbose=verbose)
        record_index = group[0].record_index
        for i, view in zip(members, group, strict=True):
            out[i] = view
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class _Plan:
    """Which rows one group of views trains on and records, and for how long."""

    train_idx: np.ndarray | None  # rows that train (None: all)
    record_index: np.ndarray  # rows whose losses are recorded
    epochs: int
    record_every: int
    mask: np.ndarray | None  # members' rows with scoring="holdout"
    seed: int

    @property
    def n_train(self) -> int:
        return -1 if self.train_idx is None else len(self.train_idx)


def _plan(n: int, n_members: int, random_state, settings: TrainingSettings,
          record_index: np.ndarray | None) -> _Plan:
    """A fixed budget of updates whatever n is: a random subset of the rows trains
    when the epochs would not fit ``max_updates``; the recorded rows are shared."""
    seed = int(check_random_state(random_state).randint(2**31 - 1))
    rng = np.random.default_rng(seed)
    holdout = settings.scoring == "holdout"
    rate = HOLDOUT_RATE if holdout else 1.0
    train_idx = None
    if math.ceil(n * rate / settings.batch_size) > settings.max_updates:
        n_train = min(n, int(math.ceil(settings.max_updates * settings.batch_size / rate)))
        train_idx = np.sort(rng.choice(n, n_train, replace=False))
    n_train = n if train_idx is None else len(train_idx)
    steps = math.ceil(n_train * rate / settings.batch_size)
    epochs = max(1, min(settings.max_epochs, settings.max_updates // max(steps, 1)))
    mask = bernoulli_mask(n_members, n_train, rate, random_state=seed) if holdout else None
    if n <= settings.max_record_samples:
        record_index = np.arange(n)
    elif record_index is None:
        record_index = np.sort(rng.choice(n, settings.max_record_samples, replace=False))
    return _Plan(train_idx, record_index, epochs, max(1, (epochs * steps) // settings.n_recordings),
                 mask, seed)


def _scaled_rows(X: np.ndarray, preprocessors: list[IMPreprocessor], plan: _Plan):
    """Every view's scaled rows, and where the training and recorded rows lie in them.

    Only the rows that train or are recorded are scaled (all of them unless n is
    large): scaling is row by row, so the numbers are the same as scaling all of X.
    """
    if plan.train_idx is None:
        needed, rows, recorded = None, slice(None), plan.record_index
    else:
        needed = np.union1d(plan.train_idx, plan.record_index)
        rows = np.searchsorted(needed, plan.train_idx)
        recorded = np.searchsorted(needed, plan.record_index)
    Xs = X if needed is None else X[needed]
    return [p.transform(Xs).astype(np.float32) for p in preprocessors], rows, recorded


def _take(Xts: list[np.ndarray], rows) -> np.ndarray:
    """Those rows of the one view (the shared-input fast path), or of every view
    stacked ``(V, m, d)`` for a member -> view map; only the rows are copied."""
    return Xts[0][rows] if len(Xts) == 1 else np.stack([Xt[rows] for Xt in Xts])


def _fit_members(Xts, rows, recorded, counts: list[int], sizes: tuple[int, ...], plan: _Plan,
                 settings: TrainingSettings, device: torch.device,
                 verbose: int) -> EnsembleResult:
    """The one engine call of a group: every view's members, each reading its view."""
    same_rows = plan.train_idx is None and len(plan.record_index) == len(Xts[0])
    recorder = Recorder("loss", per_example_loss(settings.loss),
                        X=None if same_rows else _take(Xts, recorded))
    task = Task(StackedMLP(sizes, activation=ACTIVATION), _take(Xts, rows), mask=plan.mask,
                n_members=sum(counts), loss=settings.loss,
                views=None if len(Xts) == 1 else np.repeat(np.arange(len(Xts)), counts))
    training = Training(optimizer=OptimizerSpec("adam", lr=float(settings.lr)),
                        epochs=plan.epochs, batch_size=settings.batch_size,
                        random_state=plan.seed, init=settings.init,
                        init_scale=float(settings.init_scale), trim=float(settings.trim))
    # on the CPU small evaluation batches stay in cache (~2x faster than 8192 rows);
    # a GPU takes as many as its memory budget allows (the engine caps it)
    placement = Placement(device=device, progress=bool(verbose),
                          eval_batch_size=1024 if device.type == "cpu" else 1 << 20)
    recording = Recording([recorder], every=plan.record_every, keep_snapshots=True)
    res = train_ensemble(task, training, placement, recording)
    if not np.isfinite(res.records["loss"]).all() or not all(
        bool(torch.isfinite(t).all()) for snap in res.snapshots for t in snap.values()
    ):
        raise TrainingDiverged(
            f"training diverged: the reconstruction losses or weights became infinite or NaN "
            f"(lr={settings.lr!r}, init_scale={settings.init_scale!r}); "
            f"use a smaller lr or init_scale"
        )
    return res


def _view(method: str, preprocessor: IMPreprocessor, own: slice, res: EnsembleResult,
          plan: _Plan, epochs: np.ndarray, sizes: tuple[int, ...],
          settings: TrainingSettings, n: int) -> View:
    """One view's record: its members' kept snapshots, normalization and weights."""
    L = res.records["loss"][:, own]
    center, scale = robust_stats(L)
    Z = normalize(L, center, scale, settings.normalization)
    W, bimod = select_weights(settings.scoring, Z, epochs, window=settings.window)
    used = np.flatnonzero(W.sum(axis=1) > 0)
    return View(
        method=method, preprocessor=preprocessor, sizes=sizes, activation=ACTIVATION,
        loss=settings.loss, normalization=settings.normalization,
        snapshots=[{name: t[own].clone() for name, t in res.snapshots[i].items()}
                   for i in used],
        record_epochs=epochs, record_updates=res.record_updates,
        center=center, scale=scale, weights=W, used_recordings=used, bimodality=bimod,
        train_scores=np.einsum("tk,tkm->m", W, Z),  # outlier scores; set below
        train_trajectories=L.mean(axis=1).astype(np.float32),
        record_index=plan.record_index, n_train_rows=n if plan.train_idx is None else plan.n_train,
    )


def _holdout_membership(plan: _Plan, own: slice, n: int) -> np.ndarray:
    """Which recorded rows each of the view's members trained on (scoring="holdout")."""
    k = own.stop - own.start
    membership = np.zeros((k, n), dtype=bool)
    membership[:, slice(None) if plan.train_idx is None else plan.train_idx] = plan.mask[own]
    return membership[:, plan.record_index]


def _train_group(
    X: np.ndarray,
    methods: list[str],
    preprocessors: list[IMPreprocessor],
    counts: list[int],
    random_state,
    settings: TrainingSettings,
    *,
    record_index: np.ndarray | None,
    device: torch.device,
    verbose: int,
) -> list[View]:
    """Views whose scaled data share one width: one engine call for all their members."""
    n = X.shape[0]
    d_in = preprocessors[0].n_features_out_
    if isinstance(settings.hidden_sizes, str):
        hidden = auto_hidden_sizes(d_in, style=settings.hidden_sizes)
    else:
        hidden = tuple(int(h) for h in settings.hidden_sizes)
    sizes = (d_in, *hidden, *hidden[-2::-1], d_in)
    plan = _plan(n, sum(counts), random_state, settings, record_index)
    Xts, rows, recorded = _scaled_rows(X, preprocessors, plan)
    res = _fit_members(Xts, rows, recorded, counts, sizes, plan, settings, device, verbose)
    epochs = res.record_epochs
    if plan.train_idx is not None:
        # Epochs are counted over the training subset; report passes over all rows.
        epochs = epochs * (plan.n_train / n)
    out, k0 = [], 0
    for method, p, k, Xt in zip(methods, preprocessors, counts, Xts, strict=True):
        own = slice(k0, k0 + k)
        k0 += k
        view = _view(method, p, own, res, plan, epochs, sizes, settings, n)
        # Transductive scores of the recorded rows (all rows when n <= max_record_samples):
        # straight from the records (the losses of the kept snapshots), or, with holdout,
        # scored by the kept snapshots (a row only by the members that did not train on
        # it). Rows beyond the recorded ones are not scored here: score_samples does that.
        if plan.mask is not None:
            view.train_scores = view.scaled_outlier_scores(
                Xt[recorded], device, membership=_holdout_membership(plan, own, n))
        view.train_scores = -view.train_scores
        out.append(view)
    return out
