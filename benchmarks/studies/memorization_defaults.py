"""Defaults study: which width and learning rate let the members fit their rows, random labels too.

For digits and MNIST-1D, 5 % of the training labels replaced by a random other
class, 8 members (balanced masks, rate 0.7), one-hidden-layer MLPs of several
widths, Adam at several learning rates, batch 32. Every member's correctness on
every row is recorded after every epoch. Per configuration: the first epoch at
which the mean in-sample accuracy reaches 0.99 on natural and on random-label
rows (the ``epochs="auto"`` rule), the fractional AUROC at the last epoch (8
members: coarse), and the CPU seconds per member-epoch (one thread).

Usage::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/studies/memorization_defaults.py \
        --out docs/results/memorization_defaults.md
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from imod.engine import (
    OptimizerSpec,
    Placement,
    Recorder,
    Recording,
    StackedMLP,
    Task,
    Training,
    balanced_mask,
    correctness,
    train_ensemble,
)
from imod.memorization import detection_metrics, load_dataset, relabel_random, subsample_scores

EPOCHS = {"digits": 150, "mnist1d": 100}


def run(name: str, width: int, lr: float, members: int = 8, seed: int = 0) -> dict:
    d = load_dataset(name)
    X = d.X.reshape(len(d.X), -1).astype(np.float32)
    y, idx = relabel_random(d.y, int(d.y.max()) + 1, 0.05, seed)
    rl = np.zeros(len(y), bool)
    rl[idx] = True
    mask = balanced_mask(members, len(y), 0.7, random_state=seed)
    t0 = time.process_time()
    res = train_ensemble(
        Task(StackedMLP((X.shape[1], width, int(y.max()) + 1)), X, y, mask=mask,
             loss="cross_entropy"),
        Training(optimizer=OptimizerSpec("adam", lr=lr), epochs=EPOCHS[name], batch_size=32,
                 random_state=seed),
        Placement(device="cpu"), Recording([Recorder("c", correctness)]))
    cpu = time.process_time() - t0
    c = res.records["c"].astype(bool)
    nat = c[:, mask & ~rl[None]].mean(1)
    rnd = c[:, mask & rl[None]].mean(1)
    fit = np.flatnonzero((nat >= 0.99) & (rnd >= 0.99))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = subsample_scores(mask, c[-1], min_out=1)
    return {"dataset": name, "width": width, "lr": lr,
            "fit_epoch": int(fit[0] + 1) if fit.size else None,
            "in_acc_random_last": float(rnd[-1]), "in_acc_natural_last": float(nat[-1]),
            "auroc_frac_last": detection_metrics(s.fractional, rl)["auroc"],
            "cpu_ms_per_member_epoch": 1000 * cpu / (members * EPOCHS[name])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    lines = ["| dataset | width | lr | epoch fit (0.99) | in-acc random / natural (last) | "
             "fractional AUROC (last) | CPU ms per member-epoch |", "|---|---|---|---|---|---|---|"]
    for name in args.datasets:
        for width in args.widths:
            for lr in args.lrs:
                r = run(name, width, lr)
                lines.append(f"| {name} | {width} | {lr:g} | {r['fit_epoch'] or 'never'} | "
                             f"{r['in_acc_random_last']:.3f} / {r['in_acc_natural_last']:.3f} | "
                             f"{r['auroc_frac_last']:.3f} | {r['cpu_ms_per_member_epoch']:.1f} |")
                print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
