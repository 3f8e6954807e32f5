"""Vectorized ensemble engine vs. a plain loop over the same models.

Trains K MLP classifiers on ``sklearn.datasets.load_digits`` (one hidden layer
of width 32 and 256, Adam, 20 epochs, batch 64) twice in one run: with
:func:`imod.engine.train_ensemble`, and one model at a time with
``torch.optim.Adam`` on the same initial weights and the same mini-batch order.
Prints seconds and the speed-up, and checks both reach the same accuracy.

Usage::

    python benchmarks/speed/engine_speed.py                  # K=64 on the CPU
    python benchmarks/speed/engine_speed.py --members 1024 --device cuda --loop-members 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from imod.engine import StackedMLP, train_ensemble
from imod.engine.reference import train_one_by_one


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=64, help="K for the vectorized run")
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads for both runs (default: torch's own choice)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    Xn, yn = load_digits(return_X_y=True)
    Xn = (Xn / 16.0).astype(np.float32)
    X, y = torch.as_tensor(Xn, device=device), torch.as_tensor(yn, device=device)
    n_loop = args.loop_members or args.members

    print(
        f"device={device} threads={torch.get_num_threads()} K={args.members} "
        f"epochs={args.epochs} batch={args.batch_size}"
    )
    print(
        f"{'width':>6} {'vectorized s':>13} {'loop s':>10} {'speed-up':>9} "
        f"{'acc vec':>8} {'acc loop':>9}"
    )
    for width in args.widths:
        mlp = StackedMLP((Xn.shape[1], width, 10))
        # Warm-up (allocator, kernels), not timed.
        train_ensemble(mlp, X, y, n_members=2, loss="cross_entropy", epochs=1, device=device)

        sync(device)
        t0 = time.perf_counter()
        res = train_ensemble(
            mlp,
            X,
            y,
            n_members=args.members,
            loss="cross_entropy",
            epochs=args.epochs,
            batch_size=args.batch_size,
            random_state=args.seed,
            device=device,
        )
        sync(device)
        t_vec = time.perf_counter() - t0

        init = mlp.init(args.seed, range(n_loop))
        sync(device)
        t0 = time.perf_counter()
        models = train_one_by_one(
            mlp,
            init,
            X,
            y,
            loss="cross_entropy",
            epochs=args.epochs,
            batch_size=args.batch_size,
            random_state=args.seed,
            device=device,
        )
        sync(device)
        t_loop = (time.perf_counter() - t0) * args.members / n_loop

        with torch.no_grad():
            acc_vec = (res.forward(Xn).argmax(-1) == torch.as_tensor(yn)).float().mean().item()
            acc_loop = np.mean([(m(X).argmax(-1) == y).float().mean().item() for m in models])
        print(
            f"{width:>6} {t_vec:>13.2f} {t_loop:>10.2f} {t_loop / t_vec:>8.1f}x "
            f"{acc_vec:>8.3f} {acc_loop:>9.3f}"
        )


if __name__ == "__main__":
    main()
