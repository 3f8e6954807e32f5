"""PNG plots of a fitted :class:`~imod.memorization.MemorizationEstimator`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_score_distribution", "plot_random_label_roc"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_score_distribution(est, path, score: str | None = None) -> Path:
    """Histogram of natural vs random-label (null) scores, with the threshold."""
    plt = _plt()
    score = score or est.score
    s = getattr(est, score + "_")
    nat = s[~est.is_random_label_]
    nul = s[est.is_random_label_]
    bins = np.linspace(-1.0 if score == "fractional" else -1.0, 1.0, 41)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(nat[np.isfinite(nat)], bins=bins, density=True, alpha=0.6, label="natural points")
    if nul.size:
        ax.hist(nul[np.isfinite(nul)], bins=bins, density=True, alpha=0.6,
                label="random-label points (null)")
    thr = est.threshold_ if score == est.score else None
    if thr is not None and np.isfinite(thr):
        ax.axvline(thr, color="red", ls="--",
                   label=f"threshold {thr:.3g} ({int(est.memorized_mask_.sum())} memorized)")
    ax.set_xlabel(f"{score} memorization score")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.set_title(f"rate {est.rate}, {est.n_members} members")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_random_label_roc(est, path) -> Path:
    """ROC of both definitions at separating random-label points from natural ones."""
    from sklearn.metrics import roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    y = est.is_random_label_
    for name in ("difference", "fractional"):
        s = getattr(est, name + "_")
        ok = np.isfinite(s)
        if y[ok].all() or not y[ok].any():
            continue
        fpr, tpr, _ = roc_curve(y[ok], s[ok])
        m = est.detection_.get(name, {})
        ax.plot(fpr, tpr, label=f"{name}: AUROC {m.get('auroc', np.nan):.3f}, "
                                f"FPR@95%TPR {m.get('fpr_at_95tpr', np.nan):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.axhline(0.95, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("false positive rate (natural points)")
    ax.set_ylabel("true positive rate (random-label points)")
    ax.set_title("random-label detection")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
