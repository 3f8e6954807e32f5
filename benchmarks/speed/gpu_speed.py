"""The engine's GPU figures in one run: memorization training at K = 4,000, and the detector.

1. The memorization workload of ``memorization_speed.py`` (MNIST-1D, MLP 40-256-256-10,
   30 epochs, batch 128, balanced 70 % masks) at K = 4,000 members in one block, four
   arms timed in turn (``--repeat`` rounds, best kept): the engine in fp32 (TF32 products
   on CUDA), in bf16, in bf16 with bfloat16 Adam moments, and the plain vectorized script
   (``plain_vectorized.py``, TF32) on the same masks. Prints seconds, TFLOP/s, the fraction
   of the chip's floor and test accuracy.
2. IMDetector on 1,000,000 x 20 synthetic rows on the GPU against PyOD's IForest on all
   CPU cores (``detector_speed.py --scale``).

Measured on one H200 (README, Speed): engine fp32 6.21 s, bf16 5.58 s, bf16 + bf16 Adam
state 5.50 s, plain script 7.37 s; the detector 2.8 s against IForest's 14.2 s on 16 cores.
``--smoke`` runs both parts tiny (12 members, 1 epoch, 16 wide; 20,000 detector rows) on
the given device, the CPU by default, to check that the script works.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/speed/gpu_speed.py --device cuda        # the GPU figures
    PYTHONPATH=. python benchmarks/speed/gpu_speed.py --smoke              # seconds, on the CPU
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from detector_speed import scale
from memorization_speed import engine_arm, floor_seconds, gemm_flops, load, plain_arm

from imod.engine import balanced_mask
from imod.memorization import load_mnist1d

#: (name, engine precision, Adam state precision) of each engine arm.
ENGINE_ARMS = [("engine fp32 (tf32 on CUDA)", "fp32", "fp32"), ("engine bf16", "bf16", "fp32"),
               ("engine bf16, bf16 Adam state", "bf16", "bf16")]


def memorization(args) -> None:
    """Part 1: the four arms, interleaved; prints one row each."""
    data = load_mnist1d(cache_dir=args.cache_dir)
    n, n_in = data.X.shape
    sizes = [n_in, *args.hidden, 10]
    mask = balanced_mask(args.members, n, args.rate, random_state=args.seed)
    arms = {}
    for name, precision, state in ENGINE_ARMS:
        arm_args = argparse.Namespace(**{**vars(args), "optimizer_state": state})
        engine_arm(argparse.Namespace(**{**vars(arm_args), "epochs": 1}), data, mask, precision)
        arms[name] = (arm_args, precision)
    plain_arm(argparse.Namespace(**{**vars(args), "epochs": 1}), data, mask[:2], sizes)
    best: dict[str, tuple[float, float, dict]] = {}
    print(f"K={args.members}, {args.epochs} epochs, device {args.device}, load {load()}")
    for _ in range(args.repeat):
        for name, (arm_args, precision) in arms.items():
            result = engine_arm(arm_args, data, mask, precision)
            if result[1] < best.get(name, (0, float("inf")))[1]:
                best[name] = result
        result = plain_arm(args, data, mask, sizes)
        if result[1] < best.get("plain", (0, float("inf")))[1]:
            best["plain"] = result
    own = int(mask.sum(axis=1).max())
    b = min(args.batch_size, own)
    updates = args.epochs * math.ceil(own / b)
    flops = gemm_flops(sizes, updates * b * args.members)
    params = sum(a * c + c for a, c in zip(sizes[:-1], sizes[1:])) * args.members
    print(f"{'run':<32} {'wall s':>8} {'TFLOP/s':>8} {'floor':>7} {'test acc':>9} "
          f"{'plain/run':>10}")
    plain_wall = best["plain"][1]
    for name, precision, state in [*ENGINE_ARMS, ("plain vectorized (tf32)", "fp32", "fp32")]:
        _, wall, row = best["plain" if name.startswith("plain") else name]
        floor = floor_seconds(str(args.device), precision, flops,
                              (20.0 if state == "bf16" else 28.0) * params * updates)
        frac = "" if floor is None else f"{floor / wall:.1%}"
        print(f"{name:<32} {wall:>8.2f} {flops / wall / 1e12:>8.3f} {frac:>7} "
              f"{row['mean_test_acc']:>9.4f} {plain_wall / wall:>9.2f}x")
    print(f"load after: {load()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--members", type=int, default=4000)
    p.add_argument("--rate", type=float, default=0.7)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--rows", type=int, default=1_000_000, help="detector rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--skip-detector", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = p.parse_args()
    if args.smoke:
        args.members, args.epochs, args.hidden, args.rows = 12, 1, [16], 20_000
    args.block_size, args.threads = None, None
    t0 = time.perf_counter()
    memorization(args)
    if not args.skip_detector:
        scale(args.rows, 20, args.device)
    print(f"gpu_speed: {time.perf_counter() - t0:.1f} s in all; torch {torch.__version__}, "
          f"cuda {torch.cuda.is_available()}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
