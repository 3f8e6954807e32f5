"""Per-feature residual scaling: does normalizing each feature's error help?

IMDetector scores a row by its mean squared reconstruction error over features, so
features the early autoencoder reconstructs poorly for everyone dominate the score. This
study re-scores (no retraining) the kept snapshots of the detector configuration
``--base`` (default ``BASES["v2"]`` of ``accuracy_ablation.py``, the defaults when the
study was first run: no trimming, 50 updates; later bases such as ``v3`` or ``v5``, the
current default, are re-scored the same way), with the
squared residual of feature ``j`` divided by a statistic of that feature's squared residuals
over the training rows (per snapshot and member), a diagonal Mahalanobis distance in
residual space:

* ``mse``: the default score (mean squared residual),
* ``fn_mean`` / ``fn_med`` / ``fn_q75``: divided by the mean / median / 75th percentile,
* ``fn_reg``: divided by the median plus 0.1 x the mean over all features (a floor),
* ``l1``: mean absolute residual.

Each variant is then normalized per member and averaged over recordings and views
exactly as the detector does. Same protocol and halves as
``benchmarks/studies/accuracy_ablation.py`` (A selects, B confirms, E = CV/NLP embeddings).

Usage::

    python benchmarks/studies/residual_scaling.py --half A B E --out results/residual_scaling
    python benchmarks/studies/residual_scaling.py --base v3 --half A B E \\
        --out results/residual_scaling_v3
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import classical_halves, dataset_path
from accuracy_ablation import BASES
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from imod.bench.datasets import load_npz
from imod.bench.protocol import ProtocolConfig, prepare_split, seed_everything
from imod.detector import IMDetector
from imod.detector.scoring import normalize, robust_stats
from imod.engine.members import StackedMLP

VARIANTS = ("mse", "fn_mean", "fn_med", "fn_q75", "fn_reg", "l1")


def squared_residuals(view: IMDetector, Xt: np.ndarray, snapshot) -> np.ndarray:
    """``(K, n, d)`` squared residuals of one snapshot's members."""
    members = StackedMLP(view.sizes_, activation=view.activation)
    with torch.no_grad():
        x = torch.as_tensor(np.ascontiguousarray(Xt, dtype=np.float32))
        return (members.forward(snapshot, x) - x.unsqueeze(0)).pow(2).double().numpy()


def view_scores(view: IMDetector, X_train: np.ndarray, X_test: np.ndarray) -> dict:
    """Test outlier scores of one fitted single-view detector, per variant."""
    A, B = view.preprocessor_.transform(X_train), view.preprocessor_.transform(X_test)
    out = {v: np.zeros(len(B)) for v in VARIANTS}
    for j, t in enumerate(view.used_recordings_):
        ra = squared_residuals(view, A, view.snapshots_[j])
        rb = squared_residuals(view, B, view.snapshots_[j])
        med = np.median(ra, axis=1, keepdims=True)
        scale = {
            "fn_mean": ra.mean(axis=1, keepdims=True),
            "fn_med": med,
            "fn_q75": np.percentile(ra, 75, axis=1, keepdims=True),
            "fn_reg": med + 0.1 * ra.mean(axis=(1, 2), keepdims=True),
        }
        losses = {"mse": (ra.mean(2), rb.mean(2)),
                  "l1": (np.sqrt(ra).mean(2), np.sqrt(rb).mean(2))}
        for name, s in scale.items():
            losses[name] = ((ra / (s + 1e-12)).mean(2), (rb / (s + 1e-12)).mean(2))
        w = view.weights_[t][:, None]
        for name, (la, lb) in losses.items():
            c, s = robust_stats(la)  # normalize by the training rows, as the detector
            out[name] += (w * normalize(lb, c, s)).sum(axis=0)
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the study (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/residual_scaling")
    ap.add_argument("--data-dir", default="../shared/adbench")
    ap.add_argument("--half", nargs="+", choices=["A", "B", "E"], default=["A", "B", "E"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--base", choices=list(BASES), default="v2",
                    help="detector configuration re-scored (v2: the documented table)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = out / "cells.csv"
    prev = pd.read_csv(cells) if cells.is_file() else pd.DataFrame()
    done = set(zip(prev.get("dataset", []), prev.get("seed", []), strict=True))
    halves = classical_halves(Path(args.data_dir))
    todo = [(h, n, s) for h in args.half for n in halves[h] for s in args.seeds
            if (n, s) not in done]
    for h, name, seed in tqdm(todo, desc="residual scaling", unit="cell"):
        data = load_npz(dataset_path(Path(args.data_dir), name), name=name)
        sp = prepare_split(data.X, data.y, seed, ProtocolConfig())
        seed_everything(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = IMDetector(random_state=seed, **BASES[args.base]).fit(sp.X_train)
            per_view = [view_scores(v, sp.X_train, sp.X_test) for v in det.views_ or [det]]
        rows = []
        for v in VARIANTS:
            score = np.mean([p[v] for p in per_view], axis=0)  # views averaged, as the detector
            rows.append(dict(dataset=name, half=h, seed=seed, variant=v,
                             auroc=roc_auc_score(sp.y_test, score),
                             aupr=average_precision_score(sp.y_test, score)))
        # one durable append per cell: a killed run resumes from here
        pd.DataFrame(rows).to_csv(cells, mode="a", header=not cells.is_file(), index=False)
    df = pd.read_csv(cells)
    tab = (df.groupby(["variant", "half", "dataset"])[["auroc", "aupr"]].mean()
           .groupby(["variant", "half"]).mean().unstack("half"))
    tab.columns = [f"{m}_{h}" for m, h in tab.columns]
    tab = tab.loc[[v for v in VARIANTS if v in tab.index]]
    (out / "residual_scaling.md").write_text(
        f"Base `{args.base}`. Mean over datasets of seed-mean test AUROC / AUPR "
        f"(IMDetector snapshots, re-scored); seeds {sorted(df['seed'].unique().tolist())}.\n\n"
        + "| variant | " + " | ".join(tab.columns) + " |\n"
        + "|---|" + "---:|" * len(tab.columns) + "\n"
        + "".join(f"| {v} | " + " | ".join(f"{x:.4f}" for x in r) + " |\n"
                  for v, r in tab.iterrows()))
    print(tab.round(4).to_string())


if __name__ == "__main__":
    main()
