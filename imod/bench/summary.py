"""Aggregate benchmark results: means, average ranks, wins, Wilcoxon tests, timings.

Seeds are averaged first (per dataset and detector, over ``ok`` rows), then datasets. Ranks
are per dataset by AUROC (1 = best, ties averaged); a detector with no AUROC on a dataset (it
failed on every seed) gets that dataset's worst rank, as failed runs count as failures. Wins
count datasets where a detector has the best AUROC (each tied detector gets the win). The
one-sided Wilcoxon signed-rank test
(``scipy.stats.wilcoxon(ref - other, alternative="greater")``) asks whether the reference
detector's per-dataset AUROC exceeds each other detector's, on datasets where both have a
value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from imod._runtime import atomic_write

__all__ = ["example_results", "per_dataset", "summarize", "to_markdown", "write_summary"]


def example_results() -> pd.DataFrame:
    """A tiny results table in the format of ``results.csv``, for examples and tests.

    Two detectors (X, Y), three datasets (a, b, c), one seed, every cell ok.

    Examples
    --------
    >>> example_results()[["dataset", "detector", "auroc"]].head(2)
      dataset detector  auroc
    0       a        X    0.9
    1       a        Y    0.7
    """
    return pd.DataFrame({
        "dataset": ["a", "a", "b", "b", "c", "c"],
        "detector": ["X", "Y"] * 3,
        "seed": 1,
        "auroc": [0.9, 0.7, 0.8, 0.85, 0.75, 0.6],
        "aupr": [0.5, 0.3, 0.4, 0.45, 0.3, 0.2],
        "fit_seconds": 0.1, "score_seconds": 0.01, "status": "ok"})


def per_dataset(results: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """Datasets x detectors table of ``metric`` averaged over ok seeds (NaN if none ok).

    Examples
    --------
    >>> from imod.bench.summary import example_results
    >>> results = example_results()
    >>> results.loc[5, "status"] = "error"  # Y failed on dataset c
    >>> per_dataset(results).to_dict("index")
    {'a': {'X': 0.9, 'Y': 0.7}, 'b': {'X': 0.8, 'Y': 0.85}, 'c': {'X': 0.75, 'Y': nan}}
    """
    ok = results[(results["status"] == "ok") & results[metric].notna()]
    datasets = list(dict.fromkeys(results["dataset"]))
    detectors = list(dict.fromkeys(results["detector"]))
    if ok.empty:
        return pd.DataFrame(np.nan, index=pd.Index(datasets, name="dataset"), columns=detectors)
    table = ok.groupby(["dataset", "detector"])[metric].mean().unstack("detector")
    return table.reindex(index=datasets, columns=detectors).rename_axis(index="dataset")


def average_ranks(auroc: pd.DataFrame) -> pd.DataFrame:
    """Per-dataset ranks (1 = best AUROC, ties averaged, missing = worst)."""
    filled = auroc.fillna(-np.inf)
    ranks = filled.apply(lambda row: pd.Series(stats.rankdata(-row.to_numpy()), index=row.index),
                         axis=1)
    return ranks


def _wilcoxon_greater(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of H1: a > b (paired), NaN when undefined (fewer than 2 pairs, all equal)."""
    mask = np.isfinite(a) & np.isfinite(b)
    diff = a[mask] - b[mask]
    if len(diff) < 2 or np.allclose(diff, 0.0):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample / ties warnings; the p-value stands
        try:
            return float(stats.wilcoxon(diff, alternative="greater").pvalue)
        except ValueError:
            return float("nan")


def summarize(results: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """One row per detector, sorted by average rank.

    Parameters
    ----------
    results : DataFrame
        Rows as in ``results.csv`` (one per dataset, detector, seed).
    reference : str, optional
        Detector compared with every other one by the Wilcoxon test; defaults to
        ``IMDetector`` if present, else the first detector in the results.

    Returns
    -------
    DataFrame
        Columns: detector, auroc, aupr (means over datasets), avg_rank, wins, datasets (with a
        value), errors (failed cells), p_wilcoxon (reference > detector), median_seconds,
        mean_seconds (fit + score per cell).

    Examples
    --------
    >>> from imod.bench.summary import example_results
    >>> results = example_results()
    >>> table = summarize(results)
    >>> print(table[["detector", "auroc", "avg_rank", "wins"]].round(3).to_string(index=False))
    ... # doctest: +NORMALIZE_WHITESPACE
    detector  auroc  avg_rank  wins
           X  0.817     1.333     2
           Y  0.717     1.667     1
    >>> table.attrs["reference"]  # no IMDetector in the results: the first detector
    'X'
    """
    auroc = per_dataset(results, "auroc")
    aupr = per_dataset(results, "aupr")
    detectors = list(auroc.columns)
    if reference is None:
        reference = "IMDetector" if "IMDetector" in detectors else (detectors or [None])[0]
    ranks = average_ranks(auroc) if len(auroc) else pd.DataFrame(columns=detectors)
    best = auroc.max(axis=1)
    ok = results[results["status"] == "ok"]
    rows = []
    for det in detectors:
        sec = (ok.loc[ok["detector"] == det, "fit_seconds"]
               + ok.loc[ok["detector"] == det, "score_seconds"])
        p = float("nan")
        if reference in detectors and det != reference:
            p = _wilcoxon_greater(auroc[reference].to_numpy(), auroc[det].to_numpy())
        rows.append({
            "detector": det,
            "auroc": auroc[det].mean(),
            "aupr": aupr[det].mean(),
            "avg_rank": ranks[det].mean() if len(ranks) else float("nan"),
            "wins": int(((auroc[det] == best) & best.notna()).sum()),
            "datasets": int(auroc[det].notna().sum()),
            "errors": int(((results["detector"] == det) & (results["status"] != "ok")).sum()),
            "p_wilcoxon": p,
            "median_seconds": sec.median() if len(sec) else float("nan"),
            "mean_seconds": sec.mean() if len(sec) else float("nan"),
        })
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(["avg_rank", "auroc"], ascending=[True, False], kind="stable")
    table.attrs["reference"] = reference
    return table.reset_index(drop=True)


def _cell(value: object, digits: int = 3) -> str:
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def to_markdown(table: pd.DataFrame, digits: Sequence[int] | None = None) -> str:
    """Render a DataFrame as a GitHub Markdown table (no extra dependency).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"detector": ["X", "Y"], "auroc": [0.91234, 0.8], "wins": [2, 1]})
    >>> print(to_markdown(table, digits=[0, 3, 0]))
    | detector | auroc | wins |
    |---|---:|---:|
    | X | 0.912 | 2 |
    | Y | 0.800 | 1 |
    """
    cols = [str(c) for c in table.columns]
    digits = list(digits) if digits is not None else [3] * len(cols)
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(v, d) for v, d in zip(row, digits, strict=True))
                     + " |")
    return "\n".join(lines)


_HEADERS = {
    "detector": "detector",
    "auroc": "AUROC",
    "aupr": "AUPR",
    "avg_rank": "avg rank",
    "wins": "wins",
    "datasets": "datasets",
    "errors": "errors",
    "p_wilcoxon": "p (ref > det)",
    "median_seconds": "median s",
    "mean_seconds": "mean s",
}
_DIGITS = [0, 4, 4, 2, 0, 0, 0, 4, 3, 3]


def format_summary(table: pd.DataFrame) -> str:
    """The summary table as Markdown with readable headers."""
    return to_markdown(table.rename(columns=_HEADERS), _DIGITS)


def write_summary(
    results: pd.DataFrame, out_dir: str | Path, reference: str | None = None,
    title: str = "imod bench summary", notes: Sequence[str] = (),
) -> tuple[pd.DataFrame, str]:
    """Write ``summary.md`` and ``summary.csv`` to ``out_dir``; return the table and Markdown.

    ``summary.md`` holds the detector table and the per-dataset AUROC and AUPR tables.

    Examples
    --------
    >>> import tempfile
    >>> from imod.bench.summary import example_results
    >>> results = example_results()
    >>> out = tempfile.mkdtemp()
    >>> table, text = write_summary(results, out)
    >>> sorted(p.name for p in Path(out).iterdir())
    ['summary.csv', 'summary.md']
    >>> text.splitlines()[0], list(table["detector"])
    ('# imod bench summary', ['X', 'Y'])
    """
    out = Path(out_dir)
    table = summarize(results, reference)
    csv_text = table.to_csv(index=False).encode("utf-8")
    atomic_write(out / "summary.csv", lambda fh: fh.write(csv_text))
    ref = table.attrs.get("reference")
    n_data = results["dataset"].nunique()
    seeds = sorted(int(s) for s in results["seed"].dropna().unique())
    parts = [f"# {title}", "",
             f"{n_data} datasets, seeds {seeds}; mean over datasets of the seed-averaged "
             f"scores. Rank by AUROC per dataset (1 = best). p: one-sided Wilcoxon "
             f"signed-rank test that {ref} beats the detector on per-dataset AUROC. Seconds: "
             "fit + score per cell.", *notes, "", format_summary(table), ""]
    for metric in ("auroc", "aupr"):
        wide = per_dataset(results, metric)
        wide = wide.reset_index().rename(columns={"index": "dataset"})
        parts += [f"## Per-dataset {metric.upper()} (mean over seeds)", "",
                  to_markdown(wide, [0] + [4] * (wide.shape[1] - 1)), ""]
    text = "\n".join(parts)
    md_bytes = text.encode("utf-8")
    atomic_write(out / "summary.md", lambda fh: fh.write(md_bytes))
    return table, text
