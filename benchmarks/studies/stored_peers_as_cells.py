"""Stored peers' per-task AUROC (seeds 1-3 means) as ``imod bench`` cells, for
``fold_selection.py --synthetic-seeds 1 2 3`` (issue 23, rounds 13-14).

``docs/results/oof_round9_seeds123/auroc_per_dataset.csv`` holds each peer's AUROC per
task averaged over seeds 1-3. The selection reads cells, so each mean is written as three
equal cells (seeds 1, 2, 3) in a bench-format ``results.csv``; AUPR and seconds are not
known there (0). Peers named in ``--only-synthetic`` keep their synthetic tasks only
(IForest: its real cells come from a bench folder that ran beside the candidates).

Usage::

    python stored_peers_as_cells.py --out results/peers_s123 --only-synthetic IForest
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

PEERS = ("IForest ECOD COPOD KNN LOF PCA HBOS CBLOF GMM INNE KDE OCSVM LODA AutoEncoder DIF "
         "MCD").split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auroc", type=Path,
                        default=ROOT / "docs/results/oof_round9_seeds123/auroc_per_dataset.csv")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only-synthetic", nargs="*", default=["IForest"])
    args = parser.parse_args(argv)
    table = pd.read_csv(args.auroc)
    rows = []
    for peer in PEERS:
        part = table[["dataset", "kind", peer]].dropna()
        if peer in args.only_synthetic:
            part = part[~part["kind"].isin(["classical", "embedding"])]
        for seed in (1, 2, 3):
            rows.append(pd.DataFrame({
                "dataset": part["dataset"], "detector": peer, "seed": seed,
                "mode": "inductive", "n_train": 1, "n_test": 1, "n_features": 1,
                "auroc": part[peer], "aupr": 0.0, "fit_seconds": 0.0, "score_seconds": 0.0,
                "seconds": 0.0, "status": "ok", "error": "",
                "finished_at": "2026-12-05T00:00:00"}))
    args.out.mkdir(parents=True, exist_ok=True)
    pd.concat(rows, ignore_index=True).to_csv(args.out / "results.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
