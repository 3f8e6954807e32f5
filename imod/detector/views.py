"""One preprocessing view of a fitted detector: a plain record, and how it scores rows.

A :class:`View` holds everything one sub-ensemble learned during ``fit``: its
fitted :class:`~imod.detector.preprocessing.IMPreprocessor`, the members'
parameters at the recordings the score uses, the normalization statistics of
each (recording, member) slice of losses, their weights, and the training
scores and loss trajectories. It holds no device: the tensors live on the CPU
and are moved to the device named at scoring time.

Scoring (:meth:`View.outlier_scores`) moves the data and the parameters to the
device once and runs every member of every kept snapshot at once, on row batches
sized from the engine's scoring budget (:func:`~imod.engine.runtime.memory_budget`,
:func:`batch_rows`): a few large batches on a GPU, cache-sized ones on the CPU. The
scores stay on the device until the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..engine import StackedMLP
from ..engine.runtime import memory_budget
from .preprocessing import IMPreprocessor
from .scoring import normalize

__all__ = ["View", "batch_rows"]

Params = dict[str, torch.Tensor]

# Rows scaled at a time before CPU scoring (8 MiB of float64 at 20 features).
CPU_SCALING_BLOCK = 65_536

# Rows are scored in batches whose width is a multiple of this (the last one padded with
# zero rows): float32 matrix products round a column differently in a partial panel of
# columns, so a row's score would depend on how many rows came with it (sklearn's
# subset-invariance check saw 2-4e-7); with every batch a whole number of panels it does
# not (checked bitwise for 1-2,000 rows, 2-64 features, 10-30 members).
SCORE_PANEL = 64


def batch_rows(sizes: tuple[int, ...], n_members: int, budget: int) -> int:
    """Rows per forward pass so that ``n_members`` members' activations fit ``budget``.

    Each row holds every layer's activations for every member (float32), about
    twice over (pre- and post-activation), plus the loss's residual.

    Examples
    --------
    >>> batch_rows((20, 32, 16, 8, 16, 32, 20), n_members=30, budget=16 * 1024**2)
    485
    >>> batch_rows((20, 32, 16, 8, 16, 32, 20), n_members=30, budget=40 * 1024**3)
    1242756
    """
    per_row = 4 * n_members * (2 * sum(sizes[1:]) + 2 * sizes[-1])
    return int(max(256, budget // per_row))


@dataclass(repr=False)
class View:
    """What one preprocessing view learned (all arrays on the CPU).

    Attributes
    ----------
    method : str
        The preprocessing method.
    preprocessor : IMPreprocessor
        Fitted on the training data.
    sizes : tuple of int
        Autoencoder widths ``(d, hidden..., latent, ...hidden, d)``.
    activation, loss, normalization : str
        Hidden activation, per-example loss, and how losses are normalized.
    snapshots : list of dict of str to Tensor
        Stacked member parameters at ``used_recordings``.
    record_epochs, record_updates : ndarray of shape (T,)
        When losses were recorded.
    center, scale : ndarray of shape (T, K)
        Median and spread of each member's losses on the recorded training rows.
    weights : ndarray of shape (T, K)
        Weight of each (recording, member) in the score (sums to 1).
    used_recordings : ndarray of int
        Recordings with non-zero weight (one snapshot each).
    bimodality : ndarray of shape (T,) or None
        The selection criterion per recording (bimodality-based scorings).
    train_scores : ndarray of shape (m,)
        This view's transductive scores of the recorded training rows ``record_index``
        (all rows when there were at most ``max_record_samples``; higher = more normal).
    train_trajectories : ndarray of shape (T, m)
        Member-mean loss of the recorded training rows at every recording.
    record_index : ndarray of shape (m,)
        Training rows in ``train_trajectories`` and ``train_scores`` (the same rows for
        every view of a detector).
    n_train_rows : int
        Rows the members trained on.
    """

    method: str
    preprocessor: IMPreprocessor
    sizes: tuple[int, ...]
    activation: str
    loss: str
    normalization: str
    snapshots: list[Params]
    record_epochs: np.ndarray
    record_updates: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    used_recordings: np.ndarray
    bimodality: np.ndarray | None
    train_scores: np.ndarray
    train_trajectories: np.ndarray
    record_index: np.ndarray
    n_train_rows: int

    @property
    def n_members(self) -> int:
        return int(self.weights.shape[1])

    def __repr__(self) -> str:
        return (f"View(method={self.method!r}, n_members={self.n_members}, sizes={self.sizes}, "
                f"snapshots={len(self.snapshots)}, n_train_rows={self.n_train_rows})")

    def loss_trajectory(self) -> pd.DataFrame:
        """One row per recording: epoch, update, mean and quantiles of the member-mean
        loss over the recorded rows, bimodality, weight."""
        traj = self.train_trajectories.astype(np.float64)
        q = np.percentile(traj, [5, 25, 50, 75, 95], axis=1)
        T = len(self.record_epochs)
        return pd.DataFrame({
            "epoch": self.record_epochs,
            "update": self.record_updates,
            "mean": traj.mean(axis=1),
            "q05": q[0], "q25": q[1], "median": q[2], "q75": q[3], "q95": q[4],
            "bimodality": np.full(T, np.nan) if self.bimodality is None else self.bimodality,
            "weight": self.weights.sum(axis=1),
        })

    # ------------------------------------------------------------------ scoring
    def member_losses(self, Xt: np.ndarray, device: torch.device) -> Iterator[torch.Tensor]:
        """Per-member losses ``(K, n)`` (float32, on ``device``) of scaled rows ``Xt``
        (``preprocessor.transform(X)``), one kept snapshot after the other."""
        losses = torch.empty(len(self.snapshots) * self.n_members, Xt.shape[0], device=device)
        i = 0
        for part in self._stacked_losses(Xt, device):
            losses[:, i : i + part.shape[1]] = part
            i += part.shape[1]
        yield from losses.view(len(self.snapshots), self.n_members, -1)

    def _stacked_losses(self, Xt: np.ndarray, device: torch.device) -> Iterator[torch.Tensor]:
        """Losses ``(T_used * K, rows)`` of every kept snapshot's members at once, batch
        after batch of rows: the data and the parameters go to the device once."""
        members = StackedMLP(self.sizes, activation=self.activation)
        weights = members.folded_weights({
            name: torch.cat([snap[name] for snap in self.snapshots]).to(device)
            for name in self.snapshots[0]})
        step = batch_rows(self.sizes, len(self.snapshots) * self.n_members,
                          memory_budget(device, "score"))
        step = max(SCORE_PANEL, step // SCORE_PANEL * SCORE_PANEL)
        # feature-major once (one float32 copy): every batch's residual is then contiguous
        xt = torch.as_tensor(np.ascontiguousarray(Xt.T, dtype=np.float32), device=device)
        with torch.no_grad():
            for i in range(0, xt.shape[1], step):
                batch = xt[:, i : i + step]
                rows = batch.shape[1]
                if rows % SCORE_PANEL:
                    padded = batch.new_zeros(batch.shape[0], -(-rows // SCORE_PANEL) * SCORE_PANEL)
                    padded[:, :rows] = batch
                    batch = padded
                yield members.reconstruction_losses(weights, batch, self.loss)[:, :rows]

    def outlier_scores(self, X: np.ndarray, device: torch.device) -> np.ndarray:
        """Weighted mean of normalized losses of raw rows ``X`` (higher = more abnormal).

        On the CPU the rows are scaled and scored ``CPU_SCALING_BLOCK`` at a time (the
        same numbers: scaling is row by row), so no scaled copy of all of ``X`` is made;
        a GPU gets them all at once.
        """
        n, block = X.shape[0], CPU_SCALING_BLOCK
        if device.type != "cpu" or n <= block:
            return self.scaled_outlier_scores(self.preprocessor.transform(X), device)
        return np.concatenate([
            self.scaled_outlier_scores(self.preprocessor.transform(X[i : i + block]), device)
            for i in range(0, n, block)])

    def scaled_outlier_scores(
        self, Xt: np.ndarray, device: torch.device, membership: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`outlier_scores` of already scaled rows ``Xt``.

        With ``membership`` (K, n), a row uses only the members that did not
        train on it (all members when every member did).
        """
        used = self.used_recordings
        T, K = len(used), self.n_members
        f64 = dict(dtype=torch.float64, device=device)
        w = torch.as_tensor(self.weights[used], **f64)  # (T, K)
        center = torch.as_tensor(self.center[used], **f64).reshape(-1)  # one per (t, k) row
        scale = torch.as_tensor(self.scale[used], **f64).reshape(-1)
        out_of_bag = None if membership is None else torch.as_tensor(~membership, device=device)
        # One output buffer, filled batch by batch (many small results kept alive between
        # large temporaries fragment the CPU heap: peak memory grew several-fold).
        scores = torch.empty(Xt.shape[0], **f64)
        i = 0
        for losses in self._stacked_losses(Xt, device):
            z = normalize(losses, center, scale, self.normalization)  # (T * K, rows) float64
            rows = losses.shape[1]
            if out_of_bag is None:
                torch.mv(z.T, w.reshape(-1), out=scores[i : i + rows])
            else:
                wo = w[:, :, None] * out_of_bag[None, :, i : i + rows]  # (T, K, rows)
                # rows every member trained on fall back to all members
                wo = torch.where(wo.sum(dim=1, keepdim=True) == 0, w[:, :, None], wo)
                scores[i : i + rows] = (wo * z.view(T, K, rows)).sum(dim=(0, 1)) / wo.sum(
                    dim=(0, 1))
            i += rows
        return scores.cpu().numpy()
