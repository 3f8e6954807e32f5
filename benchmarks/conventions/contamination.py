"""How good are ``predict``'s labels without a known contamination? (issue 24, part 4)

On each of the 30 ADBench Classical development sets (``benchmarks/studies/folds.json``)
the default :class:`imod.IMDetector` is fitted on all rows (no labels) once per seed, and
its transductive scores of the training rows are thresholded two ways:

- ``"auto"``: Tukey's fence on the training outlier scores (IMDetector's ``offset_``
  with ``contamination="auto"``, its default when this was measured);
- ``0.1``: the fixed default of every PyOD detector, as the PyOD face applies it
  (``IMDetectorPyOD``'s ``threshold_`` rule: the 90th percentile of the outlier scores).

Both thresholds are applied to the same fitted scores, so the comparison is paired.
Precision, recall and F1 of the outlier label against ADBench's true labels, and the
fraction flagged, are written per dataset and seed to ``--out`` (a CSV), and the
summary table (mean over seeds per dataset, then the mean and the per-fold means over
datasets) is printed as Markdown.

These are the data any default is chosen on: the numbers are in-sample for that choice.

The table decided IMDetector's default: 0.1 (docs/conventions.md). Usage::

    IMOD_ADBENCH_DIR=... OMP_NUM_THREADS=1 python benchmarks/conventions/contamination.py \
        --seeds 0 1 2 --out contamination.csv
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from _table import markdown
from sklearn.metrics import precision_recall_fscore_support
from tqdm import tqdm

from imod import IMDetector
from imod.bench.datasets import load_npz
from imod.detector.pyod_face import pyod_threshold

FOLDS = Path(__file__).resolve().parents[1] / "studies" / "folds.json"
RULES = ("auto", 0.1)


def classical_sets() -> dict[str, int]:
    """Classical development set -> its fold (0-4)."""
    folds = json.loads(FOLDS.read_text())["folds"]
    return {name: k for k, fold in enumerate(folds) for name in fold["classical"]}


def labels_by_rule(det: IMDetector, X: np.ndarray) -> dict[str, np.ndarray]:
    """1 = flagged, for each threshold rule, from one fitted detector's training scores."""
    scores = det.train_scores_
    if len(scores) != X.shape[0]:  # above max_record_samples: score every row
        scores = det.score_samples(X)
    outlier = -scores
    return {"auto": (scores < det.offset_).astype(int),
            "0.1": (outlier > pyod_threshold(outlier, 0.1)).astype(int)}


def run(data_dir: Path, seeds: list[int], out: Path) -> pd.DataFrame:
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=["dataset", "seed"])
    have = set(zip(done["dataset"], done["seed"], strict=True))
    sets = classical_sets()
    cells = [(name, s) for name in sorted(sets) for s in seeds if (name, s) not in have]
    for name, seed in tqdm(cells, desc="cells"):
        ds = load_npz(data_dir / "Classical" / f"{name}.npz")
        det = IMDetector(random_state=seed, device="cpu", contamination="auto").fit(ds.X)
        rows = []
        for rule, pred in labels_by_rule(det, ds.X).items():
            p, r, f, _ = precision_recall_fscore_support(ds.y, pred, average="binary",
                                                         zero_division=0)
            rows.append(dict(dataset=name, fold=sets[name], seed=seed, rule=rule,
                             precision=p, recall=r, f1=f, flagged=pred.mean(),
                             true_rate=ds.y.mean()))
        # one cell's rows at a time, appended: a killed run resumes where it stopped
        pd.DataFrame(rows).to_csv(out, mode="a", header=not out.exists(), index=False)
    return pd.read_csv(out)


def summary(df: pd.DataFrame) -> str:
    per = df.groupby(["dataset", "fold", "rule"])[["precision", "recall", "f1", "flagged",
                                                   "true_rate"]].mean().reset_index()
    wide = per.pivot(index=["dataset", "fold", "true_rate"], columns="rule",
                     values=["precision", "recall", "f1", "flagged"])
    wide.columns = [f"{m} ({r})" for m, r in wide.columns]
    wide = wide.reset_index().sort_values("dataset", key=lambda s: s.str.split("_").str[0]
                                          .astype(int))
    lines = [markdown(wide), ""]
    means = per.groupby("rule")[["precision", "recall", "f1", "flagged"]].mean()
    lines += ["Mean over the datasets:", "", markdown(means, index=True), ""]
    folds = per.pivot_table(index="fold", columns="rule", values="f1")
    lines += ["Mean F1 per fold:", "", markdown(folds, index=True), ""]
    wins = (wide["f1 (auto)"] > wide["f1 (0.1)"]).sum()
    lines.append(f"auto has the higher F1 on {wins} of {len(wide)} datasets.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=os.environ.get("IMOD_ADBENCH_DIR"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("contamination.csv"))
    args = ap.parse_args()
    if args.data_dir is None:
        ap.error("give --data-dir or set IMOD_ADBENCH_DIR")
    print(summary(run(args.data_dir, args.seeds, args.out)))


if __name__ == "__main__":
    main()
