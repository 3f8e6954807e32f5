"""Screen score combinations of ablation rows before building them into the detector.

Reads the test scores kept by ``accuracy_ablation.py --save-scores`` and, for every
combination ``ROW1+ROW2[+...]``, averages the rows' scores after turning each into
ranks within the cell (``--how rank``) or robust z-scores (``--how robust-z``, which
keeps how far out the extreme scores lie): cheap stand-ins for a detector that
standardizes each view's scores by its training scores. Prints and writes mean
AUROC / AUPR per half.

    python benchmarks/studies/accuracy_combos.py --out results/screen \\
        --combos default prep=robust default+prep=robust default+prep=whiten
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy_ablation import BASES, ROWS, key_id, row_key, row_params
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score


def load_row(folder: Path, key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"<dataset>_s<seed>": (scores, y)}`` of one row."""
    d = folder / key_id(key)
    out = {}
    for f in sorted(d.glob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            out[f.stem] = (z["scores"].astype(np.float64), z["y"])
    return out


def normalize(s: np.ndarray, how: str) -> np.ndarray:
    """One view's scores on a common scale: ranks, or robust z-scores (keep magnitudes)."""
    if how == "rank":
        return rankdata(s)
    q25, q50, q75 = np.percentile(s, [25, 50, 75])
    return (s - q50) / max(q75 - q25, 1e-12)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/screen")
    ap.add_argument("--base", choices=list(BASES), default="v0")
    ap.add_argument("--combos", nargs="+", required=True, help="ROW or ROW1+ROW2+...")
    ap.add_argument("--how", choices=["rank", "robust-z"], default="rank",
                    help="rank: mean of ranks; robust-z: mean of (s - median) / IQR")
    args = ap.parse_args(argv)
    out = Path(args.out)
    halves = json.loads((out / "halves.json").read_text())
    half_of = {n: h for h, names in halves.items() for n in names}
    cache: dict[str, dict] = {}
    rows = []
    for combo in args.combos:
        parts = combo.split("+")
        for p in parts:
            if p not in cache:
                cache[p] = load_row(out / "scores", row_key(row_params(BASES[args.base], ROWS[p])))
        cells = set.intersection(*[set(cache[p]) for p in parts])
        for cell in sorted(cells):
            y = cache[parts[0]][cell][1]
            s = np.mean([normalize(cache[p][cell][0], args.how) for p in parts], axis=0)
            ds = cell.rsplit("_s", 1)[0].replace("__", "/")
            rows.append({"combo": combo, "dataset": ds, "half": half_of[ds],
                         "auroc": roc_auc_score(y, s), "aupr": average_precision_score(y, s)})
    df = pd.DataFrame(rows)
    per_ds = df.groupby(["combo", "half", "dataset"])[["auroc", "aupr"]].mean()
    tab = per_ds.groupby(["combo", "half"]).agg(["mean", "count"]).unstack("half")
    tab = tab.loc[[c for c in args.combos if c in tab.index]]
    print(tab.round(4).to_string())
    tab.to_csv(out / "combos.csv")


if __name__ == "__main__":
    main()
