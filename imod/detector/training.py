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
    OptimizerSpec,
    Recorder,
    StackedMLP,
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
    seed = int(check_random_state(random_state).randint(2**31 - 1))
    rng = np.random.default_rng(seed)
    d_in = preprocessors[0].n_features_out_
    if isinstance(settings.hidden_sizes, str):
        hidden = auto_hidden_sizes(d_in, style=settings.hidden_sizes)
    else:
        hidden = tuple(int(h) for h in settings.hidden_sizes)
    sizes = (d_in, *hidden, *hidden[-2::-1], d_in)

    # Schedule: a fixed budget of updates, whatever n is.
    holdout = settings.scoring == "holdout"
    rate = HOLDOUT_RATE if holdout else 1.0
    if math.ceil(n * rate / settings.batch_size) > settings.max_updates:
        n_train = min(n, int(math.ceil(settings.max_updates * settings.batch_size / rate)))
        train_idx = np.sort(rng.choice(n, n_train, replace=False))
    else:
        n_train, train_idx = n, None
    steps = math.ceil(n_train * rate / settings.batch_size)
    epochs = max(1, min(settings.max_epochs, settings.max_updates // max(steps, 1)))
    record_every = max(1, (epochs * steps) // settings.n_recordings)

    mask = bernoulli_mask(sum(counts), n_train, rate, random_state=seed) if holdout else None
    if n <= settings.max_record_samples:
        record_index = np.arange(n)
    elif record_index is None:
        record_index = np.sort(rng.choice(n, settings.max_record_samples, replace=False))
    same_rows = train_idx is None and len(record_index) == n

    # Only the rows that train or are recorded are scaled (all of them unless n is
    # large): scaling is row by row, so the numbers are the same as scaling all of X.
    if train_idx is None:
        needed, rows, recorded = None, slice(None), record_index
    else:
        needed = np.union1d(train_idx, record_index)
        rows, recorded = np.searchsorted(needed, train_idx), np.searchsorted(needed, record_index)
    Xs = X if needed is None else X[needed]
    Xts = [p.transform(Xs).astype(np.float32) for p in preprocessors]

    def take(rows) -> np.ndarray:
        """Those rows of the one view (the shared-input fast path), or of every view
        stacked ``(V, m, d)`` for a member -> view map; only the rows are copied."""
        return Xts[0][rows] if len(Xts) == 1 else np.stack([Xt[rows] for Xt in Xts])

    recorder = Recorder("loss", per_example_loss(settings.loss),
                        X=None if same_rows else take(recorded))
    res = train_ensemble(
        StackedMLP(sizes, activation=ACTIVATION),
        take(rows),
        mask=mask,
        n_members=None if holdout else sum(counts),
        views=None if len(Xts) == 1 else np.repeat(np.arange(len(Xts)), counts),
        loss=settings.loss,
        optimizer=OptimizerSpec("adam", lr=float(settings.lr)),
        epochs=epochs,
        batch_size=settings.batch_size,
        trim=float(settings.trim),
        random_state=seed,
        init=settings.init,
        init_scale=float(settings.init_scale),
        recorders=[recorder],
        record_every=record_every,
        keep_snapshots=True,
        device=device,
        progress=bool(verbose),
        # on the CPU small evaluation batches stay in cache (~2x faster than 8192 rows);
        # a GPU takes as many as its memory budget allows (the engine caps it)
        eval_batch_size=1024 if device.type == "cpu" else 1 << 20,
    )
    L_all = res.records["loss"]
    if not np.isfinite(L_all).all() or not all(
        bool(torch.isfinite(t).all()) for snap in res.snapshots for t in snap.values()
    ):
        raise TrainingDiverged(
            f"training diverged: the reconstruction losses or weights became infinite or NaN "
            f"(lr={settings.lr!r}, init_scale={settings.init_scale!r}); "
            f"use a smaller lr or init_scale"
        )
    epochs_arr = res.record_epochs
    if train_idx is not None:
        # Epochs are counted over the training subset; report passes over all rows.
        epochs_arr = epochs_arr * (n_train / n)
    out, k0 = [], 0
    for method, p, k, Xt in zip(methods, preprocessors, counts, Xts, strict=True):
        own = slice(k0, k0 + k)
        k0 += k
        membership = None
        if holdout:
            membership = np.zeros((k, n), dtype=bool)
            membership[:, slice(None) if train_idx is None else train_idx] = mask[own]
            membership = membership[:, record_index]
        L = L_all[:, own]
        center, scale = robust_stats(L)
        Z = normalize(L, center, scale, settings.normalization)
        W, bimod = select_weights(settings.scoring, Z, epochs_arr, window=settings.window)
        used = np.flatnonzero(W.sum(axis=1) > 0)
        view = View(
            method=method, preprocessor=p, sizes=sizes, activation=ACTIVATION, loss=settings.loss,
            normalization=settings.normalization,
            snapshots=[{name: t[own].clone() for name, t in res.snapshots[i].items()}
                       for i in used],
            record_epochs=epochs_arr, record_updates=res.record_updates,
            center=center, scale=scale, weights=W, used_recordings=used, bimodality=bimod,
            train_scores=np.empty(0), train_trajectories=L.mean(axis=1).astype(np.float32),
            record_index=record_index, n_train_rows=n_train,
        )
        # Transductive scores of the recorded rows (all rows when n <= max_record_samples):
        # straight from the records (the losses of the kept snapshots), or, with holdout,
        # scored by the kept snapshots (a row only by the members that did not train on
        # it). Rows beyond the recorded ones are not scored here: score_samples does that.
        if membership is None:
            outlier = np.einsum("tk,tkm->m", W, Z)
        else:
            outlier = view.scaled_outlier_scores(Xt[recorded], device,
                                                 membership=membership)
        view.train_scores = -outlier
        out.append(view)
    return out
