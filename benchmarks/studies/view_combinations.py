"""How the preprocessing views' scores should become one, and the whitening cap.

For each whitening cap (``IMDetector(whiten_rows_per_component=...)``), the default
detector is fitted once per (dataset, seed) cell under the ADBench protocol of
``imod bench`` (as in ``accuracy_ablation.py``), and each view's test scores and
training scores are kept (``<out>/cap_<cap>/<dataset>_s<seed>.npz``, resumable). The
views' scores are then combined offline in several ways, so every combination is
compared on the same fitted members:

* ``max`` / ``mean``: of the views' outlier scores as they are (log ratios);
* ``scaled max`` / ``scaled mean``: of each view's robust z-scores, median and
  inter-quartile range over its training rows (``view_combination="scaled_max"``);
* ``max scaled by sd``: the same with the standard deviation;
* ``standard`` / ``robust`` / ``whiten``: one view alone (its members only).

Writes ``<out>/view_combinations.md`` and ``.csv`` (mean AUROC / AUPR per half, over
datasets of seed means).

Usage::

    python benchmarks/studies/view_combinations.py --half A B E --caps none 2 4 \\
        --out results/view_combinations
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import classical_halves, dataset_path
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from imod.bench.datasets import load_npz
from imod.bench.protocol import ProtocolConfig, prepare_split, seed_everything
from imod.detector import IMDetector


def fit_views(X_train: np.ndarray, X_test: np.ndarray, seed: int, cap: float | None):
    """Per-view outlier scores (higher = more abnormal) of the test and training rows."""
    det = IMDetector(random_state=seed, whiten_rows_per_component=cap).fit(X_train)
    test = np.stack([-v.score_samples(X_test) for v in det.views_])
    train = np.stack([-v.train_scores_ for v in det.views_])
    return test, train, [v.preprocessing for v in det.views_]


def combinations(test: np.ndarray, train: np.ndarray, views: list[str]) -> dict[str, np.ndarray]:
    """Every combination of the views' test scores compared in the table."""
    q1, med, q3 = np.percentile(train, [25, 50, 75], axis=1, keepdims=True)
    z = (test - med) / (q3 - q1)
    sd = (test - med) / train.std(axis=1, keepdims=True)
    out = {"max": test.max(0), "mean": test.mean(0), "scaled max": z.max(0),
           "scaled mean": z.mean(0), "max scaled by sd": sd.max(0)}
    out.update({name: test[i] for i, name in enumerate(views)})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/view_combinations")
    ap.add_argument("--data-dir", default="../shared/adbench")
    ap.add_argument("--half", nargs="+", choices=["A", "B", "E"], default=["A", "B", "E"])
    ap.add_argument("--caps", nargs="+", default=["none", "2"],
                    help="whiten_rows_per_component values ('none' = no cap)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args(argv)

    data_dir, out = Path(args.data_dir), Path(args.out)
    halves = classical_halves(data_dir)
    jobs = [(cap, h, name, s) for cap in args.caps for h in args.half
            for name in halves[h] for s in args.seeds]
    rows = []
    loaded: dict[str, tuple] = {}
    for cap, h, name, s in tqdm(jobs, desc="view combinations"):
        folder = out / f"cap_{cap}"
        folder.mkdir(parents=True, exist_ok=True)
        f = folder / f"{name.replace('/', '__')}_s{s}.npz"
        if not f.is_file():
            if name not in loaded:
                data = load_npz(dataset_path(data_dir, name), name=name)
                loaded = {name: (data.X, data.y)}  # one dataset in memory at a time
            split = prepare_split(*loaded[name], s, ProtocolConfig())
            seed_everything(s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                test, train, views = fit_views(split.X_train, split.X_test, s,
                                               None if cap == "none" else float(cap))
            np.savez(f, test=test, train=train, y=split.y_test, views=np.array(views))
        d = np.load(f, allow_pickle=False)
        for combo, score in combinations(d["test"], d["train"], list(d["views"])).items():
            rows.append((cap, h, name, s, combo, roc_auc_score(d["y"], score),
                         average_precision_score(d["y"], score)))
    cells = pd.DataFrame(rows, columns=["cap", "half", "dataset", "seed", "combination",
                                        "auroc", "aupr"])
    per_ds = cells.groupby(["cap", "combination", "half", "dataset"])[["auroc", "aupr"]].mean()
    tab = per_ds.groupby(["cap", "combination", "half"]).mean().unstack("half")
    tab.columns = [f"{m}_{h}" for m, h in tab.columns]
    tab.to_csv(out / "view_combinations.csv")
    lines = ["| cap | combination | " + " | ".join(tab.columns) + " |",
             "|---|---|" + "---:|" * len(tab.columns)]
    for (cap, combo), r in tab.iterrows():
        lines.append(f"| {cap} | {combo} | " + " | ".join(f"{v:.4f}" for v in r) + " |")
    (out / "view_combinations.md").write_text(
        f"Seeds {args.seeds}; per-view scores of the default detector, "
        "whiten_rows_per_component = cap.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
