"""A controlled synthetic study of the inlier-memorization effect.

Inliers lie near a low-dimensional linear subspace (a Gaussian on
``latent_dim`` dimensions, embedded in ``n_features`` dimensions with a little
isotropic noise); outliers are isotropic Gaussians whose mean squared norm is
``spread**2`` times the inliers'. At ``spread=1`` an outlier is no farther from
the centre than an inlier: only the subspace the inliers share tells them apart,
which is what an autoencoder has to learn. A linear autoencoder and a small nonlinear one
are trained on the contaminated data through the ensemble engine (K members =
K independent replicates), and the per-example reconstruction loss is recorded
every few updates.

For each setting the script measures, from the AUROC of the loss at each
recording (outliers positive):

- **emergence**: the first update where AUROC exceeds 0.9;
- **strength**: the peak AUROC, and the outlier/inlier mean-loss ratio there;
- **persistence**: how many updates the AUROC stays within 0.02 of its peak.

It varies one factor at a time from a base setting: initialization scale,
feature scaling (the raw data put on feature scales 10^-1..10^1, then no scaling or
``IMPreprocessor``'s standard, robust, min-max or whitening),
outlier fraction, outlier spread, and the trimmed training loss (``trim``: each update
leaves out the largest ``trim`` fraction of each member's batch losses). Writes
``synthetic_im_study.csv`` and one PNG of AUROC trajectories per factor into ``--out``.

Usage::

    python benchmarks/studies/synthetic_im_study.py --out results/synthetic
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from imod import IMPreprocessor  # noqa: E402
from imod.engine import (  # noqa: E402
    Placement,
    Recorder,
    Recording,
    StackedMLP,
    Task,
    Training,
    per_example_loss,
    train_ensemble,
)

BASE = dict(init_scale=1.0, scaling="standard", fraction=0.05, spread=1.0, trim=0.0)
FACTORS = {
    "init_scale": [0.1, 0.3, 1.0, 3.0],
    "scaling": ["standard", "robust", "whiten", "minmax", "raw"],
    "fraction": [0.01, 0.05, 0.1, 0.2],
    "spread": [0.5, 0.75, 1.0, 1.5],
    "trim": [0.0, 0.1, 0.3, 0.5],
}


def make_data(
    fraction: float,
    spread: float,
    scaling: str,
    n: int = 2000,
    n_features: int = 20,
    latent_dim: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Contaminated data and labels (1 = outlier).

    The features are first put on scales 10^-1..10^1 (as real features come), then
    scaled with :class:`imod.IMPreprocessor` (``scaling="raw"``: left as they are).
    """
    rng = np.random.default_rng(seed)
    n_out = int(round(fraction * n))
    basis = rng.normal(size=(latent_dim, n_features)) / np.sqrt(latent_dim)
    inliers = rng.normal(size=(n - n_out, latent_dim)) @ basis
    inliers += 0.1 * rng.normal(size=inliers.shape)
    # Same mean squared norm as the inliers (times spread**2), spread evenly
    # over all directions instead of a few.
    scale = np.sqrt((inliers**2).sum(axis=1).mean() / n_features)
    outliers = spread * scale * rng.normal(size=(n_out, n_features))
    X = np.vstack([inliers, outliers])
    y = np.r_[np.zeros(n - n_out), np.ones(n_out)].astype(int)
    X = X * 10.0 ** rng.uniform(-1, 1, size=n_features)  # features on different scales
    if scaling != "raw":
        X = IMPreprocessor(scaling).fit_transform(X)
    return X.astype(np.float32), y


def trajectory(
    X: np.ndarray,
    y: np.ndarray,
    model: str,
    init_scale: float,
    seed: int,
    members: int,
    trim: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROC and outlier/inlier loss ratio at each recording, averaged over replicates."""
    d = X.shape[1]
    if model == "linear":
        mlp = StackedMLP((d, 3, d), activation="identity")
    else:
        mlp = StackedMLP((d, 32, 8, 32, d), activation="leaky_relu")
    res = train_ensemble(
        Task(mlp, X, n_members=members),
        Training(epochs=12, batch_size=64, random_state=seed, init_scale=init_scale, trim=trim),
        Placement(device="cpu"),
        Recording([Recorder("loss", per_example_loss("mse"))], every=5, initial=True),
    )
    loss = res.records["loss"]  # (T, K, n)
    # AUROC from ranks, vectorized over recordings and members (Mann-Whitney U).
    ranks = loss.argsort(axis=2).argsort(axis=2) + 1.0
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    u = ranks[:, :, y == 1].sum(axis=2) - n_pos * (n_pos + 1) / 2
    auroc = (u / (n_pos * n_neg)).mean(axis=1)
    ratio = (loss[:, :, y == 1].mean(axis=2) / loss[:, :, y == 0].mean(axis=2)).mean(axis=1)
    return res.record_updates, auroc, ratio


def summarize(updates: np.ndarray, auroc: np.ndarray, ratio: np.ndarray) -> dict:
    peak = int(np.argmax(auroc))
    above = np.flatnonzero(auroc > 0.9)
    near = auroc >= auroc[peak] - 0.02
    return {
        "emergence_update": int(updates[above[0]]) if above.size else np.nan,
        "peak_auroc": float(auroc[peak]),
        "peak_update": int(updates[peak]),
        "loss_ratio_at_peak": float(ratio[peak]),
        "persistence_updates": int(near.sum() * (updates[1] - updates[0])),
        "final_auroc": float(auroc[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/synthetic"))
    parser.add_argument("--members", type=int, default=4, help="replicates per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rows, curves = [], {}
    jobs = [(f, v, m) for f, vals in FACTORS.items() for v in vals for m in ("linear", "mlp")]
    for factor, value, model in tqdm(jobs, desc="settings"):
        setting = {**BASE, factor: value}
        X, y = make_data(setting["fraction"], setting["spread"], setting["scaling"], seed=args.seed)
        updates, auroc, ratio = trajectory(
            X, y, model, setting["init_scale"], args.seed, args.members, setting["trim"]
        )
        curves[(factor, value, model)] = (updates, auroc)
        rows.append(
            {
                "factor": factor,
                "value": value,
                "model": model,
                **setting,
                **summarize(updates, auroc, ratio),
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "synthetic_im_study.csv", index=False)
    print(table.drop(columns=list(BASE)).to_string(index=False))

    for factor, values in FACTORS.items():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
        for ax, model in zip(axes, ("linear", "mlp")):
            for value in values:
                updates, auroc = curves[(factor, value, model)]
                ax.plot(updates, auroc, label=f"{factor}={value}")
            ax.set_title(f"{model} autoencoder")
            ax.set_xlabel("updates")
            ax.axhline(0.5, color="grey", lw=0.5)
        axes[0].set_ylabel("AUROC of per-example loss")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out / f"synthetic_{factor}.png", dpi=110)
        plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
