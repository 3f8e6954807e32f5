"""Regime study: difference vs fractional memorization score across training budget and rate.

For each dataset (digits, MNIST-1D), sampling rate (0.5, 0.7, 0.95) and seed, 5 %
of the training labels are replaced by a random different class (the positives),
``K`` members (balanced masks) train with the estimator's model, optimizer and
batch size, and every member's correctness on every training row is recorded after
every epoch. One run therefore gives the scores at every training budget, from
under-fit (a few epochs) to fit (in-sample accuracy of the random-label rows near 1).
Per (dataset, rate, seed, budget): in-sample accuracy of natural and random-label
rows, AUROC and FPR at 95 % TPR of both definitions at finding the random-label
rows, and the single-rate C-score (held-out accuracy) of each row. Paired tests
(fractional - difference, paired by seed, and pooled over rates) per budget.

Writes ``<out>/runs/<dataset>_r<rate>_s<seed>.json`` (one per run, resumable),
``<out>/regimes.csv`` and ``<out>/regimes.md``.

Usage::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/studies/memorization_regimes.py \
        --out docs/results/memorization_regimes
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from imod.engine import (
    Placement,
    Recorder,
    Recording,
    StackedMLP,
    Task,
    Training,
    balanced_mask,
    correctness,
    train_ensemble,
)
from imod.memorization import (
    detection_metrics,
    load_dataset,
    paired_report,
    relabel_random,
    subsample_scores,
)
from imod.memorization.runs import DEFAULT_HIDDEN, TrainingConfig

BUDGETS = {"digits": (2, 5, 10, 20, 40, 60, 100), "mnist1d": (2, 5, 10, 20, 30, 45, 70)}
MEMBERS = {"digits": {0.5: 64, 0.7: 64, 0.95: 128}, "mnist1d": {0.5: 48, 0.7: 48, 0.95: 96}}


def one_run(name: str, rate: float, seed: int, out: Path) -> dict:
    path = out / "runs" / f"{name}_r{rate:g}_s{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    d = load_dataset(name)
    X = d.X.reshape(len(d.X), -1).astype(np.float32)
    n_classes = int(d.y.max()) + 1
    y, idx = relabel_random(d.y, n_classes, 0.05, seed)
    is_rl = np.zeros(len(y), bool)
    is_rl[idx] = True
    K = MEMBERS[name][rate]
    mask = balanced_mask(K, len(y), rate, random_state=seed)
    cfg = TrainingConfig()
    t0 = time.perf_counter()
    res = train_ensemble(
        Task(StackedMLP((X.shape[1], *DEFAULT_HIDDEN, n_classes)), X, y, mask=mask,
             loss="cross_entropy"),
        Training(optimizer=cfg.optimizer, epochs=max(BUDGETS[name]), batch_size=cfg.batch_size,
                 random_state=seed),
        Placement(device="cpu"), Recording([Recorder("c", correctness)], every="epoch"),
    )
    seconds = time.perf_counter() - t0
    C = res.records["c"].astype(bool)  # (E, K, n)
    rows = []
    for e in BUDGETS[name]:
        c = C[e - 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = subsample_scores(mask, c, min_out=1)
        row = {"dataset": name, "rate": rate, "seed": seed, "members": K, "epochs": e,
               "in_acc_natural": float(c[mask & ~is_rl].mean()),
               "in_acc_random": float(c[mask & is_rl].mean()),
               "c_score_mean": float(np.nanmean(s.p_out[~is_rl]))}
        for score in ("difference", "fractional"):
            m = detection_metrics(getattr(s, score), is_rl)
            row[f"auroc_{score[:4]}"] = m["auroc"]
            row[f"fpr95_{score[:4]}"] = m["fpr_at_95tpr"]
        rows.append(row)
    result = {"rows": rows, "seconds": seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return result


def summarize(df):
    """Mean over seeds per (dataset, rate, epochs) and paired tests frac - diff."""
    import pandas as pd

    out = []
    keys = ["dataset", "epochs"]
    for (ds, e), g in df.groupby(keys):
        for rate, h in list(g.groupby("rate")) + [("all", g)]:
            h = h.sort_values(["rate", "seed"])
            pa = paired_report(h.auroc_frac, h.auroc_diff)
            pf = paired_report(h.fpr95_frac, h.fpr95_diff)
            out.append({
                "dataset": ds, "epochs": e, "rate": rate, "n": len(h),
                "in_acc_nat": h.in_acc_natural.mean(), "in_acc_rnd": h.in_acc_random.mean(),
                "auroc_diff": h.auroc_diff.mean(), "auroc_frac": h.auroc_frac.mean(),
                "d_auroc": pa["mean_diff"], "p_auroc": pa["pvalue"],
                "fpr95_diff": h.fpr95_diff.mean(), "fpr95_frac": h.fpr95_frac.mean(),
                "d_fpr95": pf["mean_diff"], "p_fpr95": pf["pvalue"],
            })
    return pd.DataFrame(out)


def main() -> None:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    p.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7, 0.95])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("docs/results/memorization_regimes"))
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.datasets:
        for seed in args.seeds:
            for rate in args.rates:
                r = one_run(name, rate, seed, args.out)
                print(f"{name} rate {rate} seed {seed}: {r['seconds']:.0f} s", flush=True)
                rows += r["rows"]
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "regimes_runs.csv", index=False)
    table = summarize(df)
    table.to_csv(args.out / "regimes.csv", index=False)
    fmt = {c: "{:.3f}" for c in table.columns if table[c].dtype == float}
    fmt.update({"p_auroc": "{:.2g}", "p_fpr95": "{:.2g}"})
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(fmt.get(c, "{}").format(r[c]) for c in table.columns)
                     + " |")
    (args.out / "regimes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
