"""The ``imod memorize`` report: summary.md's lines and small formatting helpers.

Kept apart from :mod:`imod.memorization.cli` (argument parsing and the run's flow), so each
module stays one job: what the report says, in command-line words.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["fmt", "md_table", "not_meaningful", "summary_lines"]


def fmt(v, nd=3):
    if isinstance(v, float):
        if not np.isfinite(v):
            return "nan"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.{nd}f}"
    return str(v)


def not_meaningful(est, args) -> str:
    """The reason the null threshold means nothing, in command-line words ("" if it does)."""
    from .inputs import null_problems

    why = null_problems(est)
    if why:
        return ("; ".join(why) + ": the null threshold and the memorized count below are not "
                "meaningful. Train longer: --epochs auto (the default) or a larger --epochs; "
                "or a wider --hidden.")
    if (args.threshold == "null" and args.null_side == "upper" and not len(est.memorized_)
            and est.threshold_ >= np.nanmax(est.scores_)):
        return ("the upper null threshold is the largest score (memorized random-label "
                "points pile up at the maximum), so no natural point can exceed it; use "
                "--null-side lower (95 % of the random-label points at or above the threshold).")
    return ""


def md_table(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i in range(len(df)):
        cells = []
        for c in cols:
            v = df[c].iloc[i]
            cells.append(str(int(v)) if isinstance(v, (np.integer, np.bool_)) else fmt(
                float(v) if isinstance(v, np.floating) else v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_DETECTION_LABELS = {"lira": "LiRA (mean log LR over IN members)",
                     "cumulative_loss": "cumulative loss (pilot members, one run)"}


def summary_lines(args: argparse.Namespace, est, data, X, Xt, pairs, leak) -> list[str]:
    """summary.md without the studies: settings, detection, threshold, stability, LiRA."""
    acc = est.in_sample_accuracy_
    lines = [
        f"# Memorization scores: {data.name}",
        "",
        f"- training examples: {len(X)} ({len(est.random_label_idx_)} relabelled at random), "
        f"test examples: {len(Xt)}",
        f"- members: {est.n_members}, rate {est.rate}, every example IN {int(est.in_counts_.min())}"
        f"-{int(est.in_counts_.max())} / OUT {int(est.out_counts_.min())}-"
        f"{int(est.out_counts_.max())} members",
        f"- model: MLP {X.shape[1]}-{'-'.join(map(str, args.hidden))}-{len(est.classes_)}, Adam "
        f"lr {args.lr}, {est.epochs_} epochs{' (--epochs auto)' if args.epochs == 'auto' else ''}"
        f", batch {args.batch_size}, seed {args.seed}",
        f"- in-sample accuracy (members on the rows they trained on): natural rows "
        f"{100 * acc['natural']:.1f} %, random-label rows {fmt(100 * acc['random_label'], 1)} %",
        f"- mean test accuracy of the members: {100 * est.correct_test_.mean():.2f} %",
        f"- training {est.fit_seconds_:.1f} s wall (pilot {est.pilot_seconds_:.1f} s), "
        f"{est.train_seconds_:.1f} s in block tasks (members trained in this call: "
        f"{est.members_.trained_members}), scoring {est.score_seconds_:.2f} s",
        "",
        "## Random-label detection (random-label points = positives)",
        "",
        "| score | AUROC | AUPR | FPR@95%TPR |",
        "|---|---|---|---|",
    ]
    for name, m in est.detection_.items():
        lines.append(f"| {_DETECTION_LABELS.get(name, name)} | {fmt(m['auroc'])} | "
                     f"{fmt(m['aupr'])} | {fmt(m['fpr_at_95tpr'])} |")
    warn = not_meaningful(est, args)
    if warn:
        lines += ["", f"**WARNING: {warn}**"]
        print(f"imod memorize: warning: {warn}", file=sys.stderr)
    return (lines + _threshold_lines(args, est, pairs, leak) + _stability_lines(est)
            + _membership_lines(est))


def _threshold_lines(args: argparse.Namespace, est, pairs, leak) -> list[str]:
    inclusive = args.threshold == "null" and args.null_side == "lower"
    thr_desc = (f"null, {'1 - alpha' if args.null_side == 'upper' else 'alpha'} quantile "
                f"(alpha={args.alpha})" if args.threshold == "null" else "fixed")
    return [
        "",
        f"## Threshold ({args.score} score)",
        "",
        f"- threshold: {fmt(est.threshold_)} ({thr_desc})"
        + ("" if est.null_meaningful_ or args.threshold != "null"
           else " -- NOT MEANINGFUL, see the warning above"),
        f"- memorized natural points (score {'>=' if inclusive else '>'} threshold): "
        f"{len(est.memorized_)} of {int((~est.is_random_label_).sum())}",
        f"- high-influence pairs (mem >= {args.mem_threshold}, infl >= {args.infl_threshold}): "
        f"{len(pairs)}",
        f"- train/test near-duplicates (cosine >= {args.dup_threshold}): {len(leak.pairs)} pairs, "
        f"{len(leak.duplicate_test_idx)} test examples ({100 * leak.duplicate_fraction:.1f} %)",
    ]


def _stability_lines(est) -> list[str]:
    """How many members: the split-half agreement and the cumulative-loss proxy."""
    from .stability import score_agreement

    st = est.stability_
    rho = score_agreement(est.cumulative_loss_, est.scores_)["spearman"]
    return [
        "",
        "## Members needed and the one-run proxy",
        "",
        f"- split-half stability: the {est.score} scores of two halves of "
        f"{st['members_per_half']} members agree at Spearman {fmt(st['spearman'])} and their "
        f"memorized sets overlap at Jaccard {fmt(st['jaccard'])}: the agreement of two "
        f"independent runs of {st['members_per_half']} members on the curve of "
        f"docs/memorization.md (digits: 0.81 at 32 members, 0.87 at 256; MNIST-1D: 0.91 at "
        f"32, 0.95 at 64, 0.98 at 256); Spearman-Brown predicts "
        f"{fmt(st['spearman_brown'])} for two runs of {est.n_members} (measured: right on "
        f"MNIST-1D, up to 0.07 too high on digits). "
        f"More members (--members) raise it.",
        f"- cumulative loss (the pilot's {min(4, est.n_members, est.block_size)} members, "
        f"{est.epochs_} epochs; column cumulative_loss): Spearman {fmt(rho)} with the "
        f"{est.score} score",
    ]


def _membership_lines(est) -> list[str]:
    nat = ~est.is_random_label_
    return [
        "",
        "## C-scores and LiRA (same members)",
        "",
        f"- C-score at rate {est.rate} (held-out accuracy): mean {np.nanmean(est.c_scores_):.3f}"
        f", natural rows below 0.5: {int((est.c_scores_[nat] < 0.5).sum())}",
        f"- online LiRA membership inference over all (member, row) pairs: AUROC "
        f"{fmt(est.membership_['auroc'])}, TPR at 1 % FPR {fmt(est.membership_['tpr_at_1fpr'])}"
        f", at 0.1 % FPR {fmt(est.membership_['tpr_at_01fpr'])}",
    ]
