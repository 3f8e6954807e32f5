"""What explaining costs next to scoring (issue 24: at most 2x for 10,000 rows).

For each dataset the default detector is fitted (all rows, no labels), then 10,000 rows
of it (drawn with replacement, each moved by 1e-3 standard deviations so that all are
distinct: ``explain`` explains a copy of a row once) are scored (``score_samples``) and
explained (``explain``) in turn, ``--repeats`` times interleaved, on one thread; the best
time of each is kept and their ratio printed. Run ``uptime`` beside it: the machine's
other load distorts both timings alike, not their ratio.

Usage::

    IMOD_ADBENCH_DIR=... OMP_NUM_THREADS=1 python benchmarks/conventions/explain_cost.py
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _table import markdown

from imod import IMDetector
from imod.bench.datasets import load_npz

DATASETS = ("Classical/22_magic.gamma", "Classical/6_cardio", "Classical/25_musk",
            "CV_by_ResNet18/CIFAR10_0", "NLP_by_BERT/20news_3")


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=os.environ.get("IMOD_ADBENCH_DIR"))
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.data_dir is None:
        ap.error("give --data-dir or set IMOD_ADBENCH_DIR")
    out = []
    for name in DATASETS:
        X = load_npz(args.data_dir / f"{name}.npz").X
        det = IMDetector(random_state=0, device="cpu").fit(X)
        rng = np.random.default_rng(0)
        rows = X[rng.integers(len(X), size=args.rows)]
        # distinct rows (explain explains each distinct row once): a jitter of 1e-3
        # standard deviations
        rows = rows + 1e-3 * X.std(axis=0) * rng.standard_normal(rows.shape)
        score = explain = float("inf")
        for _ in range(args.repeats):  # interleaved: both see the same load
            score = min(score, _timed(det.score_samples, rows))
            explain = min(explain, _timed(det.explain, rows))
        out.append(dict(dataset=name.split("/")[1], n_features=X.shape[1],
                        projected=det.projection_ is not None, score_s=score,
                        explain_s=explain, ratio=explain / score))
    print(markdown(pd.DataFrame(out)))


if __name__ == "__main__":
    main()
