"""Vectorized ensemble engine vs. a plain vectorized script vs. a loop over the same models.

Trains K MLP classifiers on ``sklearn.datasets.load_digits`` (one hidden layer
of width 32 and 256, Adam, 20 epochs, batch 64) three ways in one run: with
:func:`imod.engine.train_ensemble`; with ``plain_vectorized.py`` (per-member row
gather, ``torch.baddbmm``, ``torch.optim.Adam``, TF32); and one model at a time
with ``torch.optim.Adam`` on the engine's initial weights and mini-batch order.
Times are CPU seconds on the CPU (one thread each: a loaded machine's share of the
cores does not enter them) and wall seconds on a GPU. Every run is warmed up once
(imports, allocator, kernels) before it is timed; with
``--repeat`` the three arms are timed in turn, round after round (interleaved, so a
shared machine's load falls on all of them), and the best round of each is kept. The
load average is printed before and after.
Prints seconds, achieved TFLOP/s (GEMM FLOPs of forward and backward, counted
as 6 x weights x rows each member processes), the speed-up over the loop, and
accuracy on the training data.

Usage (from the repository root, so that this checkout's ``imod`` is imported)::

    PYTHONPATH=. python benchmarks/speed/engine_speed.py                  # K=64 on the CPU
    PYTHONPATH=. python benchmarks/speed/engine_speed.py --threads 1 --members 64 \\
        --loop-members 8 --epochs 5                                       # the CPU target
    PYTHONPATH=. python benchmarks/speed/engine_speed.py --members 1024 --device cuda \\
        --loop-members 16 --precision bf16
"""

from __future__ import annotations

import argparse
import math
import os
import time
from functools import partial

import numpy as np
import torch
from plain_vectorized import plain_predict, plain_updates, train_plain
from sklearn.datasets import load_digits

import imod
from imod.engine import (
    PRECISIONS,
    Placement,
    StackedMLP,
    Task,
    Training,
    train_ensemble,
)
from imod.engine.reference import train_one_by_one


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(where: torch.device, fn, *args, **kwargs):
    """Seconds of one call of ``fn(*args, **kwargs)`` and its result: CPU seconds on the
    CPU (one thread: what a loaded machine inflates least), wall seconds on a GPU."""
    sync(where)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    sync(where)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return (cpu if where.type == "cpu" else wall), out


def interleaved(repeat: int, arms: dict):
    """Best time and last result of each arm, the arms run in turn ``repeat`` times."""
    best = {name: (float("inf"), None) for name in arms}
    for _ in range(repeat):
        for name, call in arms.items():
            seconds, out = call()
            if seconds < best[name][0]:
                best[name] = (seconds, out)
    return best


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def engine(mlp, X, y, members: int, epochs: int, args, placement: Placement):
    """The engine's run: K classifiers on every row (the shared-batch path)."""
    return train_ensemble(Task(mlp, X, y, n_members=members, loss="cross_entropy"),
                          Training(epochs=epochs, batch_size=args.batch_size,
                                   random_state=args.seed), placement)


def gemm_flops(sizes: tuple[int, ...], rows: int) -> float:
    """Forward + backward GEMM FLOPs of ``rows`` member-rows through an MLP."""
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 6.0 * weights * rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=64, help="K for the vectorized runs")
    parser.add_argument(
        "--loop-members",
        type=int,
        default=None,
        help="models trained in the loop (default: all K); the loop time is scaled to K",
    )
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--compile", action="store_true", help="train_ensemble(compile=True)")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="time each run this many times and keep the best (a shared machine)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads for all runs (default: torch's own choice)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    Xn, yn = load_digits(return_X_y=True)
    Xn = (Xn / 16.0).astype(np.float32)
    X, y = torch.as_tensor(Xn, device=device), torch.as_tensor(yn, device=device)
    n, K = len(Xn), args.members
    n_loop = args.loop_members or K
    full = np.ones((K, n), dtype=bool)

    print(f"imod from {imod.__file__}")
    print(
        f"device={device} threads={torch.get_num_threads()} K={K} epochs={args.epochs} "
        f"batch={args.batch_size} precision={args.precision} compile={args.compile} "
        f"best of {args.repeat}"
    )
    print(
        f"{'width':>6} {'run':<18} {'seconds':>9} {'TFLOP/s':>9} {'vs loop':>8} {'acc':>6}"
    )
    print(load())
    for width in args.widths:
        sizes = (Xn.shape[1], width, 10)
        mlp = StackedMLP(sizes)
        placement = Placement(device=device, precision=args.precision, compile=args.compile)

        # Warm-ups (allocator, kernels; compilation for K members; torch's lazy imports
        # in the loop's first optimizer step, ~2 s, which --loop-members scaling would
        # otherwise multiply by K / loop-members), not timed.
        engine(mlp, X, y, K if args.compile else min(K, 2), 1, args, placement)
        train_one_by_one(mlp, mlp.init(args.seed, range(1)), X, y, loss="cross_entropy",
                         epochs=1, batch_size=args.batch_size, device=device)  # fmt: skip
        init = mlp.init(args.seed, range(n_loop))
        arms = {
            "engine": partial(timed, device, engine, mlp, X, y, K, args.epochs, args, placement),
            "loop": partial(
                timed, device, train_one_by_one, mlp, init, X, y, loss="cross_entropy",
                epochs=args.epochs, batch_size=args.batch_size, random_state=args.seed,
                device=device),
        }
        if not args.no_plain:
            train_plain(Xn, yn, full[:2], sizes, epochs=1, batch_size=args.batch_size,
                        device=device)  # warm-up
            arms["plain"] = partial(  # the whole call, as for the engine
                timed, device, train_plain, Xn, yn, full, sizes, epochs=args.epochs,
                batch_size=args.batch_size, device=device, seed=args.seed)
        best = interleaved(args.repeat, arms)
        t_vec, res = best["engine"]
        t_loop, models = best["loop"]
        t_loop *= K / n_loop
        b = min(args.batch_size, n)
        vec_rows = args.epochs * math.ceil(n / b) * b * K  # padded batches
        loop_rows = args.epochs * n * K
        with torch.no_grad():
            acc_vec = (res.forward(Xn).argmax(-1) == torch.as_tensor(yn)).float().mean().item()
            acc_loop = np.mean([(m(X).argmax(-1) == y).float().mean().item() for m in models])
        rows = [("engine", t_vec, vec_rows, acc_vec)]
        if not args.no_plain:
            t_plain, (Ws, bs, _) = best["plain"]
            pred = plain_predict(Ws, bs, Xn).cpu()
            acc_plain = (pred == torch.as_tensor(yn)).float().mean().item()
            plain_rows = plain_updates(full, args.epochs, args.batch_size) * args.batch_size * K
            rows.append(("plain vectorized", t_plain, plain_rows, acc_plain))
        rows.append((f"loop ({n_loop} of K)", t_loop, loop_rows, acc_loop))
        for name, seconds, member_rows, acc in rows:
            tflops = gemm_flops(sizes, member_rows) / seconds / 1e12
            print(
                f"{width:>6} {name:<18} {seconds:>9.2f} {tflops:>9.4f} "
                f"{t_loop / seconds:>7.1f}x {acc:>6.3f}"
            )
    print(load())


if __name__ == "__main__":
    main()
