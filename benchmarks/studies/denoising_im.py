"""Study variant (issue 23): IM detectors whose members learn a denoising pretext task.

The default IMDetector's members reconstruct their input; an input that breaks the
inliers' joint structure while every feature stays in range (ADBench's dependency
anomalies, and local ones) is reconstructed nearly as well as an inlier when the
network can copy features through. Here the members are trained to restore a row from a
corrupted copy of it, so each output must be predicted from the *other* features:

* ``noise="swap"``: a fraction ``rate`` of each row's features replaced by the same
  feature of a random training row (swap noise; the corrupted features follow the
  inliers' marginals, exactly what a dependency anomaly looks like);
* ``noise="mask"``: the same fraction set to the view's centre, 0 after scaling
  (masked-feature prediction);
* ``noise="gauss"`` (round 12): every entry plus Gaussian noise of standard deviation
  ``sigma`` in the view's scaled units. A denoising autoencoder's residual
  ``r(x) - x`` estimates ``sigma^2 * grad log p(x)`` (Alain & Bengio 2014), so a row's
  clean loss grows with how steeply the inliers' density falls where it lies, also
  *along* the inliers' structure, which plain reconstruction cannot see: on sets of 3-10
  columns the latent code spans the data and a local anomaly far out along it is
  reconstructed as well as an inlier.

The score is unchanged: each row's clean reconstruction loss at the early recordings
(the IM effect), normalized, weighted and combined over views exactly as IMDetector
does, so scoring, ``explain``-style per-feature losses and persistence of the views work
as they are. Training sees ``max_updates * batch_size`` (row, corruption) pairs, rows
drawn as evenly as possible, each pair with its own corruption (a fixed corrupted copy
per row would be memorized on small sets). ``tasks`` may mix plain reconstruction views
with denoising ones in one ensemble (``("reconstruct", "swap")``: the members split
between the tasks, every task with the detector's preprocessing views).

This is study code, not part of ``imod``; only IMDetector's public parameters are passed
through (``params``).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> z = rng.normal(size=(400, 1))
>>> X = np.c_[z, z + 0.1 * rng.normal(size=(400, 1)), -z]     # strongly dependent columns
>>> X[:10] = rng.permutation(X[:10].ravel()).reshape(10, 3)   # break the joint, keep the range
>>> det = DenoisingIM(random_state=0).fit(X)
>>> s = -det.score_samples(X)
>>> bool(np.median(s[:10]) > np.quantile(s[10:], 0.9))
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from imod._runtime import resolve_device, torch_threads
from imod.detector import IMDetector
from imod.detector.preprocessing import IMPreprocessor
from imod.detector.projection import RandomProjection
from imod.detector.scoring import normalize, offset_from, robust_stats, select_weights
from imod.detector.ties import share_ties
from imod.detector.training import (
    ACTIVATION,
    TrainingDiverged,
    TrainingSettings,
    auto_hidden_sizes,
    split_members,
    train_views,
)
from imod.detector.views import View
from imod.engine import (
    OptimizerSpec,
    Placement,
    Recorder,
    Recording,
    StackedMLP,
    Task,
    Training,
    per_example_loss,
    train_ensemble,
)

NOISES = ("swap", "mask", "gauss")


def corrupt(Xt: np.ndarray, rows: np.ndarray, noise: str, rate: float,
            rng: np.random.Generator, sigma: float = 0.5) -> np.ndarray:
    """``Xt[rows]`` with each entry replaced with probability ``rate`` (at least one per
    row, never all of a row when there are 2+ features); ``"gauss"``: every entry plus
    ``N(0, sigma^2)`` (``rate`` unused)."""
    out = Xt[rows].copy()
    m, d = out.shape
    if noise == "gauss":
        out += rng.normal(scale=sigma, size=out.shape).astype(out.dtype)
        return out
    hit = rng.random((m, d)) < rate
    hit[np.arange(m), rng.integers(d, size=m)] = True  # every pair has a target to predict
    if d > 1:
        full = hit.all(axis=1)
        hit[np.flatnonzero(full), rng.integers(d, size=int(full.sum()))] = False
    if noise == "swap":
        donors = Xt[rng.integers(len(Xt), size=(m, d)), np.arange(d)]
        out[hit] = donors[hit]
    else:
        out[hit] = 0.0
    return out


def _train_noisy_group(X: np.ndarray, methods: list[str], pre: list[IMPreprocessor],
                       counts: list[int], seed: int, s: TrainingSettings, noise: str,
                       rate: float, device: torch.device, one_call: bool = False,
                       sigma: float = 0.5) -> list[View]:
    """One engine call: every member of these views restores rows from corrupted copies;
    the clean reconstruction loss of every row is recorded (IMDetector's `_train_group`
    with inputs != targets; the same records, normalization and weights)."""
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    Xts = [p.transform(X).astype(np.float32) for p in pre]
    d_in = Xts[0].shape[1]
    hidden = (auto_hidden_sizes(d_in, style=s.hidden_sizes) if isinstance(s.hidden_sizes, str)
              else tuple(int(h) for h in s.hidden_sizes))
    sizes = (d_in, *hidden, *hidden[-2::-1], d_in)
    # Pairs: every row as evenly as the budget allows, each with its own corruption.
    m = s.max_updates * s.batch_size
    rows = np.concatenate([rng.permutation(n) for _ in range(math.ceil(m / n))])[:m]
    record = np.arange(n) if n <= s.max_record_samples else np.sort(
        rng.choice(n, s.max_record_samples, replace=False))

    if not one_call:  # rounds 7-8: one engine call per view
        results = [_train_one(sizes, corrupt(Xt, rows, noise, rate, rng, sigma), Xt[rows],
                              Xt[record], k, seed + i, s, device)
                   for i, (Xt, k) in enumerate(zip(Xts, counts, strict=True))]
    else:  # round 11: every view's members in one call (Task(views=...) with targets)
        inputs = np.stack([corrupt(Xt, rows, noise, rate, rng, sigma) for Xt in Xts])
        views = np.repeat(np.arange(len(Xts)), counts)
        res = _train_one(sizes, inputs, np.stack([Xt[rows] for Xt in Xts]),
                         np.stack([Xt[record] for Xt in Xts]), len(views), seed, s, device,
                         views=views)
        results = [_Members(res, views == v) for v in range(len(Xts))]
    out = []
    for method, p, res in zip(methods, pre, results, strict=True):
        out.append(_view(method, p, sizes, res, s, n, record))
    return out


class _Members:
    """The part of an engine result ``_view`` reads, for some of its members."""

    def __init__(self, res, sel: np.ndarray) -> None:
        self.records = {"loss": res.records["loss"][:, sel]}
        self.snapshots = [{k: t[torch.as_tensor(sel)] for k, t in snap.items()}
                          for snap in res.snapshots]
        self.record_updates = res.record_updates





def _train_one(sizes, inputs, targets, clean, k, seed, s, device, views=None):
    steps = math.ceil(inputs.shape[-2] / s.batch_size)
    res = train_ensemble(
        Task(StackedMLP(sizes, activation=ACTIVATION), inputs, targets, n_members=k,
             loss=s.loss, views=views),
        Training(optimizer=OptimizerSpec("adam", lr=float(s.lr)), epochs=1,
                 batch_size=s.batch_size, trim=float(s.trim), random_state=seed, init=s.init,
                 init_scale=float(s.init_scale)),
        Placement(device=device, eval_batch_size=1024),
        Recording([Recorder("loss", per_example_loss(s.loss), X=clean, y=clean)],
                  every=max(1, steps // s.n_recordings), keep_snapshots=True),
    )
    if not np.isfinite(res.records["loss"]).all():
        raise TrainingDiverged("training diverged: non-finite losses; use a smaller lr")
    return res


def _view(method, p, sizes, res, s, n, record) -> View:
    """IMDetector's view record from one call's clean-loss records (same normalization,
    weights and training scores as `imod.detector.training`)."""
    L = res.records["loss"]
    # Passes over the rows, as IMDetector counts them (its window is in epochs).
    epochs_arr = res.record_updates * s.batch_size / n
    center, scale = robust_stats(L)
    Z = normalize(L, center, scale, s.normalization)
    W, bimod = select_weights(s.scoring, Z, epochs_arr, window=s.window)
    used = np.flatnonzero(W.sum(axis=1) > 0)
    return View(
        method=method, preprocessor=p, sizes=sizes, activation=ACTIVATION, loss=s.loss,
        normalization=s.normalization,
        snapshots=[{name: t.clone() for name, t in res.snapshots[i].items()} for i in used],
        record_epochs=epochs_arr, record_updates=res.record_updates,
        center=center, scale=scale, weights=W, used_recordings=used, bimodality=bimod,
        train_scores=-np.einsum("tk,tkm->m", W, Z),
        train_trajectories=L.mean(axis=1).astype(np.float32),
        record_index=record, n_train_rows=n,
    )


class DenoisingIM:
    """IMDetector whose members (all, or those of the denoising ``tasks``) restore
    corrupted rows; see the module.

    Parameters
    ----------
    tasks : tuple of {"reconstruct", "swap", "mask", "gauss"}, default=("swap",)
        The members' tasks; members split evenly between them.
    rate : float, default=0.2
        Fraction of each row's features corrupted (``"swap"``, ``"mask"``).
    sigma : float, default=0.5
        Standard deviation of ``"gauss"`` noise, in each view's scaled units.
    one_call : bool, default=False
        Train every view's members in one engine call (``Task(views=...)`` with targets,
        round 11) instead of one call per view (rounds 7-8: 2.5-3x c23's time).
    random_state : int or None
    **params
        IMDetector's public parameters (its defaults otherwise).
    """

    def __init__(self, *, tasks: tuple[str, ...] = ("swap",), rate: float = 0.2,
                 sigma: float = 0.5, one_call: bool = False,
                 random_state: int | None = None,
                 **params: Any) -> None:
        bad = [t for t in tasks if t not in ("reconstruct", *NOISES)]
        if bad or not tasks:
            raise ValueError(f"tasks must be some of reconstruct, {', '.join(NOISES)}; "
                             f"got {tasks!r}")
        self.tasks, self.rate, self.random_state = tuple(tasks), rate, random_state
        self.one_call, self.sigma = one_call, sigma
        self.detector_ = IMDetector(random_state=random_state, **params)

    def fit(self, X, y=None) -> DenoisingIM:
        det = self.detector_
        X = np.asarray(X, dtype=np.float64)
        det.n_features_in_ = X.shape[1]
        device = resolve_device(det.device)
        rs = check_random_state(self.random_state)
        settings = det._training_settings()  # the fixed loss, scoring, ... included
        views = det._views()
        with torch_threads(det.n_threads):
            det.projection_ = None
            if det.projection_dim is not None and X.shape[1] > det.projection_dim:
                det.projection_ = RandomProjection(
                    det.projection_dim, random_state=self.random_state).fit(X)
            Xp = det._projected(X)
            det.views_ = []
            for task, k in zip(self.tasks, split_members(det.n_members, len(self.tasks)),
                               strict=True):
                seed = int(rs.randint(2**31 - 1))
                if task == "reconstruct":
                    det.views_ += train_views(
                        Xp, settings, preprocessing=views, n_members=k,
                        whiten_rows_per_component=det.whiten_rows_per_component,
                        random_state=seed, device=device)
                    continue
                pre = [IMPreprocessor(v, rows_per_component=det.whiten_rows_per_component)
                       .fit(Xp) for v in views]
                counts = split_members(k, len(views))
                groups: dict[int, list[int]] = {}
                for i, p in enumerate(pre):
                    groups.setdefault(p.n_features_out_, []).append(i)
                for g in groups.values():
                    det.views_ += _train_noisy_group(
                        Xp, [views[i] for i in g], [pre[i] for i in g],
                        [counts[i] for i in g], seed + g[0], settings, task, self.rate,
                        device, one_call=self.one_call, sigma=self.sigma)
        det.train_scores_ = share_ties(X[det.views_[0].record_index],
                                       det._combine([v.train_scores for v in det.views_]))
        det.offset_ = offset_from(det.train_scores_, det.contamination, settings.normalization)
        return self

    def score_samples(self, X) -> np.ndarray:
        """Higher = more normal (``imod bench`` scores ``-score_samples``)."""
        return self.detector_.score_samples(X)
