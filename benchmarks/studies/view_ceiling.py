"""What recombining the default's views could reach, per kind of task (issue 23, in-sample).

``IMDetector()`` scores a row with three views (standard, robust and whitened inputs,
each its own members) combined by their scaled maximum. One fit per task gives every
view's own score beside the combinations (the ``combine_views`` methods, and the mean
of the views' robust z-scores), so this shows, without new training, how far a
different combination or a single view could move each kind: if no view reaches the
best peer on a kind, no recombination will.

It is an in-sample diagnostic on the development tasks (every fold), not a selection:
nothing it prints is a default. Same protocol as ``imod bench`` (inductive split,
``prepare_split``, the detector seeded with the cell's seed), one CPU thread.

Usage (``--data-dir`` holds ``Classical/`` and the synthetic tasks of
``synthetic_anomalies.py``, as in ``docs/results/oof_round9/commands.md``)::

    PYTHONPATH=. python benchmarks/studies/view_ceiling.py --data-dir results/devdata \
        --seeds 1 --out results/view_ceiling.csv
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import kind_of
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from imod import IMDetector
from imod.bench.datasets import load_npz
from imod.bench.protocol import ProtocolConfig, prepare_split, seed_everything
from imod.detector.scoring import VIEW_COMBINATIONS, combine_views, robust_stats


def view_aurocs(path: Path, seed: int) -> dict[str, float]:
    """Test AUROC of each view and of each way to combine them, one fit."""
    data = load_npz(path)
    split = prepare_split(data.X, data.y, seed=seed, config=ProtocolConfig())
    seed_everything(seed)
    det = IMDetector(random_state=seed).fit(split.X_train)
    X = det._projected(det._validate_frame(split.X_test))
    normal = [-v.outlier_scores(X, torch.device("cpu")) for v in det.views_]  # higher = normal
    train = [v.train_scores for v in det.views_]
    out = {v.method: roc_auc_score(split.y_test, -s) for v, s in zip(det.views_, normal)}
    for method in VIEW_COMBINATIONS:
        out[method] = roc_auc_score(split.y_test, -combine_views(normal, train, method))
    z = [(s - c) / w for s, (c, w) in zip(normal, (robust_stats(t) for t in train))]
    out["z_mean"] = roc_auc_score(split.y_test, -np.mean(z, axis=0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--out", type=Path, required=True, help="CSV of every cell")
    args = p.parse_args()
    torch.set_num_threads(1)
    kinds = {k: v for k, v in kind_of().items() if v != "embedding"}
    paths = {name: (args.data_dir / "Classical" / f"{name}.npz" if kind == "classical"
                    else args.data_dir / f"{name}.npz") for name, kind in kinds.items()}
    missing = [str(q) for q in paths.values() if not q.exists()]
    if missing:
        raise SystemExit(f"--data-dir {args.data_dir}: {len(missing)} task file(s) missing, "
                         f"e.g. {missing[0]} (make them with synthetic_anomalies.py --out)")
    cells = [{"task": name, "kind": kinds[name], "seed": seed, **view_aurocs(path, seed)}
             for name, path in tqdm(list(paths.items()), desc="tasks")
             for seed in args.seeds]
    df = pd.DataFrame(cells)
    tmp = args.out.with_suffix(".tmp")
    df.to_csv(tmp, index=False, float_format="%.5f")
    os.replace(tmp, args.out)
    per_task = df.drop(columns="seed").groupby(["kind", "task"]).mean()
    print(per_task.groupby("kind").mean().round(4).to_string())


if __name__ == "__main__":
    main()
