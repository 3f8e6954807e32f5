"""Vectorized ensemble engine vs. a plain loop over the same models.

Trains K MLP classifiers on ``sklearn.datasets.load_digits`` (one hidden layer
of width 32 and 256, Adam, 20 epochs, batch 64) twice in one run: with
:func:`imod.engine.train_ensemble`, and one model at a time with
``torch.optim.Adam`` on the same initial weights and the same mini-batch order.
Prints seconds and the speed-up, and checks both reach the same accuracy.

Usage::

    python benchmarks/engine_speed.py                  # K=64 on the CPU
    python benchmarks/engine_speed.py --members 1024 --device cuda --loop-members 16
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

from imod.engine import StackedMLP, batch_order, train_ensemble


def loop_train(
    mlp: StackedMLP,
    init: dict[str, torch.Tensor],
    X: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    seed: int,
) -> list[torch.nn.Module]:
    """The reference: each member alone, plain PyTorch, same batches."""
    models = []
    n_members = next(iter(init.values())).shape[0]
    for k in range(n_members):
        model = mlp.module().to(X.device)
        model.load_state_dict({name: t[k] for name, t in init.items()})
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(epochs):
            order = torch.as_tensor(batch_order(seed, epoch, len(X)), device=X.device)
            for s in range(math.ceil(len(X) / batch_size)):
                idx = order[s * batch_size : (s + 1) * batch_size]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(X[idx]), y[idx]).backward()
                opt.step()
        models.append(model)
    return models


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
    args = parser.parse_args()

    device = torch.device(args.device)
    Xn, yn = load_digits(return_X_y=True)
    Xn = (Xn / 16.0).astype(np.float32)
    X, y = torch.as_tensor(Xn, device=device), torch.as_tensor(yn, device=device)
    n_loop = args.loop_members or args.members

    print(f"device={device} K={args.members} epochs={args.epochs} batch={args.batch_size}")
    print(f"{'width':>6} {'vectorized s':>13} {'loop s':>10} {'speed-up':>9} {'acc vec':>8} {'acc loop':>9}")
    for width in args.widths:
        mlp = StackedMLP((Xn.shape[1], width, 10))
        # Warm-up (allocator, kernels), not timed.
        train_ensemble(mlp, X, y, n_members=2, loss="cross_entropy", epochs=1, device=device)

        sync(device)
        t0 = time.perf_counter()
        res = train_ensemble(
            mlp, X, y, n_members=args.members, loss="cross_entropy", epochs=args.epochs,
            batch_size=args.batch_size, random_state=args.seed, device=device,
        )
        sync(device)
        t_vec = time.perf_counter() - t0

        init = mlp.init(args.seed, range(n_loop))
        sync(device)
        t0 = time.perf_counter()
        models = loop_train(mlp, init, X, y, args.epochs, args.batch_size, args.seed)
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
