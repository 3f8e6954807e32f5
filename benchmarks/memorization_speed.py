"""Speed of memorization + influence scores on MNIST-1D (subsampled estimator).

K members, each the estimator's default MLP 40-512-10 (Adam lr 3e-3, batch 32,
``epochs="auto"``: a 4-member pilot, then 1.25 x the epochs it needed to fit its rows) trained
on a balanced random 70 % of the 4,000 MNIST-1D training sequences through the
ensemble engine; then correctness of every member on the 4,000 training and
1,000 test sequences, memorization scores (difference and fractional) and the
4,000 x 1,000 influence matrix. Reports seconds for training (engine), the
correctness forward passes, and scoring separately, and members per second.

Usage::

    python benchmarks/memorization_speed.py                       # K=64 on the CPU
    python benchmarks/memorization_speed.py --members 4000 --device cuda --block-size 1000
    python benchmarks/memorization_speed.py --members 4000 --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from imod.engine import OptimizerSpec
from imod.memorization import MemorizationEstimator, load_mnist1d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=64)
    p.add_argument("--rate", type=float, default=0.7)
    p.add_argument("--epochs", default="auto", help="'auto' (the estimator's default) or an int")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, nargs="+", default=[512])
    p.add_argument("--block-size", type=int, default=None,
                   help="members per engine call (default: all K in one block)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default=None,
                   help="engine precision (e.g. tf32, bf16) when the engine supports it")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_mnist1d(cache_dir=args.cache_dir)
    est = MemorizationEstimator(
        model=tuple(args.hidden), n_members=args.members, rate=args.rate,
        epochs=args.epochs if args.epochs == "auto" else int(args.epochs),
        batch_size=args.batch_size, optimizer=OptimizerSpec("adam", lr=3e-3),
        score="fractional", random_label_fraction=0.0, threshold=0.25,
        block_size=args.block_size or args.members, random_state=args.seed, device=args.device,
        precision=args.precision, progress=False,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est.fit(data.X, data.y, data.X_test, data.y_test)
    total = time.perf_counter() - t0
    r = est.members_
    out = {
        "device": str(args.device),
        "gpu": torch.cuda.get_device_name() if str(args.device).startswith("cuda") else None,
        "threads": torch.get_num_threads(),
        "precision": args.precision or "fp32",
        "members": args.members,
        "block_size": est.block_size,
        "epochs": est.epochs_,
        "train_s": round(r.train_seconds, 3),
        "fit_wall_s": round(est.fit_seconds_, 3),  # with the auto-epochs pilot
        "score_s": round(est.score_seconds_, 3),
        "total_s": round(total, 3),
        "members_per_s_train": round(args.members / r.train_seconds, 3),
        "members_per_s_total": round(args.members / total, 3),
        "mean_test_acc": round(float(est.correct_test_.mean()), 4),
        "mean_train_acc_in": round(float(np.nanmean(est.p_in_)), 4),
        "influence_shape": list(est.influence_.shape),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
