"""Does ``IMDetector.explain`` name the feature that makes a row abnormal? (issue 24)

A test where the answer is known. On each development set the default detector is
fitted on 80 % of the inliers (ADBench label 0; at most ``--max-rows`` of them). Then
``--rows`` of the other inliers get one chosen feature (drawn at random among the
non-constant ones) moved far outside its training range, to ``max + k * range`` or
``min - k * range`` (``k = --shift``, direction at random), and ``explain`` is asked
which feature contributes most to their scores. Reported per dataset:

- ``top1``: the fraction of 1-feature shifts whose shifted feature ranks first;
- ``pair_top2``: for rows with two features shifted, the fraction whose two shifted
  features are the two largest contributions; ``pair_top1``: whose largest is one of them;
- ``flagged``: the fraction of shifted rows the detector flags (``predict == -1``).

The target is ``top1 >= 0.9`` on at least 5 development sets. Usage::

    IMOD_ADBENCH_DIR=... OMP_NUM_THREADS=1 python benchmarks/conventions/explain_known_answer.py \
        --out explain_known_answer.csv
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from _table import markdown
from tqdm import tqdm

from imod import IMDetector
from imod.bench.datasets import load_npz

FOLDS = Path(__file__).resolve().parents[1] / "studies" / "folds.json"


def development_sets() -> list[str]:
    """Every development set as ``folder/stem`` (Classical first, then the embeddings)."""
    folds = json.loads(FOLDS.read_text())["folds"]
    classical = sorted((f"Classical/{n}" for fold in folds for n in fold["classical"]),
                       key=lambda s: int(s.split("/")[1].split("_")[0]))
    return classical + sorted(n for fold in folds for n in fold["embedding"])


def shifted(X: np.ndarray, lo: np.ndarray, hi: np.ndarray, features: np.ndarray,
            k: float, rng: np.random.Generator) -> np.ndarray:
    """Copies of the rows of ``X`` with ``features[r]`` (one or more per row) moved to
    ``hi + k * range`` or ``lo - k * range``."""
    out = X.copy()
    span = hi - lo
    for r, feats in enumerate(features):
        for j in np.atleast_1d(feats):
            out[r, j] = hi[j] + k * span[j] if rng.random() < 0.5 else lo[j] - k * span[j]
    return out


def one_dataset(path: Path, seed: int, n_rows: int, k: float, max_rows: int) -> dict:
    ds = load_npz(path)
    rng = np.random.default_rng(seed)
    inliers = ds.X[ds.y == 0]
    inliers = inliers[rng.permutation(len(inliers))[: max_rows + n_rows]]
    n_fit = min(int(0.8 * len(inliers)), len(inliers) - 1)
    train, held = inliers[:n_fit], inliers[n_fit:]
    lo, hi = train.min(axis=0), train.max(axis=0)
    varying = np.flatnonzero(hi > lo)
    det = IMDetector(random_state=seed, device="cpu").fit(train)
    rows = held[rng.integers(len(held), size=n_rows)]
    one = rng.choice(varying, size=n_rows)
    two = np.stack([rng.choice(varying, size=2, replace=False) for _ in range(n_rows)])
    X1, X2 = shifted(rows, lo, hi, one, k, rng), shifted(rows, lo, hi, two, k, rng)
    c1, c2 = det.explain(X1).contributions, det.explain(X2).contributions
    first1 = c1.argmax(axis=1)
    order2 = np.argsort(-c2, axis=1)[:, :2]
    return dict(
        dataset=path.stem, n_train=len(train), n_features=ds.X.shape[1],
        projected=det.projection_ is not None,
        top1=float((first1 == one).mean()),
        pair_top2=float(np.mean([set(o) == set(t) for o, t in zip(order2, two, strict=True)])),
        pair_top1=float(np.mean([o[0] in t for o, t in zip(order2, two, strict=True)])),
        flagged=float((det.predict(X1) == -1).mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=os.environ.get("IMOD_ADBENCH_DIR"))
    ap.add_argument("--datasets", nargs="*", help="folder/stem names (default: all 48)")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--shift", type=float, default=3.0,
                    help="how many training ranges beyond the range (default 3)")
    ap.add_argument("--max-rows", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("explain_known_answer.csv"))
    args = ap.parse_args()
    if args.data_dir is None:
        ap.error("give --data-dir or set IMOD_ADBENCH_DIR")
    rows = []
    for name in tqdm(args.datasets or development_sets(), desc="datasets"):
        rows.append(one_dataset(args.data_dir / f"{name}.npz", args.seed, args.rows,
                                args.shift, args.max_rows))
        pd.DataFrame(rows).to_csv(args.out, index=False)
    df = pd.DataFrame(rows)
    print(markdown(df))
    print(f"\ntop1 >= 0.9 on {int((df['top1'] >= 0.9).sum())} of {len(df)} datasets; "
          f"median top1 {df['top1'].median():.3f}, median pair_top2 "
          f"{df['pair_top2'].median():.3f}")


if __name__ == "__main__":
    main()
