"""Figures for a benchmark run: per-dataset AUROC heatmap and a critical-difference plot.

Uses matplotlib's non-interactive Agg backend so it works on servers without a display.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers / CI; must precede pyplot import
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from imod.bench.summary import average_ranks, per_dataset  # noqa: E402

__all__ = ["auroc_heatmap", "nemenyi_cd", "plot_all", "rank_plot", "seed_counts",
           "heatmap_labels"]


def nemenyi_cd(n_methods: int, n_datasets: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks (Demsar, JMLR 2006).

    ``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range quantile
    divided by sqrt(2).

    Examples
    --------
    >>> round(nemenyi_cd(5, 10), 3)  # Demsar's q_0.05 = 2.728 for five methods
    1.929
    >>> nemenyi_cd(1, 10)  # undefined for a single method
    nan
    """
    if n_methods < 2 or n_datasets < 1:
        return float("nan")
    q = stats.studentized_range.ppf(1 - alpha, n_methods, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(n_methods * (n_methods + 1) / (6.0 * n_datasets)))


def seed_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Datasets x detectors count of seeds with an AUROC (the heatmap marks short ones).

    Examples
    --------
    >>> from imod.bench.summary import example_results
    >>> results = example_results()
    >>> results.loc[5, "status"] = "error"
    >>> seed_counts(results).to_dict("index")
    {'a': {'X': 1, 'Y': 1}, 'b': {'X': 1, 'Y': 1}, 'c': {'X': 1, 'Y': 0}}
    """
    ok = results[(results["status"] == "ok") & results["auroc"].notna()]
    datasets = list(dict.fromkeys(results["dataset"]))
    detectors = list(dict.fromkeys(results["detector"]))
    counts = ok.groupby(["dataset", "detector"])["seed"].nunique().unstack("detector")
    return counts.reindex(index=datasets, columns=detectors).fillna(0).astype(int)


def heatmap_labels(table: pd.DataFrame, counts: pd.DataFrame, n_seeds: int | None
                   ) -> list[list[str]]:
    """The heatmap's cell texts: ``0.83``, ``0.83*`` (fewer than ``n_seeds`` seeds), ``err``.

    Examples
    --------
    >>> table = pd.DataFrame({"A": [0.83, np.nan], "B": [0.5, 0.6]}, index=["d1", "d2"])
    >>> counts = pd.DataFrame({"A": [1, 0], "B": [3, 3]}, index=["d1", "d2"])
    >>> heatmap_labels(table, counts, n_seeds=3)
    [['0.83*', '0.50'], ['err', '0.60']]
    """
    counts = counts.reindex(index=table.index, columns=table.columns).fillna(0)
    out = []
    for i in range(table.shape[0]):
        row = []
        for j in range(table.shape[1]):
            v = table.iat[i, j]
            text = "err" if pd.isna(v) else f"{v:.2f}"
            if not pd.isna(v) and n_seeds is not None and counts.iat[i, j] < n_seeds:
                text += "*"  # fewer seeds than the run asked for
            row.append(text)
        out.append(row)
    return out


def auroc_heatmap(results: pd.DataFrame, path: str | Path, n_seeds: int | None = None) -> Path:
    """Datasets x detectors heatmap of seed-averaged AUROC, annotated.

    A value averaged over fewer than ``n_seeds`` seeds (some failed or are still to run)
    is marked ``*`` and the title says so.

    Examples
    --------
    >>> import tempfile
    >>> from imod.bench.summary import example_results
    >>> results = example_results()
    >>> path = auroc_heatmap(results, Path(tempfile.mkdtemp()) / "heatmap.png", n_seeds=3)
    >>> path.name, path.stat().st_size > 0
    ('heatmap.png', True)
    """
    table = per_dataset(results, "auroc")
    counts = seed_counts(results)
    order = table.mean(axis=0).sort_values(ascending=False).index
    table = table[order]
    n_rows, n_cols = table.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * n_cols, 1.2 + 0.32 * n_rows))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgray")  # failed = gray
    values = np.ma.masked_invalid(table.to_numpy(dtype=float))
    im = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_cols), labels=list(table.columns), rotation=45, ha="right")
    ax.set_yticks(range(n_rows), labels=list(table.index))
    labels = heatmap_labels(table, counts, n_seeds)
    short = int(sum(text.endswith("*") for row in labels for text in row))
    for i in range(n_rows):
        for j in range(n_cols):
            v, text = table.iat[i, j], labels[i][j]
            color = "black" if (pd.isna(v) or v > 0.6) else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, label="AUROC", fraction=0.04)
    title = "AUROC per dataset (mean over seeds)"
    if short:
        title += f"\n* = mean of fewer than the {n_seeds} seeds asked for"
    ax.set_title(title, fontsize=10 if short else None)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rank_plot(results: pd.DataFrame, path: str | Path, alpha: float = 0.05) -> Path:
    """Critical-difference style plot: average AUROC ranks with the Nemenyi CD.

    Detectors joined by a thick bar are not significantly different (Nemenyi, after the
    Friedman setting); the title gives the Friedman test p-value when defined.

    Examples
    --------
    >>> import tempfile
    >>> from imod.bench.summary import example_results
    >>> results = example_results()
    >>> path = rank_plot(results, Path(tempfile.mkdtemp()) / "ranks.png")
    >>> path.name, path.stat().st_size > 0
    ('ranks.png', True)
    """
    auroc = per_dataset(results, "auroc")
    ranks = average_ranks(auroc)
    avg = ranks.mean(axis=0).sort_values()
    k, n = len(avg), len(ranks)
    cd = nemenyi_cd(k, n, alpha)
    friedman = float("nan")
    if k >= 3 and n >= 2:
        try:
            friedman = float(stats.friedmanchisquare(*[ranks[c] for c in ranks.columns]).pvalue)
        except ValueError:
            pass
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.28 * k))
    lo, hi = 1.0, max(float(k), 2.0)
    ax.set_xlim(lo - 0.3, hi + 0.3)
    ax.set_ylim(-(k * 0.8 + 0.5), 1.9)
    ax.hlines(0, lo, hi, color="black", lw=1)
    for r in range(1, int(hi) + 1):
        ax.vlines(r, -0.1, 0.1, color="black", lw=1)
        ax.text(r, 0.25, str(r), ha="center", va="bottom", fontsize=8)
    for i, (name, r) in enumerate(avg.items()):
        y = -(i + 1) * 0.8 - 0.2  # leave room for the clique bars under the axis
        ax.plot([r, r], [0, y], color="gray", lw=0.8)
        ax.plot(r, 0, "o", color="C0", ms=4)
        left = r <= (lo + hi) / 2
        ax.text(r + (-0.05 if left else 0.05), y, f"{name} ({r:.2f})", va="center",
                ha="right" if left else "left", fontsize=9)
    if math.isfinite(cd):
        ax.plot([lo, lo + cd], [1.2, 1.2], color="red", lw=2)
        ax.text(lo + cd / 2, 1.35, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8,
                color="red")
        # Cliques: maximal runs of consecutive detectors whose rank spread is below CD.
        values = avg.to_numpy()
        cliques = []
        for i in range(k):
            j = i
            while j + 1 < k and values[j + 1] - values[i] < cd:
                j += 1
            if j > i and not any(a <= i and j <= b for a, b in cliques):
                cliques.append((i, j))
        for c, (i, j) in enumerate(cliques):
            y = -0.25 - 0.12 * c
            ax.plot([values[i] - 0.03, values[j] + 0.03], [y, y], color="black", lw=3)
    title = f"Average AUROC rank over {n} datasets (lower is better)"
    if math.isfinite(friedman):
        title += f"; Friedman p = {friedman:.3g}"
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_all(results: pd.DataFrame, out_dir: str | Path, n_seeds: int | None = None
             ) -> list[Path]:
    """Write ``auroc_heatmap.png`` and ``rank_plot.png`` into ``out_dir``.

    ``n_seeds`` (the seeds the run asked for) marks heatmap values averaged over fewer.

    Examples
    --------
    >>> import tempfile
    >>> from imod.bench.summary import example_results
    >>> results = example_results()
    >>> [p.name for p in plot_all(results, tempfile.mkdtemp())]
    ['auroc_heatmap.png', 'rank_plot.png']
    """
    out = Path(out_dir)
    return [auroc_heatmap(results, out / "auroc_heatmap.png", n_seeds=n_seeds),
            rank_plot(results, out / "rank_plot.png")]
