"""Memorization scores with the member blocks trained in-process or on Dask workers.

MNIST-1D (4,000 train / 1,000 test), :class:`imod.memorization.MemorizationEstimator`
with its defaults (MLP 40-256-256-10, Adam, batch 128, balanced masks at rate 0.7) and
``--epochs`` epochs, K members in blocks of ``--block-size``. Every configuration trains
the same members (same seeds, same masks), so the scores must be identical; the script
checks that and reports the seconds of each configuration and the speed ratios.

CPU, 1 worker against 2 (issue 8)::

    python benchmarks/speed/distributed_speed.py --members 512 --configs dask:2 dask:1 \\
        --json docs/results/distributed_k512.json

``local:T`` = in-process with T torch threads; ``dask:W`` = a LocalCluster of W
single-threaded worker processes (started and warmed up before the clock starts, as a
long-lived cluster would be).

GPU (one process, blocks on the GPU)::

    python benchmarks/speed/distributed_speed.py --members 4000 --device cuda --configs local:1

Several GPUs: start one worker per GPU and pass ``--scheduler tcp://HOST:8786`` with
``--configs dask:1``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from imod.distributed import open_client
from imod.memorization import MemorizationEstimator, load_dataset


def fit_config(name: str, args: argparse.Namespace, data) -> dict:
    """Fit the estimator under one configuration; returns seconds, workers and scores."""
    kind, _, num = name.partition(":")
    if kind not in ("local", "dask"):
        raise SystemExit(f"unknown config {name!r}: use local:T or dask:W")
    n = int(num or 1)
    est = MemorizationEstimator(
        n_members=args.members, rate=0.7, epochs=args.epochs, block_size=args.block_size,
        random_label_fraction=0.0, threshold=0.25, random_state=args.seed,
        device=args.device, precision=args.precision, n_threads=n if kind == "local" else 1,
        progress=not args.quiet,
    )
    scheduler = None if kind == "local" else (args.scheduler or f"local-cluster:{n}")
    with open_client(scheduler) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if client is not None:
            client.wait_for_workers(1 if args.scheduler else n, timeout=120)
            client.run(lambda: __import__("imod.memorization") and None)  # warm imports
        est.set_params(scheduler=client)
        t0 = time.perf_counter()
        est.fit(data.X, data.y, data.X_test, data.y_test)
        seconds = time.perf_counter() - t0
    return {"config": name, "seconds": round(seconds, 2),
            "task_seconds": round(est.train_seconds_, 2),
            "workers": len(set(est.members_.workers.values()) - {""}) or 1,
            "test_accuracy": round(float(est.correct_test_.mean()), 4),
            "mean_difference": round(float(np.nanmean(est.difference_)), 4),
            "memorized_fraction": round(float(est.memorized_mask_.mean()), 4),
            "scores": est.difference_}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=512, help="K (default 512)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--block-size", type=int, default=None,
                   help="members per task (default: K / 8, at least 1)")
    p.add_argument("--configs", nargs="+", default=["dask:2", "dask:1"], metavar="KIND:N",
                   help="local:T (in-process, T threads) or dask:W (default: dask:2 dask:1); "
                        "speed-ups are against the one with the fewest workers/threads")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address for dask:*")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=None, help="MNIST-1D cache folder")
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.block_size = args.block_size or max(1, args.members // 8)

    data = load_dataset("mnist1d", cache_dir=args.cache_dir)
    print(f"MNIST-1D {len(data.y)} train / {len(data.y_test)} test; K={args.members}, "
          f"{args.epochs} epochs, blocks of {args.block_size}, device {args.device}, "
          f"{args.precision or 'fp32'}", flush=True)
    rows = []
    for cfg in args.configs:
        r = fit_config(cfg, args, data)
        rows.append(r)
        print(f"{cfg:>8}: {r['seconds']:8.1f} s  ({r['workers']} worker(s), tasks "
              f"{r['task_seconds']:.1f} s)  test acc {r['test_accuracy']:.3f}  mean mem "
              f"{r['mean_difference']:.3f}  memorized {r['memorized_fraction']:.1%}", flush=True)
    # The baseline is the configuration with the fewest workers / threads (the first on a
    # tie), whatever the order they ran in.
    base = min(rows, key=lambda r: int(r["config"].partition(":")[2] or 1))
    for r in rows:
        if r is base:
            continue
        same = np.array_equal(r["scores"], base["scores"], equal_nan=True)
        r["baseline"] = base["config"]
        r["speedup"] = round(base["seconds"] / r["seconds"], 2)
        r["scores_identical"] = bool(same)
        print(f"{r['config']} vs {base['config']}: {r['speedup']:.2f}x faster; "
              f"scores identical: {same}")
    if args.json:
        out = {"argv": sys.argv[1:], "host": platform.node(), "cpus": torch.get_num_threads(),
               "runs": [{k: v for k, v in r.items() if k != "scores"} for r in rows]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
