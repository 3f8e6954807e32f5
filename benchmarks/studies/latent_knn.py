"""Study variant (issue 16, round 2): a k-nearest-neighbour score in the early-trained
members' own latent space, combined with IMDetector's reconstruction score.

After ``IMDetector.fit``, every row is encoded by each view's preprocessor and the encoder
half of each member at each kept snapshot (the layers up to the narrowest one, with the
hidden activation). Per member, the codes of its kept snapshots are concatenated into one
vector; a row's latent score is its distance to the ``k``-th nearest code of a reference
set of training rows (at most ``max_reference`` of them, drawn once). Each member's latent
score is put in robust z units (median, inter-quartile range) of the reference rows' own
leave-self-out scores and averaged over members and views; the reconstruction score
(``-score_samples``) is put in robust z units of ``train_scores_``. ``combine`` is
``"max"`` or ``"mean"`` of the two z-scores, or ``"latent"`` (the latent score alone).

This is study code, not part of ``imod``: the networks, their training and the kept
snapshots are IMDetector's defaults, untouched.

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(200, 4))
>>> X[:5] += 6
>>> det = LatentKNN(random_state=0).fit(X)
>>> s = -det.score_samples(X)
>>> bool(s[:5].mean() > np.median(s))
True
"""

from __future__ import annotations

import numpy as np
import torch

from imod.detector import IMDetector
from imod.detector.scoring import robust_stats
from imod.engine.members import StackedMLP

COMBINES = ("max", "mean", "latent")


def _z(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    center, spread = robust_stats(reference)
    return (x - center) / spread


class LatentKNN:
    """IMDetector plus a k-NN score on its members' latent codes (see the module).

    Parameters
    ----------
    combine : {"max", "mean", "latent"}, default="max"
    k : int, default=10
    max_reference : int, default=2000
    random_state : int or None, default=None
    """

    def __init__(self, *, combine: str = "max", k: int = 10, max_reference: int = 2000,
                 random_state: int | None = None) -> None:
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        self.combine = combine
        self.k = k
        self.max_reference = max_reference
        self.random_state = random_state

    def fit(self, X, y=None) -> LatentKNN:
        X = np.asarray(X, dtype=np.float64)
        self.detector_ = IMDetector(random_state=self.random_state).fit(X)
        rng = np.random.default_rng(self.random_state)
        n = X.shape[0]
        ref = np.sort(rng.choice(n, min(n, self.max_reference), replace=False))
        self.k_ = max(1, min(self.k, len(ref) - 1))
        Xv = self._view_input(X[ref])
        self.reference_codes_ = [self._codes(v, Xv) for v in self.detector_.views_]
        # leave-self-out scores of the reference rows: the (k+1)-th neighbour among them
        self.latent_train_ = [self._kth(c, c, self.k_ + 1) for c in self.reference_codes_]
        self.recon_train_ = -np.asarray(self.detector_.train_scores_, dtype=np.float64)
        return self

    def _view_input(self, X: np.ndarray) -> np.ndarray:
        """Rows as the views read them (the detector's projection of wide inputs)."""
        projection = self.detector_.projection_
        return X if projection is None else projection.transform(X)

    @staticmethod
    def _codes(view, X: np.ndarray) -> torch.Tensor:
        """Codes ``(K, n, T * code)``: member k's codes at its T kept snapshots, side by side."""
        n_enc = (len(view.sizes) - 1) // 2
        enc = StackedMLP(view.sizes[: n_enc + 1], activation=view.activation,
                         output_activation=view.activation)
        keys = [f"{2 * i}.{p}" for i in range(n_enc) for p in ("weight", "bias")]
        params = {kk: torch.cat([s[kk] for s in view.snapshots]).float().cpu() for kk in keys
                  if kk in view.snapshots[0]}
        xt = torch.as_tensor(view.preprocessor.transform(X), dtype=torch.float32)
        with torch.no_grad():
            h = enc.forward(params, xt)  # (T * K, n, code)
        T, K = len(view.snapshots), view.n_members
        h = h.view(T, K, h.shape[1], h.shape[2]).permute(1, 2, 0, 3)
        return h.reshape(K, h.shape[1], -1).contiguous()

    @staticmethod
    def _kth(query: torch.Tensor, ref: torch.Tensor, k: int) -> np.ndarray:
        """Distance ``(K, n_query)`` of each query code to its k-th nearest reference code."""
        out = []
        with torch.no_grad():
            for i in range(0, query.shape[1], 1024):
                d = torch.cdist(query[:, i : i + 1024], ref)
                out.append(d.topk(k, dim=-1, largest=False).values[..., -1])
        return torch.cat(out, dim=1).double().numpy()

    def _latent(self, X: np.ndarray) -> np.ndarray:
        X = self._view_input(X)
        zs = []
        for v, ref, train in zip(self.detector_.views_, self.reference_codes_,
                                 self.latent_train_):
            d = self._kth(self._codes(v, X), ref, self.k_)  # (K, n)
            zs += [_z(d[m], train[m]) for m in range(d.shape[0])]
        return np.mean(zs, axis=0)

    def score_samples(self, X) -> np.ndarray:
        """Higher = more normal (``imod bench`` scores ``-score_samples``)."""
        X = np.asarray(X, dtype=np.float64)
        z_lat = self._latent(X)
        if self.combine == "latent":
            return -z_lat
        z_rec = _z(-self.detector_.score_samples(X), self.recon_train_)
        z = np.maximum(z_rec, z_lat) if self.combine == "max" else (z_rec + z_lat) / 2
        return -z
