"""One preprocessing view of a fitted detector: a plain record, and how it scores rows.

A :class:`View` holds everything one sub-ensemble learned during ``fit``: its
fitted :class:`~imod.detector.preprocessing.IMPreprocessor`, the members'
parameters at the recordings the score uses, the normalization statistics of
each (recording, member) slice of losses, their weights, and the training
scores and loss trajectories. It holds no device: the tensors live on the CPU
and are moved to the device named at scoring time.

Scoring (:meth:`View.outlier_scores`) moves the data to the device once and
runs every member of a snapshot on a few large row batches sized from a memory
budget (:func:`batch_rows`), keeping the running weighted sum on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..engine import StackedMLP
from ..engine.losses import get_loss
from .preprocessing import IMPreprocessor
from .scoring import _LOG_FLOOR

__all__ = ["View", "batch_rows", "memory_budget"]

Params = dict[str, torch.Tensor]

# Bytes a scoring batch may use on the CPU: large enough to amortize per-call
# overhead, small enough to stay in the last-level cache's neighbourhood.
CPU_SCORING_BUDGET = 256 * 1024**2


def memory_budget(device: torch.device) -> int:
    """Bytes one scoring batch may use: a fixed 256 MiB on the CPU, half the free
    memory on a GPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.5 * free)
    return CPU_SCORING_BUDGET


def batch_rows(sizes: tuple[int, ...], n_members: int, budget: int) -> int:
    """Rows per forward pass so that ``n_members`` members' activations fit ``budget``.

    Each row holds every layer's activations for every member (float32), about
    twice over (pre- and post-activation), plus the loss's residual.

    Examples
    --------
    >>> batch_rows((20, 32, 16, 8, 16, 32, 20), n_members=3, budget=256 * 1024**2)
    77672
    """
    per_row = 4 * n_members * (2 * sum(sizes[1:]) + 2 * sizes[-1])
    return int(max(1024, budget // per_row))


@dataclass
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
    train_scores : ndarray of shape (n_samples,)
        This view's transductive scores of the training rows (higher = more normal).
    train_trajectories : ndarray of shape (T, m)
        Member-mean loss of the recorded training rows at every recording.
    record_index : ndarray of shape (m,)
        Training rows in ``train_trajectories``.
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
        (``preprocessor.transform(X)``), one snapshot after the other."""
        x = torch.as_tensor(np.ascontiguousarray(Xt, dtype=np.float32), device=device)
        members = StackedMLP(self.sizes, activation=self.activation)
        loss = get_loss(self.loss)
        step = batch_rows(self.sizes, self.n_members, memory_budget(device))
        with torch.no_grad():
            for snap in self.snapshots:
                p = {k: v.to(device) for k, v in snap.items()}
                parts = [loss(members.forward(p, x[i : i + step]), x[i : i + step])
                         for i in range(0, x.shape[0], step)]
                yield parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def outlier_scores(self, X: np.ndarray, device: torch.device) -> np.ndarray:
        """Weighted mean of normalized losses of raw rows ``X`` (higher = more abnormal)."""
        return self.scaled_outlier_scores(self.preprocessor.transform(X), device)

    def scaled_outlier_scores(
        self, Xt: np.ndarray, device: torch.device, membership: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`outlier_scores` of already scaled rows ``Xt``.

        With ``membership`` (K, n), a row uses only the members that did not
        train on it (all members when every member did).
        """
        n = Xt.shape[0]
        num = torch.zeros(n, dtype=torch.float64, device=device)
        den = None
        if membership is not None:
            out = torch.as_tensor(~membership, device=device, dtype=torch.float64)
            den = torch.zeros(n, dtype=torch.float64, device=device)
        for t, losses in zip(self.used_recordings, self.member_losses(Xt, device), strict=True):
            z = self._normalize(losses, t, device)  # (K, n) float64
            w = torch.as_tensor(self.weights[t], dtype=torch.float64, device=device)
            if membership is None:
                num += w @ z
                continue
            wo = w[:, None] * out
            # rows every member trained on fall back to all members
            none_out = wo.sum(dim=0) == 0
            wo[:, none_out] = w[:, None].expand_as(wo)[:, none_out]
            num += (wo * z).sum(dim=0)
            den += wo.sum(dim=0)
        scores = num if den is None else num / den
        return scores.cpu().numpy()

    def _normalize(self, losses: torch.Tensor, t: int, device: torch.device) -> torch.Tensor:
        """:func:`imod.detector.scoring.normalize` on the device, in float64."""
        x = losses.double()
        c = torch.as_tensor(self.center[t], dtype=torch.float64, device=device)[:, None]
        if self.normalization == "log_ratio":
            return torch.log((x + _LOG_FLOOR) / (c + _LOG_FLOOR))
        s = torch.as_tensor(self.scale[t], dtype=torch.float64, device=device)[:, None]
        return (x - c) / s
