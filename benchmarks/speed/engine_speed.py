"""Vectorized ensemble engine vs. a plain vectorized script vs. a loop over the same models.

Trains K MLP classifiers on ``sklearn.datasets.load_digits`` (one hidden layer
of width 32 and 256, Adam, 20 epochs, batch 64) three ways in one run: with
:func:`imod.engine.train_ensemble`; with ``plain_vectorized.py`` (per-member row
gather, ``torch.baddbmm``, ``torch.optim.Adam``, TF32); and one model at a time
with ``torch.optim.Adam`` on the engine's initial weights and mini-batch order.
Every run is warmed up once (imports, allocator, kernels) before it is timed.
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
import time

import numpy as np
import torch
from plain_vectorized import plain_predict, plain_updates, train_plain
from sklearn.datasets import load_digits

import imod
from imod.engine import PRECISIONS, StackedMLP, shared_batch_size, train_ensemble
from imod.engine.reference import train_one_by_one


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(repeat: int, where: torch.device, fn, *args, **kwargs):
    """Best wall time of ``repeat`` calls of ``fn(*args, **kwargs)`` and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        sync(where)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync(where)
        best = min(best, time.perf_counter() - t0)
    return best, out


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
    for width in args.widths:
        sizes = (Xn.shape[1], width, 10)
        mlp = StackedMLP(sizes)
        kw = dict(loss="cross_entropy", epochs=args.epochs, batch_size=args.batch_size,
                  random_state=args.seed, device=device, precision=args.precision,
                  compile=args.compile)
        # Warm-up (allocator, kernels; compilation for K members), not timed.
        train_ensemble(mlp, X, y, n_members=K if args.compile else min(K, 2),
                       **{**kw, "epochs": 1})  # fmt: skip

        t_vec, res = timed(args.repeat, device, train_ensemble, mlp, X, y, n_members=K, **kw)
        shared = shared_batch_size(args.batch_size, 1.0, n)
        vec_rows = args.epochs * math.ceil(n / shared) * shared * K  # padded shared batches

        init = mlp.init(args.seed, range(n_loop))
        # Warm-up of the loop as well: its first call pays torch's lazy imports
        # (~2 s of the optimizer's first step), which --loop-members scaling
        # would otherwise multiply by K / loop-members.
        train_one_by_one(mlp, mlp.init(args.seed, range(1)), X, y, loss="cross_entropy",
                         epochs=1, batch_size=args.batch_size, device=device)  # fmt: skip
        t_loop, models = timed(
            args.repeat, device, train_one_by_one, mlp, init, X, y, loss="cross_entropy",
            epochs=args.epochs, batch_size=args.batch_size, random_state=args.seed, device=device,
        )  # fmt: skip
        t_loop *= K / n_loop
        loop_rows = args.epochs * n * K

        with torch.no_grad():
            acc_vec = (res.forward(Xn).argmax(-1) == torch.as_tensor(yn)).float().mean().item()
            acc_loop = np.mean([(m(X).argmax(-1) == y).float().mean().item() for m in models])
        rows = [("engine", t_vec, vec_rows, acc_vec)]
        if not args.no_plain:
            train_plain(Xn, yn, full[:2], sizes, epochs=1, batch_size=args.batch_size,
                        device=device)  # warm-up
            t_plain, (Ws, bs, _) = timed(  # the whole call, as for the engine
                args.repeat, device, train_plain, Xn, yn, full, sizes, epochs=args.epochs,
                batch_size=args.batch_size, device=device, seed=args.seed,
            )  # fmt: skip
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


if __name__ == "__main__":
    main()
