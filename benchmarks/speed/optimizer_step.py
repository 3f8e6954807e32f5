"""One Adam step over stacked members: float32 state (torch's fused Adam) against
bfloat16 state (:func:`imod.engine.optim.adam_masked_step`, compiled and eager).

K MLPs 40-256-256-10 (issue 17's memorization workload; K=64: 5.1M parameters) get
random gradients; each variant is warmed up (compiling, for the compiled one), then
timed over ``--steps`` steps. Prints milliseconds per step, the bytes the step has to
move (float32 state: weights, gradients and two moments read, weights and moments
written, 28 bytes per parameter; bfloat16 state: 20) and the bandwidth that implies.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/speed/optimizer_step.py --threads 1
    PYTHONPATH=. python benchmarks/speed/optimizer_step.py --members 4000 --device cuda
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import torch

from imod.engine import optim
from imod.engine.optim import OptimizerSpec, StackedOptimizer

SIZES = (40, 256, 256, 10)


def stacked(k: int, device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    for i, (a, b) in enumerate(zip(SIZES, SIZES[1:])):
        out[f"{i}.weight"] = torch.randn(k, a, b, device=device)
        out[f"{i}.bias"] = torch.randn(k, b, device=device)
    return out


def ms_per_step(spec: OptimizerSpec, k: int, steps: int, device: torch.device) -> float:
    params, grads = stacked(k, device), stacked(k, device)
    opt = StackedOptimizer(spec, params)
    active = torch.ones(k, dtype=torch.bool, device=device)
    for _ in range(3):
        opt.step(params, grads, active, all_active=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step(params, grads, active, all_active=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = sum(t[0].numel() for t in stacked(1, device).values()) * args.members
    print(f"K={args.members} members, {n / 1e6:.1f}M parameters, {device}, "
          f"{torch.get_num_threads()} CPU thread(s)")
    print(f"{'state':34s} {'ms/step':>8s} {'bytes/param':>12s} {'GB/s':>8s}")
    runs = [("fp32 (torch fused Adam)", OptimizerSpec("adam"), 28, True),
            ("bf16, compiled step", OptimizerSpec("adam", state_precision="bf16"), 20, True),
            ("bf16, eager step", OptimizerSpec("adam", state_precision="bf16"), 20, False)]
    for name, spec, nbytes, compiled in runs:
        if compiled:
            ms = ms_per_step(spec, args.members, args.steps, device)
        else:  # the same step function, not compiled
            with mock.patch.object(optim, "maybe_compile", lambda fn, *a, **k: fn):
                ms = ms_per_step(spec, args.members, args.steps, device)
        print(f"{name:34s} {ms:8.2f} {nbytes:12d} {n * nbytes / ms / 1e6:8.1f}")


if __name__ == "__main__":
    main()
