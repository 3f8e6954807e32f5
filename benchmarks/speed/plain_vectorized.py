"""The plain vectorized baseline: K MLPs in a ~40-line loop, no engine.

Each member gathers its own batch of rows from its own subset (a random order of
its mask's rows per epoch), the layers are ``torch.baddbmm`` over all members,
the optimizer is stock ``torch.optim.Adam`` (foreach), and CUDA products run in
TF32. ``engine_speed.py`` and ``memorization_speed.py`` run it on their data in
the same run as a baseline row. Usage::

    python benchmarks/speed/plain_vectorized.py --members 256 --device cpu
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F


def train_plain(X, y, mask, sizes, *, epochs, batch_size, lr=1e-3, device="cpu", seed=0):
    """Train ``K = len(mask)`` classifiers; returns (weights, biases, seconds of training)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)
    X, y = torch.as_tensor(X, device=dev), torch.as_tensor(y, device=dev)
    mask = torch.as_tensor(np.asarray(mask), device=dev)
    K, n = mask.shape
    Ws, bs = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):  # nn.Linear's default init
        bound = fan_in**-0.5
        Ws.append((torch.rand(K, fan_in, fan_out, generator=gen, device=dev) * 2 - 1) * bound)
        bs.append((torch.rand(K, 1, fan_out, generator=gen, device=dev) * 2 - 1) * bound)
    params = [p.requires_grad_() for p in Ws + bs]
    opt = torch.optim.Adam(params, lr=lr)
    steps = max(1, int(mask.sum(dim=1).min()) // batch_size)  # full batches of own rows
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        keys = torch.rand(K, n, generator=gen, device=dev) + (~mask)  # own rows first
        order = keys.argsort(dim=1)[:, : steps * batch_size]
        for s in range(steps):
            idx = order[:, s * batch_size : (s + 1) * batch_size]  # (K, B) own rows
            h = X[idx]  # per-member row gather, (K, B, d)
            for i, (W, b) in enumerate(zip(Ws, bs)):
                h = torch.baddbmm(b, h, W)
                if i < len(Ws) - 1:
                    h = torch.relu(h)
            loss = F.cross_entropy(h.flatten(0, 1), y[idx].flatten(), reduction="none")
            opt.zero_grad(set_to_none=True)
            loss.view(K, -1).mean(dim=1).sum().backward()
            opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return Ws, bs, time.perf_counter() - start


def plain_updates(mask: np.ndarray, epochs: int, batch_size: int) -> int:
    """Updates :func:`train_plain` makes (each on ``batch_size`` rows per member)."""
    return epochs * max(1, int(np.asarray(mask).sum(axis=1).min()) // batch_size)


def plain_predict(Ws, bs, X) -> torch.Tensor:
    """Class predictions ``(K, n)`` of every member."""
    with torch.no_grad():
        h = torch.as_tensor(X, device=Ws[0].device).unsqueeze(0).expand(len(Ws[0]), -1, -1)
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = torch.baddbmm(b, h, W)
            if i < len(Ws) - 1:
                h = torch.relu(h)
    return h.argmax(-1)


def main() -> None:
    from sklearn.datasets import load_digits

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    mask = np.ones((args.members, len(X)), dtype=bool)
    Ws, bs, seconds = train_plain(X, y, mask, (64, args.width, 10), epochs=args.epochs,
                                  batch_size=args.batch_size, device=args.device)
    acc = (plain_predict(Ws, bs, X).cpu() == torch.as_tensor(y)).float().mean().item()
    print(f"K={args.members} width={args.width}: {seconds:.2f} s, train accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
