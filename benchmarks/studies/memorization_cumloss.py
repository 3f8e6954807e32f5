"""Cumulative sample loss (Ravikumar et al., ICML 2025) against the K-member scores.

For each dataset (digits: the 1,257-row training split; MNIST-1D: 4,000 rows), the
estimator's defaults (64 members, rate 0.7, 5 % random labels, ``epochs="auto"``, seed
0) give the fractional scores and, from the pilot's per-epoch recordings,
``cumulative_loss_`` (the summed training loss of the 4 pilot members, which are the
run's first 4 members). Two one-run proxies are compared with the K-member scores:

* ``pilot (4 members)``: the estimator's attribute; it costs no training of its own
  when ``epochs="auto"`` (the pilot runs to set the budget anyway);
* ``one member``: the run's member 0 alone, trained again for ``epochs_`` epochs with
  its loss recorded after every epoch (rows it did not train on are left out, about
  30 %): the proxy's cost on its own.

Reported per proxy: Spearman correlation and cosine similarity with the fractional
score of the 64 members and, when ``memorization_stability.py`` has trained ensemble A
(the same members, extended), with the fractional score of its largest K; random-label
detection (AUROC, FPR at 95 % TPR) next to the K-member scores'. Cost: wall seconds of
the one-member proxy against one member's training alone (the same member, recorded only
at the end) and against the 64-member run, timed alternately in this process (the
machine is shared: ratios, not absolute times, are what carry over).

Writes ``<work>/<dataset>.json`` and ``.npz`` (timings and score vectors) atomically; the
comparisons are made at the end of every call, so a later call picks up a larger
reference. The table goes to ``<out>/cumloss.md``.

Usage (run after memorization_stability.py for the larger reference; 15-20 min per data
set on the shared machine, a few minutes on a quiet core)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/studies/memorization_cumloss.py \
        --out docs/results/memorization_cumloss
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from imod._runtime import FolderInUseError, atomic_write
from imod.memorization import MemorizationEstimator, detection_metrics, load_dataset
from imod.memorization.inputs import build_model
from imod.memorization.runs import pilot_run, train_in_blocks
from imod.memorization.scores import cumulative_loss, subsample_scores
from imod.memorization.stability import score_agreement

sys.path.insert(0, str(Path(__file__).parent))
import memorization_stability as stab  # noqa: E402  (its ensemble A = these members)


def cosine(a, b) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def reference_scores(name: str, stab_work: Path):
    """Fractional scores of the stability study's ensemble A at its largest finished K."""
    path = stab_work / name / "curve.json"
    if not path.exists():
        return None, 0
    k = max(r["K"] for r in json.loads(path.read_text()))
    X, y, rl, model, epochs = stab.prepare(name, stab_work)
    try:
        runs = stab.grow(name, X, y, model, epochs, 0, k, stab_work)  # loads, trains nothing
    except FolderInUseError:  # the stability study is still extending it: no reference
        return None, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return subsample_scores(runs.mask, runs.correct_train, min_out=1).fractional, k


def timed(fn, repeats: int = 2):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def run_dataset(name: str, work: Path) -> tuple[dict, dict]:
    """Fit (or load) one dataset: timings and the score vectors, saved atomically."""
    jpath, npath = work / f"{name}.json", work / f"{name}.npz"
    if jpath.exists() and npath.exists():
        z = np.load(npath, allow_pickle=False)
        return json.loads(jpath.read_text()), {k: z[k] for k in z.files}
    d = load_dataset(name)
    X = d.X.reshape(len(d.X), -1).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MemorizationEstimator(n_members=64, device="cpu", n_threads=1,
                                    random_state=0).fit(X, d.y)
    model = build_model(None, X.shape[1], len(est.classes_))
    t1 = replace(est.training_, torch_threads=1)
    row0 = est.mask_[:1]

    def one_member():  # member 0's training, recorded once at the end as in the run
        return train_in_blocks(model, X, est.y_train_, mask_for_block=lambda b, s: row0,
                               n_members=1, rate=est.rate, training=replace(t1, block_size=1))

    def proxy():  # the same member, its loss recorded after every epoch
        return pilot_run(model, X, est.y_train_, row0, t1, epochs=est.epochs_)

    _, member_s = timed(one_member)
    rec, proxy_s = timed(proxy)
    _, member_s2 = timed(one_member, 1)  # again after, against drift in the machine's load
    info = {"dataset": name, "n": len(X), "epochs": est.epochs_, "K": est.n_members,
            "pilot_s": est.pilot_seconds_, "run_s": est.train_seconds_,
            "member_alone_s": min(member_s, member_s2), "proxy_one_member_s": proxy_s,
            "stability": est.stability_}
    arrays = {"cum_pilot": est.cumulative_loss_, "cum_one": cumulative_loss(np.abs(rec), row0),
              "fractional": est.fractional_, "random_label": est.is_random_label_}
    work.mkdir(parents=True, exist_ok=True)
    atomic_write(npath, lambda fh: np.savez(fh, **arrays))
    atomic_write(jpath, lambda fh: fh.write(json.dumps(info, indent=1, default=float).encode()))
    return info, arrays


def compare(name: str, info: dict, arrays: dict, stab_work: Path) -> dict:
    """Detection and agreement rows, with the stability study's ensemble A if trained."""
    rl = arrays["random_label"].astype(bool)
    scores = {f"fractional, K={info['K']}": arrays["fractional"]}
    ref, ref_k = reference_scores(name, stab_work)
    if ref is not None:
        scores[f"fractional, K={ref_k}"] = ref
    rows = []
    for label, s in scores.items():
        m = detection_metrics(s, rl)
        rows.append({"score": label, "auroc": m["auroc"], "fpr95": m["fpr_at_95tpr"]})
    for label, key in (("pilot (4 members)", "cum_pilot"), ("one member", "cum_one")):
        c = arrays[key]
        m = detection_metrics(c, rl)
        row = {"score": f"cumulative loss, {label}", "auroc": m["auroc"],
               "fpr95": m["fpr_at_95tpr"]}
        for slabel, s in scores.items():
            row[f"spearman vs {slabel}"] = score_agreement(c, s)["spearman"]
            row[f"cosine vs {slabel}"] = cosine(c, s)
        rows.append(row)
    return {**info, "ref_K": ref_k, "rows": rows}


def report(results: list[dict]) -> str:
    lines = []
    for r in results:
        per_member = r["run_s"] / r["K"]
        lines += [f"### {r['dataset']} ({r['n']} training rows, {r['epochs']} epochs)", "",
                  f"Cost: one-member proxy {r['proxy_one_member_s']:.1f} s = "
                  f"{r['proxy_one_member_s'] / r['member_alone_s']:.2f} x that member's "
                  f"training alone ({r['member_alone_s']:.1f} s), "
                  f"{r['proxy_one_member_s'] / per_member:.2f} x one member's share of the "
                  f"{r['K']}-member run ({r['run_s']:.0f} s, "
                  f"{100 * r['proxy_one_member_s'] / r['run_s']:.1f} % of it); the pilot "
                  f"(4 members, sets the epochs): {r['pilot_s']:.0f} s.", ""]
        cols = [c for c in r["rows"][-1] if c not in ("n_used",)]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in r["rows"]:
            lines.append("| " + " | ".join(
                (f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")))
                for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    p.add_argument("--out", type=Path, default=Path("docs/results/memorization_cumloss"))
    p.add_argument("--work", type=Path, default=Path("results/memorization_cumloss"))
    p.add_argument("--stability-work", type=Path, default=Path("results/memorization_stability"),
                   help="ensemble A of memorization_stability.py, if trained (reference)")
    args = p.parse_args()
    torch.set_num_threads(1)
    results = []
    for name in args.datasets:
        info, arrays = run_dataset(name, args.work)
        results.append(compare(name, info, arrays, args.stability_work))
        print(json.dumps(results[-1], indent=1, default=float), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    text = report(results)
    (args.out / "cumloss.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
