"""Members needed: scores of two independent ensembles of K members vs K (the critique's Fig. 9).

For each dataset (digits: the 1,257-row training split; MNIST-1D: 4,000 rows), 5 % of
the labels are replaced by a random different class (seed 0, the null), and two
ensembles A (seed 0) and B (seed 1) of the estimator's default member (MLP 512, Adam
3e-3, batch 32, rate 0.7, the ``epochs="auto"`` budget of a pilot, balanced blocks of
16) train on the *same* labels with independent masks and initializations. Ensemble A
is exactly ``MemorizationEstimator(random_state=0)``'s members. At every K, from the
first K members of each:

* ``spearman``: Spearman correlation of the fractional scores of A and B (all rows),
  and of the difference scores;
* ``jaccard``: overlap of the natural rows each flags by its own null threshold
  (lower side, alpha 0.05, the estimator's default) and the two counts;
* the random-label AUROC of A;
* ``split_half``: what the estimator reports for A's K members
  (:func:`imod.memorization.stability.split_half_stability`: alternate blocks, two
  halves of K/2), to compare with the two-ensemble curve at K/2 and its Spearman-Brown
  prediction with the curve at K.

The ensembles grow in turns (A to K, B to K, then the next K) through
``train_in_blocks`` with a block store per ensemble, so a cut run resumes and the
curve's first points come first. The members, ``epochs.json`` and ``curve.json`` go to
``<work>/<dataset>/`` (default ``results/memorization_stability``, not tracked); the
tables to ``<out>/stability.csv`` and ``<out>/stability.md``, the plot to
``<out>/stability.png``.

Usage (one process per dataset; on one quiet core about 9 min for digits to K = 256 and 6
min for MNIST-1D to K = 128, estimated from about 1.1 s per member; 44-45 min each on the
shared machine under a load average of 10-12)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/studies/memorization_stability.py \
        --datasets digits --out docs/results/memorization_stability
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from imod._runtime import atomic_write
from imod.engine import StackedMLP, balanced_mask
from imod.memorization import detection_metrics, load_dataset, relabel_random, subsample_scores
from imod.memorization.runs import (
    DEFAULT_HIDDEN,
    TrainingConfig,
    derive_seed,
    epochs_to_fit,
    train_in_blocks,
)
from imod.memorization.stability import (
    half_assignment,
    memorized_by_null,
    score_agreement,
    split_half_stability,
)

RATE, BLOCK, FRACTION = 0.7, 16, 0.05
KS = (16, 32, 64, 128, 256, 512)
MAX_K = {"digits": 256, "mnist1d": 128}  # cut to fit the shared 2-core machine


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=1).encode()))


def prepare(name: str, out: Path):
    d = load_dataset(name)
    X = d.X.reshape(len(d.X), -1).astype(np.float32)
    n_classes = int(d.y.max()) + 1
    y, rl_idx = relabel_random(d.y, n_classes, FRACTION, 0)
    rl = np.zeros(len(y), bool)
    rl[rl_idx] = True
    model = StackedMLP((X.shape[1], *DEFAULT_HIDDEN, n_classes))
    path = out / name / "epochs.json"
    if path.exists():
        epochs = json.loads(path.read_text())["epochs"]
    else:  # the estimator's epochs="auto" rule with its pilot (members 0-3 of block 0)
        t0 = time.perf_counter()
        pilot = balanced_mask(BLOCK, len(y), RATE, random_state=derive_seed(0, 1, 0))[:4]
        epochs, _ = epochs_to_fit(model, X, y, pilot, [~rl, rl],
                                  TrainingConfig(epochs=1, device="cpu", torch_threads=1))
        write_json(path, {"epochs": int(epochs), "seconds": time.perf_counter() - t0})
    return X, y, rl, model, int(epochs)


def grow(name, X, y, model, epochs, seed, k, out):
    def make(b: int, size: int) -> np.ndarray:  # the estimator's balanced blocks
        return balanced_mask(size, len(y), RATE, random_state=derive_seed(seed, 1, b))

    cfg = TrainingConfig(epochs=epochs, random_state=seed, device="cpu", block_size=BLOCK,
                         torch_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_in_blocks(model, X, y, mask_for_block=make, n_members=k, rate=RATE,
                               training=cfg, out_dir=out / name / f"ensemble_{seed}",
                               config={"study": "stability", "dataset": name})


def point(name, k, ra, rb, rl, epochs) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sa = subsample_scores(ra.mask[:k], ra.correct_train[:k], min_out=1)
        sb = subsample_scores(rb.mask[:k], rb.correct_train[:k], min_out=1)
    row = {"dataset": name, "K": k, "epochs": epochs}
    frac = score_agreement(sa.fractional, sb.fractional,
                           memorized_by_null(sa.fractional, rl),
                           memorized_by_null(sb.fractional, rl))
    row.update({"spearman": frac["spearman"], "jaccard": frac["jaccard"],
                "n_mem_a": frac["n_memorized_a"], "n_mem_b": frac["n_memorized_b"]})
    row["spearman_diff"] = score_agreement(sa.difference, sb.difference)["spearman"]
    row["auroc_a"] = detection_metrics(sa.fractional, rl)["auroc"]
    half = split_half_stability(ra.mask[:k], ra.correct_train[:k], rl,
                                halves=half_assignment(k, BLOCK), min_out=1)
    row.update({"split_half": half["spearman"], "split_half_sb": half["spearman_brown"],
                "split_half_jaccard": half["jaccard"]})
    return row


def run_dataset(name: str, max_k: int, out: Path) -> list[dict]:
    X, y, rl, model, epochs = prepare(name, out)
    path = out / name / "curve.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    done = {r["K"] for r in rows}
    for k in [k for k in KS if k <= max_k]:
        t0 = time.perf_counter()
        ra = grow(name, X, y, model, epochs, 0, k, out)
        rb = grow(name, X, y, model, epochs, 1, k, out)
        if k not in done:
            row = point(name, k, ra, rb, rl, epochs)
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            write_json(path, rows)
        print(json.dumps(next(r for r in rows if r["K"] == k)), flush=True)
    return rows


def plot(df, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, g in df.groupby("dataset"):
        g = g.sort_values("K")
        line, = axes[0].plot(g.K, g.spearman, "o-", label=f"{name}: two ensembles of K")
        axes[0].plot(g.K, g.split_half, "s--", color=line.get_color(), alpha=0.6,
                     label=f"{name}: split half of K (K/2 vs K/2)")
        axes[1].plot(g.K, g.jaccard, "o-", color=line.get_color(), label=name)
    for ax, title in zip(axes, ("Spearman correlation of the fractional scores",
                                "Jaccard overlap of the memorized sets (null, lower)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("members K")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="*", default=["digits", "mnist1d"],
                   help="data sets to run (none: only rebuild the tables from finished runs)")
    p.add_argument("--max-members", type=int, default=None,
                   help="largest K (default: 256 on digits, 128 on MNIST-1D; K = 16 ... 512 "
                        "with --max-members 512)")
    p.add_argument("--out", type=Path, default=Path("docs/results/memorization_stability"))
    p.add_argument("--work", type=Path, default=Path("results/memorization_stability"),
                   help="members and per-dataset curves (resumable)")
    args = p.parse_args()
    torch.set_num_threads(1)
    for name in args.datasets:
        run_dataset(name, args.max_members or MAX_K[name], args.work)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in ("digits", "mnist1d"):  # the table holds whatever both runs have finished
        path = args.work / name / "curve.json"
        if path.exists():
            rows += json.loads(path.read_text())
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "stability.csv", index=False)
    cols = ["dataset", "K", "epochs", "spearman", "spearman_diff", "jaccard", "n_mem_a",
            "n_mem_b", "auroc_a", "split_half", "split_half_sb", "split_half_jaccard", "seconds"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df[cols].iterrows():
        lines.append("| " + " | ".join(
            f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.tolist()) + " |")
    (args.out / "stability.md").write_text("\n".join(lines) + "\n")
    plot(df, args.out / "stability.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
