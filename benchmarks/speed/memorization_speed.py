"""Speed of memorization + influence scores on MNIST-1D (subsampled estimator).

K members, each an MLP 40-256-256-10 (Adam lr 1e-3, 30 epochs, batch 128) trained
on a balanced random 70 % of the 4,000 MNIST-1D training sequences through the
ensemble engine; then correctness of every member on the 4,000 training and
1,000 test sequences, memorization scores (difference and fractional) and the
4,000 x 1,000 influence matrix. Reports seconds for training (engine), the
correctness forward passes, and scoring separately, and members per second.

Next to the seconds: achieved TFLOP/s (GEMM FLOPs of forward and backward, 6 x
weights x rows each member processes: the engine's shared batches of
``ceil(128 / 0.7)`` rows, the plain script's 128 own rows), a baseline row from
``plain_vectorized.py`` on the same data and masks in the same run, and on CUDA
the fraction of the floor reached: floor = GEMM FLOPs at the chip's dense rate
(TF32, or bf16 with ``--precision bf16``) + Adam's memory traffic at its memory
bandwidth. That traffic is printed as bytes moved per optimizer step: a fused
Adam step reads the gradient (4 bytes per parameter) and reads and writes the
float32 weight (8) and both moments (16 in float32, 8 with
``--optimizer-state bf16``): 28 or 20 bytes per parameter.

Usage (from the repository root, so that this checkout's ``imod`` is imported)::

    PYTHONPATH=. python benchmarks/speed/memorization_speed.py             # K=64 on the CPU
    PYTHONPATH=. python benchmarks/speed/memorization_speed.py --members 4000 --device cuda
    PYTHONPATH=. python benchmarks/speed/memorization_speed.py --members 4000 --device cuda \
        --precision bf16 --optimizer-state bf16
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings

import numpy as np
import torch
from plain_vectorized import plain_predict, plain_updates, train_plain

import imod
from imod.engine import OptimizerSpec, shared_batch_size
from imod.engine.optim import STATE_PRECISIONS
from imod.memorization import MemorizationEstimator, load_mnist1d

#: Dense tensor-core peak (TFLOP/s: tf32, bf16) and memory bandwidth (TB/s) by GPU name.
CHIPS = {"H200": (494.0, 989.0, 4.8), "H100": (494.0, 989.0, 3.35), "A100": (156.0, 312.0, 2.0)}


def gemm_flops(sizes: list[int], rows: float) -> float:
    """Forward + backward GEMM FLOPs of ``rows`` member-rows through an MLP."""
    return 6.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * rows


def floor_seconds(device: str, precision: str, flops: float, adam_bytes: float):
    """The floor on this chip (None off CUDA or for an unknown chip)."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    chip = next((v for k, v in CHIPS.items() if k in name), None)
    if chip is None:
        return None
    tf32, bf16, bandwidth = chip
    peak = bf16 if precision == "bf16" else tf32
    return flops / (peak * 1e12) + adam_bytes / (bandwidth * 1e12)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=64)
    p.add_argument("--rate", type=float, default=0.7)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--block-size", type=int, default=None,
                   help="members per engine call (default: all K in one block)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default=None,
                   help="engine precision (e.g. tf32, bf16) when the engine supports it")
    p.add_argument("--optimizer-state", choices=STATE_PRECISIONS, default="fp32",
                   help="storage of Adam's moments (OptimizerSpec.state_precision)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    p.add_argument("--no-plain", action="store_true", help="skip the plain baseline")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_mnist1d(cache_dir=args.cache_dir)
    adam = OptimizerSpec("adam", lr=1e-3, state_precision=args.optimizer_state)

    def estimator(epochs: int) -> MemorizationEstimator:
        return MemorizationEstimator(
            model=tuple(args.hidden), n_members=args.members, rate=args.rate, epochs=epochs,
            batch_size=args.batch_size, optimizer=adam,
            score="fractional", random_label_fraction=0.0, threshold=0.25,
            block_size=args.block_size or args.members, random_state=args.seed,
            device=args.device, precision=args.precision, progress=False,
        )

    # Warm-up: one epoch with the same members and shapes (CUDA kernels, allocator, and the
    # compiled bf16-state Adam step, which torch.compile builds at its first call).
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        estimator(1).fit(data.X, data.y, data.X_test, data.y_test)
    warmup_s = time.perf_counter() - t0
    est = estimator(args.epochs)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est.fit(data.X, data.y, data.X_test, data.y_test)
    total = time.perf_counter() - t0
    r = est.members_
    n, n_in = data.X.shape
    sizes = [n_in, *args.hidden, 10]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    shared = shared_batch_size(args.batch_size, args.rate, n)
    updates = args.epochs * math.ceil(n / shared)
    flops = gemm_flops(sizes, updates * shared * args.members)
    # Fused Adam: gradient read (4), weight read + write (8), two moments read + write.
    bytes_per_param = 12.0 + (8.0 if args.optimizer_state == "bf16" else 16.0)
    step_bytes = bytes_per_param * params * args.members
    floor = floor_seconds(str(args.device), args.precision or "fp32", flops, step_bytes * updates)
    out = {
        "imod": imod.__file__,
        "device": str(args.device),
        "gpu": torch.cuda.get_device_name() if str(args.device).startswith("cuda") else None,
        "threads": torch.get_num_threads(),
        "precision": args.precision or "fp32",
        "optimizer_state": args.optimizer_state,
        "members": args.members,
        "block_size": est.block_size,
        "epochs": args.epochs,
        "warmup_s": round(warmup_s, 3),
        "train_s": round(r.train_seconds, 3),
        "fit_wall_s": round(r.seconds, 3),
        "score_s": round(est.score_seconds_, 3),
        "total_s": round(total, 3),
        "members_per_s_train": round(args.members / r.train_seconds, 3),
        "updates": updates,
        "shared_batch": shared,
        "gemm_tflop": round(flops / 1e12, 3),
        "params": params * args.members,
        "adam_bytes_per_param": bytes_per_param,
        "adam_gb_per_step": round(step_bytes / 1e9, 4),
        "train_tflops": round(flops / r.train_seconds / 1e12, 4),
        "floor_s": None if floor is None else round(floor, 3),
        "fraction_of_floor": None if floor is None else round(floor / r.train_seconds, 3),
        "members_per_s_total": round(args.members / total, 3),
        "mean_test_acc": round(float(est.correct_test_.mean()), 4),
        "mean_train_acc_in": round(float(np.nanmean(est.p_in_)), 4),
        "influence_shape": list(est.influence_.shape),
    }
    if not args.no_plain:
        mask = est.mask_
        train_plain(data.X, data.y, mask[:2], sizes, epochs=1, batch_size=args.batch_size,
                    device=args.device)  # warm-up
        t0 = time.perf_counter()
        Ws, bs, plain_train_s = train_plain(data.X, data.y, mask, sizes, epochs=args.epochs,
                                            batch_size=args.batch_size, device=args.device,
                                            seed=args.seed)
        plain_wall = time.perf_counter() - t0
        pred = plain_predict(Ws, bs, data.X_test).cpu().numpy()
        plain_flops = gemm_flops(
            sizes, plain_updates(mask, args.epochs, args.batch_size) * args.batch_size
            * args.members)
        out["plain_vectorized"] = {
            "train_s": round(plain_wall, 3),
            "train_tflops": round(plain_flops / plain_wall / 1e12, 4),
            "mean_test_acc": round(float((pred == data.y_test).mean()), 4),
            "engine_speedup": round(plain_wall / r.train_seconds, 2),
        }
    print(json.dumps(out, indent=2))
    print(f"optimizer step: {out['params']:,} parameters x {bytes_per_param:.0f} bytes = "
          f"{out['adam_gb_per_step']} GB per step, {updates} steps (what a fused step moves); "
          f"warm-up (one epoch, compiling) {out['warmup_s']:.2f} s")
    print(f"{'run':<28} {'train s':>8} {'TFLOP/s':>9} {'test acc':>9}")
    run = f"engine {out['precision']}, {out['optimizer_state']} state"
    print(f"{run:<28} {out['train_s']:>8.2f} "
          f"{out['train_tflops']:>9.4f} {out['mean_test_acc']:>9.4f}")
    if "plain_vectorized" in out:
        pv = out["plain_vectorized"]
        print(f"{'plain vectorized tf32':<28} {pv['train_s']:>8.2f} {pv['train_tflops']:>9.4f} "
              f"{pv['mean_test_acc']:>9.4f}   (plain s / engine s = {pv['engine_speedup']}x)")
    if floor is None:
        print("floor: CUDA only (H100/H200/A100), not measured here")
    else:
        print(f"floor {floor:.2f} s: the engine reaches {out['fraction_of_floor']:.1%} of it")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
