"""Training speed of the memorization estimator's members on MNIST-1D, engine vs. plain script.

K members, each an MLP 40-256-256-10 (Adam lr 1e-3, 30 epochs, batch 128) trained
on a balanced random 70 % of the 4,000 MNIST-1D training sequences the way
:class:`~imod.memorization.MemorizationEstimator` trains them
(:func:`~imod.memorization.runs.train_in_blocks`, one block of K members, each on
batches of 128 rows of its own subset, correctness on the 4,000 training and 1,000
test sequences recorded at the end), against ``plain_vectorized.py`` on the same
masks. Each arm's CPU seconds (one thread: what a loaded machine does not inflate
much) and wall seconds are printed; the speed-up is of CPU seconds.

The arms -- the engine at each of ``--precisions`` and the plain vectorized script
(``plain_vectorized.py``, same data and masks) -- run in turn, ``--repeat`` rounds
(interleaved, so a shared machine's load falls on all of them); each keeps its best
round. The load average is printed before and after.

Next to the seconds: achieved TFLOP/s (GEMM FLOPs of forward and backward, 6 x
weights x rows each member processes), and on CUDA the fraction of the floor
reached: floor = GEMM FLOPs at the chip's dense rate (TF32, or bf16 with
``bf16``) + Adam's memory traffic at its memory bandwidth. That traffic is printed
as bytes moved per optimizer step: a fused Adam step reads the gradient (4 bytes
per parameter) and reads and writes the float32 weight (8) and both moments (16 in
float32, 8 with ``--optimizer-state bf16``): 28 or 20 bytes per parameter.

With ``--products`` a row per precision times the matrix products of the engine's
updates alone (forward, weight and input gradients, the engine's shapes and update
count; no activation, loss or optimizer): no engine that computes those products can
be faster, so plain / products is the most the engine can reach on this machine.

Usage (from the repository root, so that this checkout's ``imod`` is imported)::

    PYTHONPATH=. python benchmarks/speed/memorization_speed.py --members 64 --threads 1
    PYTHONPATH=. python benchmarks/speed/memorization_speed.py --smoke     # seconds, any device
    PYTHONPATH=. python benchmarks/speed/memorization_speed.py --members 4000 --device cuda \
        --precisions fp32 bf16 --optimizer-state bf16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from functools import partial

import numpy as np
import torch
from plain_vectorized import plain_predict, plain_updates, train_plain

import imod
from imod.engine import PRECISIONS, OptimizerSpec, StackedMLP, balanced_mask
from imod.engine.members import params_per_member
from imod.engine.optim import STATE_PRECISIONS
from imod.engine.runtime import auto_chunk
from imod.memorization import load_mnist1d
from imod.memorization.runs import TrainingConfig, train_in_blocks

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


def engine_arm(args, data, mask: np.ndarray, precision: str):
    """The estimator's training through the engine (``train_in_blocks``, one block of K
    members, correctness recorded at the end); returns (CPU s, wall s, numbers)."""
    training = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, random_state=args.seed,
        optimizer=OptimizerSpec("adam", lr=1e-3, state_precision=args.optimizer_state),
        device=args.device, block_size=len(mask), precision=precision)
    cpu, wall = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = train_in_blocks(StackedMLP((data.X.shape[1], *args.hidden, 10)), data.X, data.y,
                              mask_for_block=lambda b, size: mask, n_members=len(mask),
                              rate=args.rate, training=training, X_test=data.X_test,
                              y_test=data.y_test)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu, wall, {"mean_test_acc": round(float(res.correct_test.mean()), 4),
                       "mean_train_acc_in": round(float(res.correct_train[mask].mean()), 4)}


def plain_arm(args, data, mask, sizes):
    """The plain vectorized script on the same masks; returns (CPU s, wall s, numbers)."""
    cpu, wall = time.process_time(), time.perf_counter()
    Ws, bs, _ = train_plain(data.X, data.y, mask, sizes, epochs=args.epochs,
                            batch_size=args.batch_size, device=args.device, seed=args.seed)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pred = plain_predict(Ws, bs, data.X_test).cpu().numpy()
    return cpu, wall, {"mean_test_acc": round(float((pred == data.y_test).mean()), 4)}


def products_arm(args, mask: np.ndarray, sizes: list[int], precision: str):
    """Only the batched matrix products of the engine's updates, nothing else: per update
    each layer's forward product, its weight gradient and (above the first layer) its
    input gradient, feature-major ``(K, width, B)`` as the engine lays them out, at the
    engine's update count, in the engine's chunks of members (``auto_chunk``). No
    activation, loss, optimizer or data movement, so its CPU seconds bound from below what
    any engine doing these products takes; returns (CPU s, wall s, numbers)."""
    dev = torch.device(args.device)
    own = int(mask.sum(axis=1).max())
    b = min(args.batch_size, own)
    mlp = StackedMLP(sizes)
    K = min(len(mask), auto_chunk(mlp, params_per_member(mlp), b, dev, own_rows=True))
    updates = args.epochs * math.ceil(own / b) * math.ceil(len(mask) / K)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gen = torch.Generator(device=dev).manual_seed(0)

    def draw(*shape):
        return torch.randn(*shape, generator=gen, device=dev).to(dtype)

    layers = [(draw(K, o, i), draw(K, i, b), draw(K, o, b))  # weight, input, output grad
              for i, o in zip(sizes[:-1], sizes[1:])]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(updates):
        for j, (w, h, g) in enumerate(layers):
            torch.bmm(w, h)  # forward
            torch.bmm(g, h.transpose(1, 2))  # weight gradient
            if j > 0:  # the first layer's input needs no gradient
                torch.bmm(w.transpose(1, 2), g)
    sync()
    return time.process_time() - cpu, time.perf_counter() - wall, {}


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


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
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS,
                   help="engine precisions to time (one arm each)")
    p.add_argument("--optimizer-state", choices=STATE_PRECISIONS, default="fp32",
                   help="storage of Adam's moments (OptimizerSpec.state_precision)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of the interleaved arms")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    p.add_argument("--no-plain", action="store_true", help="skip the plain baseline")
    p.add_argument("--products", action="store_true",
                   help="also time the matrix products alone at each precision: the floor "
                        "under any engine that computes them")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny run (12 members, 1 epoch, 16-wide) that checks the script works")
    args = p.parse_args()
    if args.smoke:
        args.members, args.epochs, args.hidden = 12, 1, [16]
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_mnist1d(cache_dir=args.cache_dir)
    n, n_in = data.X.shape
    sizes = [n_in, *args.hidden, 10]
    mask = balanced_mask(args.members, n, args.rate, random_state=args.seed)
    out = {"imod": imod.__file__, "device": str(args.device),
           "gpu": torch.cuda.get_device_name() if str(args.device).startswith("cuda") else None,
           "threads": torch.get_num_threads(), "optimizer_state": args.optimizer_state,
           "members": args.members, "epochs": args.epochs, "load_before": load()}
    # Warm-up: one epoch per arm with the same members and shapes (CUDA kernels, allocator,
    # the compiled bf16-state Adam step, which torch.compile builds at its first call).
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    for precision in args.precisions:
        engine_arm(warm, data, mask, precision)
    if not args.no_plain:
        plain_arm(warm, data, mask[:2], sizes)
    arms = {p: partial(engine_arm, args, data, mask, p) for p in args.precisions}
    if not args.no_plain:
        arms["plain"] = partial(plain_arm, args, data, mask, sizes)
    if args.products:
        arms.update({f"products {p}": partial(products_arm, args, mask, sizes, p)
                     for p in args.precisions})
    best: dict[str, tuple[float, float, dict]] = {}
    for _ in range(args.repeat):  # the arms in turn, round after round
        for name, arm in arms.items():
            result = arm()
            if result[0] < best.get(name, (float("inf"),))[0]:
                best[name] = result
    out["load_after"] = load()
    report(args, out, best, mask, sizes)


def report(args, out: dict, best: dict, mask: np.ndarray, sizes: list[int]) -> None:
    """Print (and write) the table: CPU and wall seconds, TFLOP/s, accuracy, plain / engine.

    The ratio is of CPU seconds (one thread each, so the share of a loaded machine's
    cores an arm got does not enter it); wall seconds are printed beside them.
    """
    n = mask.shape[1]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    own = int(mask.sum(axis=1).max())
    b = min(args.batch_size, own)
    updates = args.epochs * math.ceil(own / b)
    flops = gemm_flops(sizes, updates * b * args.members)  # padded own batches
    bytes_per_param = 12.0 + (8.0 if args.optimizer_state == "bf16" else 16.0)
    step_bytes = bytes_per_param * params * args.members
    out.update(updates=updates, batch=b, gemm_tflop=round(flops / 1e12, 3),
               params=params * args.members, adam_gb_per_step=round(step_bytes / 1e9, 4))
    plain_s = best["plain"][0] if "plain" in best else None
    print(f"optimizer step: {out['params']:,} parameters x {bytes_per_param:.0f} bytes = "
          f"{out['adam_gb_per_step']} GB per step, {updates} steps; n={n}; "
          f"load average before {out['load_before']}, after {out['load_after']}")
    print(f"{'run':<32} {'cpu s':>8} {'wall s':>8} {'TFLOP/s':>8} {'test acc':>9} "
          f"{'plain/run':>10}")
    rows = [(f"engine {p}, {args.optimizer_state} state", p, flops) for p in args.precisions]
    if plain_s is not None:
        plain_flops = gemm_flops(sizes, plain_updates(mask, args.epochs, args.batch_size)
                                 * args.batch_size * args.members)
        rows.append(("plain vectorized (tf32 on CUDA)", "plain", plain_flops))
    # the products arm skips the first layer's input gradient (gemm_flops counts it)
    products_flops = flops - 2.0 * sizes[0] * sizes[1] * updates * b * args.members
    rows += [(f"matrix products only, {p}", f"products {p}", products_flops)
             for p in args.precisions if f"products {p}" in best]
    for name, key, arm_flops in rows:
        cpu, wall, row = best[key]
        row = {**row, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
               "tflops_cpu_time": round(arm_flops / cpu / 1e12, 4)}
        if key in args.precisions:
            floor = floor_seconds(str(args.device), key, flops, step_bytes * updates)
            row["floor_s"] = None if floor is None else round(floor, 3)
        ratio = "" if plain_s is None else f"{plain_s / cpu:.2f}x"
        row["plain_over_run"] = ratio
        label = ("plain_vectorized" if key == "plain" else f"engine_{key}"
                 if key in args.precisions else key.replace(" ", "_"))
        out[label] = row
        acc = f"{row['mean_test_acc']:.4f}" if "mean_test_acc" in row else "-"
        print(f"{name:<32} {cpu:>8.2f} {wall:>8.2f} {row['tflops_cpu_time']:>8.4f} "
              f"{acc:>9} {ratio:>10}")
    if not str(args.device).startswith("cuda"):
        print("floor: CUDA only (H100/H200/A100), not measured here")
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
