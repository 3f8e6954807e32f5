"""Out-of-fold selection of IMDetector's default (issue 16), from stored ``imod bench`` cells.

Every candidate setting (``candidates.py``) and every peer is scored once on every one of
the 48 development sets, seeds 1-3, ``imod bench`` inductive protocol; the cells are read
from the ``results.csv`` of the given bench output folders. Then, for each of the 5 fixed
folds (``folds.json``), the **rule** below picks one candidate from the other 4 folds only,
and that candidate's cells on the left-out fold are recorded: the out-of-fold (OOF) table.
Each dataset is thus scored by a candidate chosen without it. Peers are reported on the
same left-out folds; "best peer" on a fold is the peer with the highest mean AUROC on that
fold itself (chosen with hindsight, the hardest comparison).

The rule (fixed with the folds, before any candidate was scored):
    per dataset, average AUROC over seeds 1-3; per candidate, the mean of these over the
    training folds' datasets (Classical and CV/NLP pooled, one vote per dataset); the
    highest mean wins; a difference under 0.0005 is a tie, broken by the lower median
    fit+score seconds per cell over those datasets. A candidate with a failed or missing
    cell on a training dataset is not eligible.
The default after the study is the same rule applied to all 5 folds (in-sample).

Round 3 adds a time constraint (``--max-time-ratio R``, written before round 3 was
scored; the issue's time target is R = 2): a candidate is eligible only if, on the
training folds' Classical sets and again on their CV/NLP sets, the median of its per-set
median seconds is at most R times the same median of IForest's, IForest running in the
same ``imod bench`` folder (so both see the same machine and load). Without the option
the rule is round 1's.

Usage::

    python benchmarks/studies/fold_selection.py --candidates results/i16/cand/c* \\
        --peers results/i16/peers results/i16/peers_slow results/i16/peers_extra \\
        results/i16/peers_mcd --timing results/i16/timing --out docs/results/oof
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from _common import fold_of, kind_of
from scipy.stats import wilcoxon

from imod.bench.runner import read_results
from imod.bench.summary import to_markdown

TIE = 5e-4
KINDS = {"classical": "Classical (30)", "embedding": "CV/NLP (18)"}


def cell_table(folders: list[Path]) -> pd.DataFrame:
    """Per (detector, dataset): mean AUROC, AUPR and fit+score seconds over seeds 1-3."""
    frames = [read_results(Path(f) / "results.csv") for f in folders]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["seed"].isin([1, 2, 3]) & df["dataset"].isin(list(fold_of()))]
    df = df.drop_duplicates(["dataset", "detector", "seed"], keep="last")
    df["cell_seconds"] = df["fit_seconds"] + df["score_seconds"]
    ok = df[df["status"] == "ok"]
    agg = ok.groupby(["detector", "dataset"]).agg(
        auroc=("auroc", "mean"), aupr=("aupr", "mean"),
        seconds=("cell_seconds", "median"), n_seeds=("seed", "nunique")).reset_index()
    agg = agg[agg["n_seeds"] == 3]
    agg["fold"] = agg["dataset"].map(fold_of())
    agg["kind"] = agg["dataset"].map(kind_of())
    agg["detector"] = agg["detector"].map(short_name)
    return agg


def short_name(detector: str) -> str:
    """``benchmarks.studies.candidates:c03_x`` -> ``c03_x``."""
    return detector.rsplit(":", 1)[-1]


def criterion(table: pd.DataFrame, candidates: list[str]) -> pd.DataFrame:
    """Each candidate's mean AUROC over all 48 sets and median seconds per cell."""
    sub = table[table["detector"].isin(candidates)]
    out = sub.groupby("detector").agg(**{"mean AUROC": ("auroc", "mean"),
                                         "median s/cell": ("seconds", "median")})
    return out.sort_values("mean AUROC", ascending=False).reset_index()


def time_table(folders: list[Path]) -> pd.DataFrame:
    """Per (detector, dataset, folder): median seconds over seeds 1-3 of every detector and
    of IForest in the same folder (``iforest``; NaN where IForest did not run there)."""
    frames = []
    for folder in folders:
        df = read_results(Path(folder) / "results.csv")
        df = df[(df["status"] == "ok") & df["seed"].isin([1, 2, 3])].copy()
        df["cell_seconds"] = df["fit_seconds"] + df["score_seconds"]
        med = df.groupby(["detector", "dataset"])["cell_seconds"].median().reset_index()
        forest = med[med["detector"] == "IForest"].set_index("dataset")["cell_seconds"]
        med = med[med["detector"] != "IForest"].copy()
        med["iforest"] = med["dataset"].map(forest)
        med["detector"] = med["detector"].map(short_name)
        med["kind"] = med["dataset"].map(kind_of())
        frames.append(med)
    return pd.concat(frames, ignore_index=True)


def time_ratio(times: pd.DataFrame, candidate: str, datasets: set[str]) -> dict[str, float]:
    """Per kind: median seconds of ``candidate`` over ``datasets`` / IForest's (same runs)."""
    rows = times[(times["detector"] == candidate) & times["dataset"].isin(datasets)]
    return {kind: float(sub["cell_seconds"].median() / sub["iforest"].median())
            for kind, sub in rows.groupby("kind")}


def choose(table: pd.DataFrame, candidates: list[str], datasets: set[str],
           times: pd.DataFrame | None = None, max_ratio: float | None = None) -> str:
    """The rule: highest mean AUROC over ``datasets``; ties (< TIE) to the faster one.
    With ``max_ratio``, only candidates within that many times IForest's median seconds
    on each kind of the ``datasets`` (same runs, ``times``) are eligible."""
    scores = []
    for c in candidates:
        rows = table[(table["detector"] == c) & table["dataset"].isin(datasets)]
        if set(rows["dataset"]) != datasets:
            continue
        if max_ratio is not None:
            ratios = time_ratio(times, c, datasets)
            kinds = {kind_of()[d] for d in datasets}
            if set(ratios) != kinds or not all(r <= max_ratio for r in ratios.values()):
                continue
        scores.append((c, rows["auroc"].mean(), rows["seconds"].median()))
    if not scores:
        raise SystemExit("no candidate has every training cell (within the time limit)")
    best = max(s[1] for s in scores)
    tied = [s for s in scores if s[1] >= best - TIE]
    return min(tied, key=lambda s: s[2])[0]


def summarize(table: pd.DataFrame, names: list[str], kind: str) -> pd.DataFrame:
    """Mean AUROC / AUPR, average rank (among ``names``), median seconds on ``kind``, and
    the one-sided Wilcoxon p that ``names[0]`` beats each detector on per-set AUROC."""
    sub = table[(table["kind"] == kind) & table["detector"].isin(names)]
    wide = sub.pivot(index="dataset", columns="detector", values="auroc").reindex(columns=names)
    ranks = wide.rank(axis=1, ascending=False)  # a missing cell is left out of that set
    out = pd.DataFrame({
        "AUROC": wide.mean(),
        "AUPR": sub.pivot(index="dataset", columns="detector",
                          values="aupr").reindex(columns=names).mean(),
        "avg rank": ranks.mean(),
        "median s/cell": sub.groupby("detector")["seconds"].median().reindex(names),
        "sets": wide.notna().sum(),
        f"p ({names[0]} >)": [wilcoxon_p(wide[names[0]], wide[n]) for n in names],
    })
    out = out.sort_values("AUROC", ascending=False)
    # A detector run on under half of the sets (too slow to finish) is listed, not tabled.
    return out[out["sets"] >= 0.5 * len(wide)]


def wilcoxon_p(a: pd.Series, b: pd.Series) -> float:
    """One-sided Wilcoxon signed-rank p that ``a`` > ``b`` on the sets both have."""
    both = pd.concat([a, b], axis=1).dropna()
    diff = both.iloc[:, 0] - both.iloc[:, 1]
    if a.name == b.name or len(diff) < 2 or not diff.any():
        return np.nan
    return float(wilcoxon(diff, alternative="greater").pvalue)


def fmt(df: pd.DataFrame, index: bool = True) -> str:
    """Markdown with 4 decimals (3 for seconds and p, 2 for ranks)."""
    if index:
        df = df.reset_index().rename(columns={"index": "detector"})
    two = ("rank", "points", "x IForest")
    digits = [2 if any(t in c for t in two) else 0 if c in ("sets", "folds chosen")
              else 3 if ("s/cell" in c or c.startswith("p ")) else 4 for c in df.columns]
    return to_markdown(df, digits=digits)


def ablation(cand: pd.DataFrame, candidates: list[str], chosen: list[str]) -> pd.DataFrame:
    """Each candidate in-sample: its change, means per kind and over all 48 sets, the
    difference to ``c00_default`` and how many OOF folds chose it."""
    from candidates import CANDIDATES, ROUND3, ROUND3_RANDOM, ROUND4, ROUND5, ROUND6

    CANDIDATES = {**CANDIDATES, **ROUND3, **ROUND3_RANDOM, **ROUND4, **ROUND5, **ROUND6}

    rows = []
    for c in candidates:
        sub = cand[cand["detector"] == c]
        by = sub.groupby("kind")[["auroc", "aupr"]].mean()
        rows.append({
            "candidate": c, "change": ", ".join(f"{k}={v}" for k, v in
                                               CANDIDATES.get(c, {}).items()) or "-",
            "AUROC Classical": by["auroc"].get("classical", np.nan),
            "AUPR Classical": by["aupr"].get("classical", np.nan),
            "AUROC CV/NLP": by["auroc"].get("embedding", np.nan),
            "AUPR CV/NLP": by["aupr"].get("embedding", np.nan),
            "AUROC all 48": sub["auroc"].mean(), "sets": len(sub),
            "folds chosen": chosen.count(c),
        })
    out = pd.DataFrame(rows)
    base = out.loc[out["candidate"] == "c00_default", "AUROC all 48"]
    out["vs c00 (points)"] = 100 * (out["AUROC all 48"] - (base.iloc[0] if len(base) else np.nan))
    return out.sort_values("AUROC all 48", ascending=False)


def write_timing(folder: Path, out: Path) -> None:
    """Median fit+score seconds per cell by kind, and the ratio to IForest in that run."""
    df = read_results(folder / "results.csv")
    df = df[df["status"] == "ok"].copy()
    df["cell_seconds"] = df["fit_seconds"] + df["score_seconds"]
    df["kind"] = df["dataset"].map(kind_of()).map(KINDS)
    df["detector"] = df["detector"].map(short_name)
    med = df.pivot_table(index="kind", columns="detector", values="cell_seconds",
                         aggfunc="median")
    table = pd.concat({"median s/cell": med, "x IForest": med.div(med["IForest"], axis=0)},
                      axis=1)
    table.columns = [f"{b} ({a})" for a, b in table.columns]
    seeds = sorted(int(x) for x in df["seed"].unique())
    out.mkdir(parents=True, exist_ok=True)
    (out / "timing.md").write_text(
        f"# Time in one run ({folder}, seeds {seeds}, cells interleaved)\n\n"
        + fmt(table.reset_index().rename(columns={"kind": "sets"}), index=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=Path, nargs="+", required=True,
                        help="imod bench output folder(s) with the candidates' cells")
    parser.add_argument("--peers", type=Path, nargs="+", required=True,
                        help="imod bench output folder(s) with the peers' cells")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timing", type=Path, default=None,
                        help="imod bench folder where IForest and candidates ran together: "
                             "their median seconds and ratios go to OUT/timing.md")
    parser.add_argument("--max-time-ratio", type=float, default=None,
                        help="round 3's time constraint: eligible only within this many "
                             "times IForest's median seconds per kind (same run folder)")
    args = parser.parse_args(argv)
    if args.timing is not None:
        write_timing(args.timing, args.out)

    cand = cell_table(args.candidates)
    cand = cand[cand["detector"].str.match(r"c\d\d_")]  # not the IForest run beside them
    times = time_table(args.candidates) if args.max_time_ratio is not None else None
    pick = dict(times=times, max_ratio=args.max_time_ratio)
    peers = cell_table(args.peers)
    peers = peers[~peers["detector"].str.match(r"c\d\d_|IMDetector")]
    candidates = sorted(cand["detector"].unique())
    peer_names = sorted(peers["detector"].unique())
    all_sets = set(fold_of())
    args.out.mkdir(parents=True, exist_ok=True)

    # The out-of-fold procedure.
    oof_rows, fold_rows = [], []
    for k in range(5):
        test_sets = {d for d, f in fold_of().items() if f == k}
        chosen = choose(cand, candidates, all_sets - test_sets, **pick)
        held = cand[(cand["detector"] == chosen) & (cand["fold"] == k)].copy()
        held["chosen"] = chosen
        oof_rows.append(held)
        fold_peers = peers[peers["fold"] == k]
        peer_means = fold_peers.groupby("detector")["auroc"].mean()
        complete = fold_peers.groupby("detector")["dataset"].nunique() == len(test_sets)
        peer_means = peer_means[complete.reindex(peer_means.index, fill_value=False)]
        best_peer = peer_means.idxmax() if len(peer_means) else None
        fold_rows.append({
            "fold": k, "chosen": chosen, "sets": len(held),
            "OOF AUROC": held["auroc"].mean(), "OOF AUPR": held["aupr"].mean(),
            "best peer": best_peer, "best peer AUROC": peer_means.max() if best_peer else np.nan,
            "IForest AUROC": peer_means.get("IForest", np.nan),
            "OOF >= best peer": bool(best_peer) and bool(held["auroc"].mean()
                                                          >= peer_means.max()),
        })
    oof = pd.concat(oof_rows, ignore_index=True)
    oof["detector"] = "IMDetector (OOF)"
    oof[["fold", "dataset", "kind", "chosen", "auroc", "aupr", "seconds"]].to_csv(
        args.out / "oof_cells.csv", index=False, float_format="%.5f")
    folds = pd.DataFrame(fold_rows)
    folds.to_csv(args.out / "oof_folds.csv", index=False, float_format="%.5f")

    final = choose(cand, candidates, all_sets, **pick)
    both = pd.concat([oof.drop(columns="chosen"), peers], ignore_index=True)
    lines = ["# Out-of-fold selection (issue 16)", "",
             "Generated by `benchmarks/studies/fold_selection.py`; seeds 1-3, `imod bench` "
             "inductive protocol.", "", "## Per left-out fold", "", fmt(folds, index=False), "",
             f"Folds where the OOF detector >= the best peer: "
             f"{int(folds['OOF >= best peer'].sum())} of 5.", "",
             f"The rule applied to all 48 sets (the default after the study): **{final}**.",
             "", "Its criterion on all 48 sets, the five best (a tie below "
             f"{TIE} goes to the lower median seconds, which carry the machine's load):", "",
             fmt(criterion(cand, candidates).head(5), index=False), ""]
    if times is not None:
        ratios = [{"candidate": c, **{f"x IForest, {KINDS[k]}": r for k, r in
                                      time_ratio(times, c, all_sets).items()}}
                  for c in candidates]
        lines += [f"Time on all 48 sets (median s/cell over IForest's in the same folder; "
                  f"eligible at most {args.max_time_ratio:g}x on each kind):", "",
                  fmt(pd.DataFrame(ratios), index=False), ""]
    names = ["IMDetector (OOF)", *peer_names]
    for kind, title in KINDS.items():
        table = summarize(both, names, kind)
        left = [n for n in names if n not in table.index]
        lines += [f"## Out-of-fold, {title}", "", fmt(table), "",
                  f"Run on under half of these sets (not tabled): {', '.join(left) or '-'}.",
                  ""]
    inside = pd.concat([cand, peers], ignore_index=True)
    for kind, title in KINDS.items():
        lines += [f"## In-sample, the default after the study ({final}) and every peer, "
                  f"{title}", "", fmt(summarize(inside, [final, *peer_names], kind)), ""]
    lines += ["## The candidates in-sample (the ablation around the default)", "",
              fmt(ablation(cand, candidates, folds["chosen"].tolist()), index=False), ""]
    (args.out / "oof.md").write_text("\n".join(lines))
    wide = inside.pivot(index="dataset", columns="detector", values="auroc")
    wide.insert(0, "fold", wide.index.map(fold_of()))
    wide.insert(1, "kind", wide.index.map(kind_of()))
    wide.sort_values(["kind", "fold"]).to_csv(args.out / "auroc_per_dataset.csv",
                                              float_format="%.4f")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
