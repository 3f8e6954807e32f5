"""Memorization scores from blocks of members trained in-process or on Dask workers.

MNIST-1D (4,000 train / 1,000 test), MLP 40-256-256-10, Adam, ``--epochs`` epochs, batch
128, balanced masks at rate 0.7. Each run trains the same K members (same seeds, same
mask) in blocks and computes, per training example,
``p_in`` (mean correctness over members that trained on it), ``p_out`` (over the others)
and ``mem = p_in - p_out``. Every configuration must give the same scores; the script
reports seconds per configuration and the speed ratios.

CPU comparison (default)::

    python benchmarks/distributed_speed.py --members 64 --epochs 30 \\
        --configs local:2 local:1 dask:1 dask:2

``local:T`` = in-process, T torch threads; ``dask:W`` = a LocalCluster of W
single-threaded worker processes (torch threads 1 each).

GPU (one process, engine chunks on the GPU)::

    python benchmarks/distributed_speed.py --members 4000 --device cuda --backend local

Several GPUs: start one worker per GPU (``dask-cuda-worker`` or ``CUDA_VISIBLE_DEVICES``
per ``dask worker``) and pass ``--scheduler tcp://HOST:8786 --backend dask``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imod.distributed import train_blocks
from imod.engine import Recorder, StackedMLP, balanced_mask, correctness


def load_mnist1d(
    seed: int = 42, path: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D with the package's default arguments (4,000 train / 1,000 test).

    ``path``: an ``.npz`` with ``x, y, x_test, y_test`` saved earlier (for machines
    without the ``mnist1d`` package).
    """
    if path is not None:
        with np.load(path, allow_pickle=False) as z:
            return z["x"], z["y"], z["x_test"], z["y_test"]
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)
    return (d["x"].astype(np.float32), d["y"].astype(np.int64),
            d["x_test"].astype(np.float32), d["y_test"].astype(np.int64))


def memorization(mask: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """p_in, p_out and their difference per example from a mask and a correctness matrix."""
    c = correct.astype(np.float64)
    n_in, n_out = mask.sum(0), (~mask).sum(0)
    p_in = (c * mask).sum(0) / np.maximum(n_in, 1)
    p_out = (c * ~mask).sum(0) / np.maximum(n_out, 1)
    return {"p_in": p_in, "p_out": p_out, "mem": p_in - p_out}


def run_config(name: str, args: argparse.Namespace, data, mask) -> dict:
    X, y, Xt, yt = data
    kind, _, num = name.partition(":")
    n = int(num or 1)
    recorders = [Recorder("correct_train", correctness, reduce="last"),
                 Recorder("correct_test", correctness, X=Xt, y=yt, reduce="last")]
    kw = dict(loss="cross_entropy", optimizer="adam", epochs=args.epochs, batch_size=128,
              random_state=args.seed, device=args.device, precision=args.precision,
              chunk_size=args.chunk_size if args.chunk_size else "auto")
    store = Path(tempfile.mkdtemp(prefix=f"imod-bench-{kind}{n}-")) if args.store else None
    old = torch.get_num_threads()
    t0 = time.perf_counter()
    if kind == "local":
        torch.set_num_threads(n)
        try:
            res = train_blocks(StackedMLP((40, 256, 256, 10)), X, y, mask=mask,
                               block_size=args.block_size, recorders=recorders, store=store,
                               backend="local", **kw)
        finally:
            torch.set_num_threads(old)
    elif kind == "dask":
        client = args.scheduler or f"local-cluster:{n}"
        from imod.distributed import open_client

        with open_client(client) as cl:
            cl.wait_for_workers(n if not args.scheduler else 1, timeout=120)
            # Warm the workers (imports) outside the timing, as a long-lived cluster would be.
            cl.run(lambda: __import__("imod.distributed") and None)
            t0 = time.perf_counter()
            res = train_blocks(StackedMLP((40, 256, 256, 10)), X, y, mask=mask,
                               block_size=args.block_size, recorders=recorders, store=store,
                               backend="dask", client=cl,
                               torch_threads=None if args.device != "cpu" else 1, **kw)
    else:
        raise SystemExit(f"unknown config {name!r}: use local:T or dask:W")
    seconds = time.perf_counter() - t0
    scores = memorization(res.mask, res.records["correct_train"])
    test_acc = float(res.records["correct_test"].mean())
    return {"config": name, "seconds": seconds, "blocks": len(res.trained),
            "task_seconds": float(sum(res.task_seconds.values())),
            "workers": sorted(set(res.workers.values())),
            "test_accuracy": test_acc, "scores": scores}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=512, help="K (default 512)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--block-size", type=int, default=None,
                   help="members per task (default: K / 8, at least 1)")
    p.add_argument("--configs", nargs="+", default=["local:2", "local:1", "dask:1", "dask:2"],
                   metavar="KIND:N", help="local:T (in-process, T threads) or dask:W")
    p.add_argument("--backend", choices=["local", "dask"], default=None,
                   help="shortcut: one configuration, local:<threads> or dask:<workers>")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address for dask:*")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--chunk-size", type=int, default=None, help="engine chunk (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", action="store_true", help="write blocks to a temp store")
    p.add_argument("--data", type=Path, default=None,
                   help="MNIST-1D as .npz (x, y, x_test, y_test) instead of generating it")
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = p.parse_args(argv)
    if args.backend is not None:
        n = torch.get_num_threads() if args.backend == "local" else 1
        args.configs = [f"{args.backend}:{n}"]
    args.block_size = args.block_size or max(1, args.members // 8)

    data = load_mnist1d(path=args.data)
    mask = balanced_mask(args.members, len(data[1]), 0.7, random_state=args.seed)
    print(f"MNIST-1D {len(data[1])} train / {len(data[3])} test; K={args.members}, "
          f"{args.epochs} epochs, blocks of {args.block_size}, device {args.device}, "
          f"{args.precision}", flush=True)
    rows = []
    for cfg in args.configs:
        r = run_config(cfg, args, data, mask)
        rows.append(r)
        s = r["scores"]
        print(f"{cfg:>8}: {r['seconds']:8.1f} s  ({r['blocks']} blocks, "
              f"{len(r['workers']) or 1} worker(s))  test acc {r['test_accuracy']:.3f}  "
              f"mean p_in {s['p_in'].mean():.3f} p_out {s['p_out'].mean():.3f} "
              f"mem {s['mem'].mean():.3f}  (mem >= 0.25: {(s['mem'] >= 0.25).mean():.1%})",
              flush=True)
    base = rows[0]
    for r in rows[1:]:
        diff = max(float(np.abs(r["scores"][k] - base["scores"][k]).max()) for k in base["scores"])
        print(f"{base['config']} / {r['config']}: speed ratio {base['seconds'] / r['seconds']:.2f}"
              f"; max |score difference| {diff:.3g}")
    if args.json:
        out = [{k: v for k, v in r.items() if k != "scores"}
               | {f"mean_{k}": float(v.mean()) for k, v in r["scores"].items()} for r in rows]
        args.json.write_text(json.dumps({"argv": sys.argv[1:], "runs": out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
