"""One-factor-at-a-time ablation of ``IMDetector``'s defaults on ADBench Classical.

Every row changes one setting of a *base* configuration; each row is evaluated on
every (dataset, seed) cell of the chosen half of the 30 Classical datasets under the
ADBench unsupervised protocol of ``imod bench`` (``imod.bench.protocol``: resample /
subsample, stratified 70/30 split, MinMax scaling fitted on the training part, fit
without labels, score the test part, AUROC / AUPR).

The halves are fixed and label-free: the 30 datasets sorted by their ADBench number
(``1_ALOI``, ``2_annthyroid``, ``4_breastw``, ...) and split alternately, positions
0, 2, 4, ... = half ``A`` (selection: defaults are chosen on it), positions 1, 3, ... =
half ``B`` (confirmation only).

Results are appended per cell to ``<out>/cells.csv`` (resumable: cells already there
are skipped; a cell is keyed by the row's full parameter set, so changing ``--base``
never mixes configurations) and summarized in ``<out>/ablation.md`` after each row.

Usage::

    python benchmarks/studies/accuracy_ablation.py --out results/ablation --half A --seeds 1 2 3
    python benchmarks/studies/accuracy_ablation.py --out results/ablation --half B \\
        --rows default robust quantile        # confirm a few rows on half B
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import EARLIER_BEHAVIOUR, classical_halves, dataset_path
from sklearn.metrics import average_precision_score, roc_auc_score

from imod.bench.datasets import load_npz
from imod.bench.detectors import make_detector, outlier_scores
from imod.bench.protocol import ProtocolConfig, Split, prepare_split, seed_everything
from imod.detector import IMDetector

# Squared error, robust z-scores, mean over views: how every default before v4 scored.
_FIRST_SCORING = EARLIER_BEHAVIOUR

# The base configurations rows are measured against (explicit, so the table does not
# silently change meaning when the estimator's defaults change).
BASES: dict[str, dict[str, Any]] = {
    # IMDetector's defaults before this study.
    "v0": {
        "n_members": 8, "hidden_sizes": "auto", "activation": "leaky_relu",
        "preprocessing": "standard", "clip": 1e4, "init": "default", "init_scale": 1.0,
        "lr": 1e-3, "weight_decay": 0.0, "batch_size": 128, "max_updates": 100,
        "max_epochs": 50, "n_recordings": 10, "include_initial": False,
        "scoring": "window", "window": None, "auto_halfwidth": 1, "holdout_rate": 0.5,
        "trim": 0.0, **_FIRST_SCORING,
    },
    # The three-view defaults with the earlier 100-update budget: the base of the
    # first ablation table in docs/accuracy_study.md.
    "v1": {"lr": 1e-3, "batch_size": 128, "max_updates": 100, "trim": 0.0, **_FIRST_SCORING},
    # The defaults after that table (v1 with max_updates=50).
    "v2": {"lr": 1e-3, "batch_size": 128, "max_updates": 50, "trim": 0.0, **_FIRST_SCORING},
    # The trimmed loss and faster training.
    "v3": {"lr": 1e-2, "batch_size": 256, "max_updates": 100, "trim": 0.3, **_FIRST_SCORING},
    # v3 trained and scored with the L1 loss, at the rate and batch size chosen for it.
    "v4": {"lr": 3e-2, "batch_size": 128, "max_updates": 100, "trim": 0.3,
           **_FIRST_SCORING, "loss": "l1"},
    # v4 with log-ratio normalized losses and the max over views.
    "v5": {"lr": 3e-2, "batch_size": 128, "max_updates": 100, "trim": 0.3, "loss": "l1",
           "normalization": "log_ratio", "view_combination": "max",
           "whiten_rows_per_component": None},
    # The current defaults: v5 with the whitening cap and view scores scaled before the max.
    "v6": {"lr": 3e-2, "batch_size": 128, "max_updates": 100, "trim": 0.3, "loss": "l1",
           "normalization": "log_ratio", "view_combination": "scaled_max",
           "whiten_rows_per_component": 2.0},
}

# name -> change from the base. ``{"detector": X}`` rows run a bench detector instead.
ROWS: dict[str, dict[str, Any]] = {
    "default": {},
    "IForest": {"detector": "IForest"},
    # preprocessing
    "prep=none": {"preprocessing": "none"},
    "prep=minmax": {"preprocessing": "minmax"},
    "prep=standard": {"preprocessing": "standard"},
    "prep=robust": {"preprocessing": "robust"},
    "prep=whiten": {"preprocessing": "whiten"},
    "prep=quantile": {"preprocessing": "quantile"},
    "clip=5": {"clip": 5.0},
    # initialization / the initial loss
    "include_initial": {"include_initial": True},
    "init_scale=0.1": {"init_scale": 0.1},
    "init_scale=0.3": {"init_scale": 0.3},
    "init_scale=3": {"init_scale": 3.0},
    "init=orthogonal": {"init": "orthogonal"},
    # scoring
    "scoring=window": {"scoring": "window"},
    "scoring=auto": {"scoring": "auto"},
    "scoring=last": {"scoring": "last"},
    "scoring=odim": {"scoring": "odim"},
    "scoring=holdout": {"scoring": "holdout"},
    "window=early": {"window": (0.0, 1.0)},
    # ensemble / architecture
    "members=4": {"n_members": 4},
    "members=16": {"n_members": 16},
    "hidden=64-32-16": {"hidden_sizes": (64, 32, 16)},
    "hidden=32-8 (shallow)": {"hidden_sizes": (32, 8)},
    "latent=2": {"hidden_sizes": (32, 16, 2)},
    "hidden=odim": {"hidden_sizes": "odim"},
    # optimization
    "lr=3e-4": {"lr": 3e-4},
    "lr=3e-3": {"lr": 3e-3},
    "lr=1e-2": {"lr": 1e-2},
    "lr=3e-2": {"lr": 3e-2},
    "lr=1e-1": {"lr": 1e-1},
    "batch=32": {"batch_size": 32},
    "batch=64": {"batch_size": 64},
    "batch=256": {"batch_size": 256},
    "updates=50": {"max_updates": 50},
    "updates=100": {"max_updates": 100},
    "updates=150": {"max_updates": 150},
    "updates=200": {"max_updates": 200},
    "updates=400": {"max_updates": 400},
    # trimmed loss
    "trim=0": {"trim": 0.0},
    "trim=0.1": {"trim": 0.1},
    "trim=0.2": {"trim": 0.2},
    "trim=0.3": {"trim": 0.3},
    "trim=0.4": {"trim": 0.4},
    "trim=0.5": {"trim": 0.5},
    "lr=1e-3": {"lr": 1e-3},
    # reconstruction loss (training / scoring)
    "score_loss=l1": {"score_loss": "l1"},
    "loss=mse": {"loss": "mse"},
    # normalization of the losses and combination of the views
    "norm=log_ratio": {"normalization": "log_ratio"},
    "views=max": {"view_combination": "max"},
    "norm=log_ratio,views=max": {"normalization": "log_ratio", "view_combination": "max"},
    "norm=robust_z": {"normalization": "robust_z"},
    "views=mean": {"view_combination": "mean"},
    "norm=robust_z,views=mean": {"normalization": "robust_z", "view_combination": "mean"},
    "score_loss=mse": {"score_loss": "mse"},
    "views=scaled_max": {"view_combination": "scaled_max"},
    "whiten_cap=off": {"whiten_rows_per_component": None},
    "whiten_cap=4": {"whiten_rows_per_component": 4.0},
    "whiten_cap=off,views=max": {"whiten_rows_per_component": None, "view_combination": "max"},
    "loss=l1": {"loss": "l1"},
    "loss=l1,score_loss=mse": {"loss": "l1", "score_loss": "mse"},
    # the training neighbourhood of the L1 loss
    "loss=l1,trim=0": {"loss": "l1", "trim": 0.0},
    "loss=l1,trim=0.2": {"loss": "l1", "trim": 0.2},
    "loss=l1,trim=0.4": {"loss": "l1", "trim": 0.4},
    "loss=l1,lr=3e-3": {"loss": "l1", "lr": 3e-3},
    "loss=l1,lr=3e-2": {"loss": "l1", "lr": 3e-2},
    "loss=l1,updates=200": {"loss": "l1", "max_updates": 200},
    "loss=l1,lr=1e-1": {"loss": "l1", "lr": 1e-1},
    "loss=l1,lr=3e-2,trim=0.2": {"loss": "l1", "lr": 3e-2, "trim": 0.2},
    "loss=l1,lr=3e-2,trim=0.4": {"loss": "l1", "lr": 3e-2, "trim": 0.4},
    "loss=l1,lr=3e-2,batch=128": {"loss": "l1", "lr": 3e-2, "batch_size": 128},
    "batch=128": {"batch_size": 128},
    "batch=512": {"batch_size": 512},
}

COLUMNS = ["row", "key", "dataset", "half", "seed", "auroc", "aupr", "seconds", "status", "error"]


# Parameters that do not change the scores (or are set per cell).
_NOT_MODEL = ("random_state", "verbose", "device", "n_threads", "contamination",
              "max_record_samples")


def row_params(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """Full parameters of one row: the estimator's current defaults, then the base,
    then the row's change (so a row's key stays valid when the defaults move)."""
    if "detector" in change:
        return dict(change)
    defaults = {k: v for k, v in IMDetector().get_params().items() if k not in _NOT_MODEL}
    return {**defaults, **base, **change}


# Parameters added after cells were first recorded, with the value every earlier cell
# used: left out of the key at that value, so those cells still resume.
_LATER_PARAMS = EARLIER_BEHAVIOUR


def row_key(params: dict[str, Any]) -> str:
    """Stable identity of a configuration (resumes by it)."""
    params = {k: v for k, v in params.items()
              if not (k in _LATER_PARAMS and v == _LATER_PARAMS[k])}
    return json.dumps(params, sort_keys=True, default=list)


def evaluate_params(params: dict[str, Any], split: Split, seed: int) -> dict[str, Any]:
    """Fit one configuration on the training part and score the test part.

    Mirrors :func:`imod.bench.protocol.evaluate` (same seeding, score direction and
    metrics) but builds ``IMDetector(**params)`` instead of a detector by name. The
    test scores are returned under ``"scores"`` (None on error).
    """
    out: dict[str, Any] = {"auroc": np.nan, "aupr": np.nan, "seconds": np.nan,
                           "status": "ok", "error": "", "scores": None}
    try:
        seed_everything(seed)
        params = dict(params)
        if "detector" in params:
            det = make_detector(params.pop("detector"), seed, split.X_train.shape[1])
        else:
            det = IMDetector(random_state=seed, **params)
        t0 = time.perf_counter()
        det.fit(split.X_train)
        scores = outlier_scores(det, split.X_test)
        out["seconds"] = time.perf_counter() - t0
        if not np.isfinite(scores).all():
            raise ValueError("non-finite scores")
        out["scores"] = scores.astype(np.float32)
        out["auroc"] = float(roc_auc_score(split.y_test, scores))
        out["aupr"] = float(average_precision_score(split.y_test, scores))
    except Exception as exc:  # noqa: BLE001 - recorded, the table goes on
        out["status"], out["error"] = "error", f"{type(exc).__name__}: {exc}"[:300]
    return out


def key_id(key: str) -> str:
    """A short file-name-safe id of a configuration key."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:12]


def save_scores(folder: Path, key: str, dataset: str, seed: int, scores: np.ndarray,
                y: np.ndarray) -> None:
    """Keep one cell's test scores (``<folder>/<key id>/<dataset>_s<seed>.npz``)."""
    d = folder / key_id(key)
    d.mkdir(parents=True, exist_ok=True)
    (d / "key.json").write_text(key)
    stem = dataset.replace("/", "__")  # embedding sets are named "<folder>/<stem>"
    np.savez(d / f"{stem}_s{seed}.npz", scores=scores, y=np.asarray(y, dtype=np.int8))


def summarize(cells: pd.DataFrame, keys: dict[str, str]) -> pd.DataFrame:
    """Mean AUROC / AUPR per row and half (over datasets of seed means), median seconds.

    ``keys`` maps row names to configuration keys; cells are matched by key, so two
    names for one configuration (e.g. ``default`` and ``prep=standard`` on base v0)
    share their cells.
    """
    ok = cells[(cells["status"] == "ok") & cells["key"].isin(set(keys.values()))]
    per_ds = ok.groupby(["key", "half", "dataset"])[["auroc", "aupr", "seconds"]].mean()
    g = per_ds.groupby(["key", "half"])
    tab = g[["auroc", "aupr"]].mean().unstack("half")
    tab.columns = [f"{m}_{h}" for m, h in tab.columns]
    tab["n_datasets"] = g.size().unstack("half").sum(axis=1)
    tab["median_s"] = per_ds.groupby("key")["seconds"].median()
    names = [n for n, k in keys.items() if k in tab.index]
    out = tab.loc[[keys[n] for n in names]]
    out.index = pd.Index(names, name="row")
    return out


def to_markdown(tab: pd.DataFrame, ref: str = "default") -> str:
    """Markdown table with the AUROC change against the ``ref`` row."""
    cols = [c for c in tab.columns if c.startswith(("auroc", "aupr"))]
    head = "| row | " + " | ".join(cols) + " | dAUROC_A | median s |"
    lines = [head, "|---|" + "---:|" * (len(cols) + 2)]
    ref_a = tab.loc[ref, "auroc_A"] if ref in tab.index and "auroc_A" in tab else np.nan
    for name, r in tab.iterrows():
        vals = " | ".join("" if pd.isna(r[c]) else f"{r[c]:.4f}" for c in cols)
        d = r.get("auroc_A", np.nan) - ref_a
        ds = "" if pd.isna(d) else f"{d:+.4f}"
        lines.append(f"| {name} | {vals} | {ds} | {r['median_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the ablation (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/ablation")
    ap.add_argument("--data-dir", default="../shared/adbench")
    ap.add_argument("--half", choices=["A", "B", "both", "E"], default="A",
                    help="A, B (Classical halves), both, or E (the CV/NLP embedding sets)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), help="row names (default all)")
    ap.add_argument("--base", choices=list(BASES), default="v6")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=JSON",
                    help="extra rows: a name and a JSON dict of changes, e.g. "
                         "'robust+init={\"preprocessing\":\"robust\",\"include_initial\":true}'")
    ap.add_argument("--save-scores", action="store_true",
                    help="also keep each cell's test scores and labels in <out>/scores/ "
                         "(for benchmarks/accuracy_combos.py)")
    args = ap.parse_args(argv)

    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row(s) {unknown}; choose from {list(ROWS)} or add one with --set")
    rows = {r: ROWS[r] for r in args.rows}
    for spec in args.set:
        # names may contain "=" themselves: the JSON starts at the first "={"
        name, _, js = spec.partition("={")
        rows[name] = json.loads("{" + js)
    base = BASES[args.base]
    data_dir = Path(args.data_dir)
    halves = classical_halves(data_dir)
    which = ["A", "B"] if args.half == "both" else [args.half]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells_csv = out / "cells.csv"
    (out / "halves.json").write_text(json.dumps(halves, indent=1) + "\n")
    done: set[tuple[str, str, int]] = set()
    if cells_csv.is_file():
        prev = pd.read_csv(cells_csv)
        prev = prev[prev["status"] == "ok"]
        done = {(k, d, int(s)) for k, d, s in zip(prev["key"], prev["dataset"], prev["seed"],
                                                  strict=True)}
    else:
        with open(cells_csv, "w", newline="") as fh:
            csv.writer(fh).writerow(COLUMNS)

    proto = ProtocolConfig()
    splits: dict[tuple[str, int], Split] = {}
    for h in which:
        for name in halves[h]:
            data = load_npz(dataset_path(data_dir, name), name=name)
            for s in args.seeds:
                splits[(name, s)] = prepare_split(data.X, data.y, s, proto)
    half_of = {n: h for h in halves for n in halves[h]}

    keys = {r: row_key(row_params(base, c)) for r, c in rows.items()}
    for rname, change in rows.items():
        params = row_params(base, change)
        key = keys[rname]
        t0 = time.perf_counter()
        with open(cells_csv, "a", newline="") as fh:
            w = csv.writer(fh)
            for (name, s), split in splits.items():
                if (key, name, s) in done:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = evaluate_params(params, split, s)
                w.writerow([rname, key, name, half_of[name], s, r["auroc"], r["aupr"],
                            r["seconds"], r["status"], r["error"]])
                if args.save_scores and r["scores"] is not None:
                    save_scores(out / "scores", key, name, s, r["scores"], split.y_test)
                fh.flush()
                if r["status"] == "ok":
                    done.add((key, name, s))
        cells = pd.read_csv(cells_csv)
        tab = summarize(cells, {r: keys[r] for r in rows if keys[r] in set(cells["key"])})
        (out / "ablation.md").write_text(
            f"Base `{args.base}` = {base}; seeds {args.seeds}; halves in halves.json.\n\n"
            + to_markdown(tab)
        )
        tab.to_csv(out / "ablation.csv")
        print(f"{rname:28s} done in {time.perf_counter() - t0:6.1f} s | "
              + " ".join(f"{c}={tab.loc[rname, c]:.4f}" for c in tab.columns
                         if c.startswith("auroc")), flush=True)


if __name__ == "__main__":
    main()
