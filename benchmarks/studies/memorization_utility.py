"""The critique's central experiment with members that memorize: remove the memorized points.

For each dataset (digits: the 1,257 / 540-row split of ``load_digits_split``; MNIST-1D:
4,000 / 1,000), :func:`imod.memorization.ablation_study` with the estimator's default
member (MLP 512, Adam 3e-3, batch 32, the ``epochs="auto"`` budget of its pilot):

* two scoring runs on the training labels with 5 % replaced at random (the null): 64
  members at rate 0.7 and, at rate 0.95, 192 on digits (every row OUT of 12 members) and
  128 on MNIST-1D (OUT of 8);
* for every distinct set of memorized natural rows, two paired ensembles of
  ``--models`` full-data models on the clean labels: the memorized rows removed vs as
  many random rows removed (member k of both arms shares its initialization and batch
  order); test accuracy difference in percentage points, paired two-sided t-test;
  ``delta`` / ``p_vs_baseline`` compare every row with Feldman & Zhang's setting.

Two tables from the same runs: the utility table (memorized by the null threshold, as
the estimator flags them, and with all four fixes) and the ablation of the four fixes
(rate 0.95, fractional score, null threshold on either side, de-duplicated test set:
test rows whose nearest training row has raw-input cosine >= 0.98 left out), one at a
time against F&Z's setting (rate 0.7, difference score, fixed threshold 0.25, the full
test set), then all four.

Members and utility ensembles go to ``<work>/<dataset>/`` (resumable block stores);
``<work>/<dataset>/table.json`` is written atomically when a dataset is done;
``<out>/utility.md``, ``<out>/ablation.md`` and ``<out>/utility.csv`` collect both
datasets.

Usage (one process per dataset; about 9 min each on one quiet core, estimated; 23 min for
digits and 39 min for MNIST-1D on the shared machine under a load average of 10-13)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/studies/memorization_utility.py \
        --datasets digits --out docs/results/memorization_utility
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
from imod.memorization import ablation_study, load_dataset, relabel_random
from imod.memorization.runs import DEFAULT_HIDDEN, TrainingConfig, derive_seed, epochs_to_fit

FRACTION = 0.05
MEMBERS_095 = {"digits": 192, "mnist1d": 128}  # cut to 128 on MNIST-1D to fit 30 min
DEFAULTS = ("estimator defaults (rate 0.7, fractional, null lower)", 0.7, "fractional",
            "null_lower", False)
# (label, rate, score, threshold kind, de-duplicated test); the first row is F&Z's setting
ROWS = (
    ("F&Z (rate 0.7, difference, threshold 0.25, full test)", 0.7, "difference", "fixed",
     False),
    ("+ rate 0.95", 0.95, "difference", "fixed", False),
    ("+ fractional score", 0.7, "fractional", "fixed", False),
    ("+ null threshold, upper (critique Eq. 3)", 0.7, "difference", "null_upper", False),
    ("+ null threshold, lower (estimator default)", 0.7, "difference", "null_lower", False),
    ("+ de-duplicated test", 0.7, "difference", "fixed", True),
    ("all four fixes, upper null", 0.95, "fractional", "null_upper", True),
    ("all four fixes, lower null", 0.95, "fractional", "null_lower", True),
    DEFAULTS,
    (DEFAULTS[0] + ", de-duplicated test", 0.7, "fractional", "null_lower", True),
)
UTILITY_ROWS = (DEFAULTS[0], DEFAULTS[0] + ", de-duplicated test",
                "all four fixes, lower null", "all four fixes, upper null")


def auto_epochs(X, y, n_classes: int) -> int:
    """The estimator's ``epochs="auto"`` budget (pilot: members 0-3 of block 0, seed 0)."""
    yr, idx = relabel_random(y, n_classes, FRACTION, 0)
    rl = np.zeros(len(y), bool)
    rl[idx] = True
    pilot = balanced_mask(16, len(y), 0.7, random_state=derive_seed(0, 1, 0))[:4]
    e, _ = epochs_to_fit(StackedMLP((X.shape[1], *DEFAULT_HIDDEN, n_classes)), X, yr, pilot,
                         [~rl, rl], TrainingConfig(epochs=1, device="cpu", torch_threads=1))
    return int(e)


def run_dataset(name: str, n_models: int, k095: int, work: Path) -> list[dict]:
    path = work / name / "table.json"
    if path.exists():
        return json.loads(path.read_text())["rows"]
    d = load_dataset(name)
    X = d.X.reshape(len(d.X), -1).astype(np.float32)
    Xt = d.X_test.reshape(len(d.X_test), -1).astype(np.float32)
    t0 = time.perf_counter()
    epath = work / name / "epochs.json"
    if epath.exists():
        epochs = json.loads(epath.read_text())["epochs"]
    else:
        epochs = auto_epochs(X, d.y, int(d.y.max()) + 1)
        epath.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(epath, lambda fh: fh.write(json.dumps({"epochs": epochs}).encode()))
    training = TrainingConfig(epochs=epochs, device="cpu", block_size=16, torch_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ab = ablation_study(None, X, d.y, Xt, d.y_test, n_members={0.7: 64, 0.95: k095},
                            n_utility_models=n_models, alpha=0.05, null_side="lower",
                            random_label_fraction=FRACTION, training=training,
                            out_dir=work / name, rows=ROWS)
    table = ab.table.assign(dataset=name, epochs=epochs, n_models=n_models, k095=k095)
    est = ab.estimators[0.7]
    info = {"rows": table.to_dict(orient="records"), "seconds": time.perf_counter() - t0,
            "n_train": len(X), "n_test": len(Xt),
            "n_dedup_test": int(len(ab.leakage.dedup_test_idx)),
            "in_sample_accuracy_r07": est.in_sample_accuracy_,
            "in_sample_accuracy_r095": ab.estimators[0.95].in_sample_accuracy_,
            "auroc_r07": est.detection_["fractional"]["auroc"],
            "auroc_r095": ab.estimators[0.95].detection_["fractional"]["auroc"]}
    atomic_write(path, lambda fh: fh.write(json.dumps(info, indent=1, default=float).encode()))
    print(json.dumps(info, indent=1, default=float), flush=True)
    return info["rows"]


def md(df, cols) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df[cols].iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c in ("pvalue", "p_vs_baseline"):
                cells.append("nan" if not np.isfinite(v) else f"{v:.2g}")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}" if c == "threshold" else
                             f"{v:.0f}" if c == "n_test" else f"{v:.2f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="*", default=["digits", "mnist1d"],
                   help="data sets to run (none: only rebuild the tables from finished runs)")
    p.add_argument("--models", type=int, default=12, help="paired models per arm (default 12)")
    p.add_argument("--members-095", type=int, default=None,
                   help="members of the rate-0.95 scoring run (default: 192 on digits, every "
                        "row OUT of 12; 128 on MNIST-1D, OUT of 8)")
    p.add_argument("--out", type=Path, default=Path("docs/results/memorization_utility"))
    p.add_argument("--work", type=Path, default=Path("results/memorization_utility"),
                   help="members and utility ensembles (resumable)")
    args = p.parse_args()
    torch.set_num_threads(1)
    for name in args.datasets:
        run_dataset(name, args.models, args.members_095 or MEMBERS_095[name], args.work)
    rows = []
    for name in ("digits", "mnist1d"):  # whatever both runs have finished
        path = args.work / name / "table.json"
        if path.exists():
            rows += json.loads(path.read_text())["rows"]
    df = pd.DataFrame(rows)
    df["d"] = df["diff"] / df["std"]  # paired effect size (Cohen's d_z)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "utility.csv", index=False)
    cols = ["dataset", "setting", "threshold", "n_memorized", "n_test", "acc_removed",
            "acc_random", "diff", "std", "d", "pvalue"]
    util = df[df.setting.isin(UTILITY_ROWS)]
    (args.out / "utility.md").write_text(md(util, cols) + "\n")
    abl = df[df.setting.isin([r[0] for r in ROWS[:8]])]
    (args.out / "ablation.md").write_text(md(abl, cols + ["delta", "p_vs_baseline"]) + "\n")
    print(md(util, cols))
    print(md(abl, cols + ["delta", "p_vs_baseline"]))


if __name__ == "__main__":
    main()
