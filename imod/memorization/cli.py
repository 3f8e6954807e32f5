"""``imod memorize``: memorization and influence scores, rate study and ablation.

Registered by the root :mod:`imod.cli` through :func:`add_parser`, as every package's command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from imod._runtime import folder_argument

from .report import md_table, summary_lines

__all__ = ["add_parser", "run", "build_parser", "main"]

_EPILOG = """\
outputs (in --out):
  members/              one .npz per block of members + manifest.json (resumable: re-run the
                        same command after a kill; a larger --members extends the run)
  scores.csv            per training example: labels, IN/OUT counts, p_in, p_out, difference,
                        fractional, score, memorized, c_score (held-out accuracy at --rate),
                        lira (online LiRA: mean log likelihood ratio over IN members),
                        cumulative_loss (one-run proxy: summed training loss of the pilot)
  high_influence_pairs.csv   train/test pairs with mem >= --mem-threshold, infl >= --infl-threshold
  leakage_pairs.csv     train/test near-duplicates (cosine >= --dup-threshold)
  summary.md            settings, in-sample accuracy of natural and random-label rows,
                        random-label AUROC / AUPR / FPR@95%TPR, threshold, counts,
                        split-half stability (how many members), cumulative loss, LiRA
  score_distribution.png, random_label_roc.png
  --rate-study:  rate_study.csv/.md (subsampled vs exact leave-one-out on a small subset)
  --ablation:    ablation.csv/.md (the critique's Table 1: original F&Z setup, one fix at a time,
                 all four; utility = acc(removed memorized) - acc(removed random), paired t-test)

examples:
  imod memorize --dataset digits --members 64 --out mem-digits
  imod memorize --dataset mnist1d --members 4000 --block-size 500 --device cuda --out mem-m1d
  imod memorize --dataset digits --ablation --members 64 --utility-members 20 --out abl
"""


def _float_or_null(v: str):
    return v if v == "null" else float(v)


def _int_or_auto(v: str):
    if v == "auto":
        return v
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number, got {v!r}") from None


def add_parser(subparsers, name: str = "memorize", help: str | None = None
               ) -> argparse.ArgumentParser:
    """Add the ``memorize`` subcommand to an argparse subparsers action."""
    if name != "memorize":
        raise ValueError(f"imod.memorization.cli has no command {name!r}")
    p = subparsers.add_parser(
        "memorize",
        help=help or "memorization / influence scores (Feldman & Zhang + the critique's fixes)",
        description="Subsampled memorization and influence estimation on the ensemble engine.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits",
                   help="digits, mnist1d (generated locally, cached) or path.npz with X, y "
                        "[, X_test, y_test] (default: digits)")
    g.add_argument("--cache-dir", type=Path, default=None, help="cache folder for MNIST-1D")
    g = p.add_argument_group("estimator")
    g.add_argument("--members", type=int, default=64, help="K models (default 64)")
    g.add_argument("--rate", type=float, default=0.7, help="sampling rate in (0, 1) (default 0.7)")
    g.add_argument("--score", choices=["fractional", "difference"], default="fractional")
    g.add_argument("--hidden", type=int, nargs="+", default=[512],
                   help="MLP hidden widths (default 512)")
    g.add_argument("--epochs", type=_int_or_auto, default="auto",
                   help="epochs per member, or 'auto' (default): 1.25 x the epochs a pilot of "
                        "4 members needs to fit 99 %% of its own natural and random-label rows "
                        "(at most 200)")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--random-label-fraction", type=float, default=0.05)
    g.add_argument("--alpha", type=float, default=0.05)
    g.add_argument("--null-side", choices=["upper", "lower"], default="lower",
                   help="threshold at the alpha (lower, default: 95 %% of the random-label "
                        "points at or above it) or (1-alpha) (upper, the critique's Eq. 3) "
                        "quantile of the random-label scores")
    g.add_argument("--threshold", type=_float_or_null, default="null",
                   help="'null' (default) or a fixed score threshold")
    g.add_argument("--min-out", type=int, default=3)
    g.add_argument("--block-size", type=int, default=16,
                   help="members per saved block and progress step (default 16)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto")
    g.add_argument("--precision", default=None, help="passed to the engine if it supports it")
    g.add_argument("--mem-threshold", type=float, default=0.25)
    g.add_argument("--infl-threshold", type=float, default=0.15)
    g.add_argument("--dup-threshold", type=float, default=0.98,
                   help="cosine similarity for train/test near-duplicates (raw inputs)")
    g = p.add_argument_group("studies")
    g.add_argument("--rate-study", action="store_true",
                   help="subsampled scores at --rates vs exact leave-one-out on a subset")
    g.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.95])
    g.add_argument("--loo-examples", type=int, default=100, help="subset size for the LOO study")
    g.add_argument("--loo-seeds", type=int, default=16, help="models per left-out example")
    g.add_argument("--ablation", action="store_true", help="the critique's Table 1")
    g.add_argument("--utility-members", type=int, default=20,
                   help="paired models per condition in the utility experiment")
    g.add_argument("--ablation-null-sides", nargs="+", choices=["upper", "lower"], default=None,
                   help="null-threshold rows of the ablation for these sides (default: "
                        "--null-side)")
    g.add_argument("--ablation-members-095", type=int, default=None,
                   help="members of the rate-0.95 scoring run (default: --members)")
    p.add_argument("--out", type=folder_argument, default=Path("imod-memorization"),
                   help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace runs with another configuration in --out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: fastest for the small default MLP; on a "
                        "busy 2-core machine more threads made training 30x slower)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS|local-cluster:N",
                   help="train the member blocks as Dask tasks on a scheduler address or on a "
                        "local cluster of N single-threaded workers (needs imod[distributed]); "
                        "default: in-process")
    p.set_defaults(func=run, _parser=p)
    return p


# Flags that must be whole numbers >= 1 (attribute, flag).
_POSITIVE_INTS = (("members", "--members"), ("block_size", "--block-size"),
                  ("batch_size", "--batch-size"), ("threads", "--threads"),
                  ("loo_examples", "--loo-examples"), ("loo_seeds", "--loo-seeds"),
                  ("utility_members", "--utility-members"),
                  ("ablation_members_095", "--ablation-members-095"))
# Configuration keys of a stored run -> the flags that set them (for a refused resume).
_FLAG_OF_KEY = {
    "train.epochs": "--epochs", "train.batch_size": "--batch-size", "train.optimizer.lr": "--lr",
    "train.optimizer.weight_decay": "--weight-decay", "train.random_state": "--seed",
    "train.precision": "--precision", "rate": "--rate", "extra.rate": "--rate",
    "model.sizes": "--hidden", "extra.model.sizes": "--hidden",
    "extra.random_label_fraction": "--random-label-fraction",
    "data": "--dataset",
    "extra.data": "--dataset", "extra.test": "--dataset", "recorders": "--dataset",
    "block_grid": "--block-size", "extra.block_size": "--block-size",
}


def _value_problem(args: argparse.Namespace) -> str | None:
    """Values argparse cannot check, in command-line words, before any work."""
    from imod._runtime import resolve_device

    for attr, flag in _POSITIVE_INTS:
        v = getattr(args, attr)
        if v is not None and v < 1:
            return f"{flag} must be 1 or more, got {v}"
    if isinstance(args.epochs, int) and args.epochs < 1:
        return f"--epochs must be 'auto' or 1 or more, got {args.epochs}"
    if any(h < 1 for h in args.hidden):
        return f"--hidden widths must be 1 or more, got {' '.join(map(str, args.hidden))}"
    for flag, v in (("--rate", args.rate), *(("--rates", r) for r in args.rates)):
        if not 0.0 < v < 1.0:
            return f"{flag} must be between 0 and 1 (both excluded), got {v:g}"
    if not 0.0 < args.alpha < 1.0:
        return f"--alpha must be between 0 and 1 (both excluded), got {args.alpha:g}"
    if not 0.0 <= args.random_label_fraction < 1.0:
        return f"--random-label-fraction must be in [0, 1), got {args.random_label_fraction:g}"
    if args.threshold == "null" and args.random_label_fraction == 0:
        return "--threshold null needs --random-label-fraction above 0 (the null points)"
    if not args.lr > 0:
        return f"--lr must be above 0, got {args.lr:g}"
    if args.weight_decay < 0 or args.min_out < 0:
        return "--weight-decay and --min-out must be 0 or more"
    if args.scheduler is not None:
        from imod.distributed.backend import check_scheduler

        try:
            check_scheduler(args.scheduler)
        except ValueError as exc:
            return f"--scheduler: {exc}"
    try:
        resolve_device(args.device)
    except ValueError:
        kind = args.device.split(":")[0]
        if kind in ("cuda", "mps"):
            return f"--device {args.device}: this machine has no {kind.upper()} device; use " \
                   "--device auto or cpu"
        return f"--device {args.device} is not a device; use auto, cpu, cuda[:i] or mps"
    return _members_problem(args)


def _members_problem(args: argparse.Namespace) -> str | None:
    """Every example needs --min-out OUT members (and one IN): too few --members is an
    error before training, said with the flags."""
    from .inputs import member_counts

    n_in, n_out, need = member_counts(args.members, args.block_size, args.rate, 1, args.min_out)
    if n_in >= 1 and n_out >= args.min_out:
        return None
    return (f"--members {args.members} is too few for --rate {args.rate:g}: every example would "
            f"be held out of {n_out} members, and --min-out {args.min_out} are needed (and "
            f"trained on by at least 1); use --members {need} or more (in blocks of "
            f"--block-size {args.block_size})")


def _mismatch_words(exc) -> str:
    """A refused resume in command-line words: the flags whose values changed."""
    flags = []
    for key in exc.changed:
        flag = ("the imod code (another version or edit)" if key.startswith("extra.imod")
                else _FLAG_OF_KEY.get(key))
        if flag is not None and flag not in flags:
            flags.append(flag)
    if not flags:
        return exc.cli_message()
    return (f"{exc.folder} holds members trained with other settings ({', '.join(flags)} "
            "changed). Use another --out, or --overwrite to discard them.")


def _usage_problem(args: argparse.Namespace) -> str | None:
    """An --out that is no writable folder, a --dataset path that is no file, bad values
    (a folder made for the check is removed again when a value is bad)."""
    from imod._runtime import output_folder

    name = str(args.dataset)
    if name not in ("digits", "mnist1d"):
        path = Path(name)
        if not path.exists():
            return (f"--dataset {name}: no such file (use digits, mnist1d or a path to an "
                    ".npz file with arrays X, y)")
        if path.is_dir():
            return f"--dataset {name} is a folder; give an .npz file with arrays X, y"
    new = [f for f in (args.out, *args.out.parents) if not f.exists()]
    try:
        output_folder(args.out)
    except ValueError as exc:
        return f"--out: {exc}"
    problem = _value_problem(args)
    if problem is not None:
        for folder in new:  # innermost first; only the empty folders made just now
            with contextlib.suppress(OSError):
                folder.rmdir()
    return problem


def run(args: argparse.Namespace) -> int:
    from imod._runtime import (
        ConfigMismatchError,
        FolderInUseError,
        TrainingDiverged,
        folder_lock,
        torch_threads,
    )

    problem = _usage_problem(args)
    if problem is not None:
        args._parser.print_usage(sys.stderr)
        print(f"imod memorize: error: {problem}", file=sys.stderr)
        return 2
    try:
        with folder_lock(args.out), torch_threads(args.threads):
            return _run(args)
    except ConfigMismatchError as exc:
        print(f"imod memorize: error: {_mismatch_words(exc)}", file=sys.stderr)
        return 2
    except FolderInUseError as exc:
        print(f"imod memorize: error: {exc.cli_message()}", file=sys.stderr)
        return 2
    except TrainingDiverged:
        print(f"imod memorize: error: training diverged: the members' losses on their own rows "
              f"became infinite, NaN or exploded (--lr {args.lr:g}); use a smaller --lr",
              file=sys.stderr)
        return 1
    except (ValueError, ImportError, OSError) as exc:
        print(f"imod memorize: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    """Fit, write the tables and plots, run the studies asked for, write the report."""
    if not 0.0 < args.rate < 1.0:
        raise ValueError(f"--rate must be in (0, 1), got {args.rate}")
    t_all = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    data, X, Xt = _load(args)
    est = _fit(args, data, X, Xt)
    pairs, leak = _write_tables(args, est, X, Xt)
    lines = summary_lines(args, est, data, X, Xt, pairs, leak)
    summary = {"dataset": data.name, "detection": est.detection_, "epochs": est.epochs_,
               "in_sample_accuracy": est.in_sample_accuracy_, "membership": est.membership_,
               "threshold": est.threshold_, "null_meaningful": est.null_meaningful_,
               "n_memorized": int(len(est.memorized_)), "stability": est.stability_}
    if args.rate_study:
        md, summary["rate_study"] = _rate_study(args, est, X, data.y)
        lines += [""] + md
    if args.ablation:
        md, summary["ablation"] = _ablation(args, est, X, data.y, Xt, data.y_test)
        lines += [""] + md
    lines += ["", f"Total {time.perf_counter() - t_all:.0f} s."]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print("\n".join(lines))
    return 0


def _load(args: argparse.Namespace):
    """The data set and its training and test inputs as flat float32 rows."""
    from .data import load_dataset

    data = load_dataset(args.dataset, cache_dir=args.cache_dir, random_state=args.seed)
    X = data.X.reshape(len(data.X), -1).astype(np.float32)
    Xt = data.X_test.reshape(len(data.X_test), -1).astype(np.float32)
    return data, X, Xt


def _optimizer(args: argparse.Namespace):
    from imod.engine import OptimizerSpec

    return OptimizerSpec("adam", lr=args.lr, weight_decay=args.weight_decay)


def _fit(args: argparse.Namespace, data, X, Xt):
    """The estimator from the command line, fitted (members saved in --out/members)."""
    import warnings

    from .estimator import MemorizationEstimator, NotMemorizedWarning

    est = MemorizationEstimator(
        model=tuple(args.hidden), n_members=args.members, rate=args.rate, epochs=args.epochs,
        batch_size=args.batch_size, optimizer=_optimizer(args), score=args.score,
        random_label_fraction=args.random_label_fraction, alpha=args.alpha,
        threshold=args.threshold, null_side=args.null_side, min_out=args.min_out,
        block_size=args.block_size, random_state=args.seed, device=args.device,
        precision=args.precision, out_dir=args.out / "members", scheduler=args.scheduler,
        n_threads=args.threads, overwrite=args.overwrite, progress=not args.no_progress,
    )
    with warnings.catch_warnings():
        # said in the summary in command-line words
        warnings.simplefilter("ignore", NotMemorizedWarning)
        warnings.filterwarnings("ignore", message="the \\(1 - alpha\\) quantile")
        est.fit(X, data.y, Xt, data.y_test)
    return est


def _write_tables(args: argparse.Namespace, est, X, Xt):
    """scores.csv, high_influence_pairs.csv, leakage_pairs.csv and the two plots."""
    from .leakage import find_near_duplicates
    from .plots import plot_random_label_roc, plot_score_distribution

    out = args.out
    est.to_frame().to_csv(out / "scores.csv", index=False)
    pairs = est.high_influence_pairs(args.mem_threshold, args.infl_threshold)
    pairs.to_csv(out / "high_influence_pairs.csv", index=False)
    leak = find_near_duplicates(X, Xt, threshold=args.dup_threshold)
    leak.pairs.to_csv(out / "leakage_pairs.csv", index=False)
    plot_score_distribution(est, out / "score_distribution.png")
    plot_random_label_roc(est, out / "random_label_roc.png")
    return pairs, leak


def _rate_study(args: argparse.Namespace, est, X, y) -> tuple[list[str], list[dict]]:
    """--rate-study: subsampled scores at --rates vs exact leave-one-out on a subset."""
    from .study import leave_one_out_reference, sampling_rate_study

    rng = np.random.default_rng(args.seed)
    n_sub = min(args.loo_examples, len(X))
    sub = np.sort(rng.choice(len(X), size=n_sub, replace=False))
    Xs, ys = X[sub], y[sub]
    if len(np.unique(ys)) < 2:
        raise ValueError("the rate-study subset holds a single class; use more examples")
    hidden = tuple(args.hidden)
    common = dict(epochs=est.epochs_, batch_size=min(args.batch_size, max(8, n_sub // 4)),
                  optimizer=_optimizer(args), random_state=args.seed, device=args.device)
    t0 = time.perf_counter()
    loo = leave_one_out_reference(hidden, Xs, ys, n_seeds=args.loo_seeds,
                                  progress=not args.no_progress, **common)
    rs = sampling_rate_study(hidden, Xs, ys, loo=loo, rates=args.rates,
                             n_target=args.loo_seeds, progress=False, **common)
    rs.to_csv(args.out / "rate_study.csv", index=False)
    md = ["## Sampling rate vs exact leave-one-out", "",
          f"{n_sub} examples, {args.loo_seeds} LOO models per example "
          f"({loo.n_models} models), batch {common['batch_size']}; every rate has >= "
          f"{args.loo_seeds} IN and OUT members per example. "
          f"{time.perf_counter() - t0:.0f} s.", "", md_table(rs)]
    (args.out / "rate_study.md").write_text("\n".join(md) + "\n")
    return md, rs.to_dict(orient="records")


def _ablation(args: argparse.Namespace, est, X, y, Xt, yt) -> tuple[list[str], list[dict]]:
    """--ablation: the critique's Table 1 (one fix at a time, utility by paired t-tests)."""
    import warnings

    from .estimator import NotMemorizedWarning
    from .runs import TrainingConfig
    from .study import ablation_rows, ablation_study

    t0 = time.perf_counter()
    training = TrainingConfig(
        epochs=est.epochs_, batch_size=args.batch_size, optimizer=_optimizer(args),
        block_size=args.block_size, random_state=args.seed, device=args.device,
        precision=args.precision, torch_threads=args.threads, scheduler=args.scheduler,
        overwrite=args.overwrite)
    with warnings.catch_warnings():  # the main run's summary already said it
        warnings.simplefilter("ignore", NotMemorizedWarning)
        ab = ablation_study(
            tuple(args.hidden), X, y, Xt, yt,
            n_members={0.7: args.members, 0.95: args.ablation_members_095 or args.members},
            n_utility_models=args.utility_members,
            fixed_threshold=args.mem_threshold if args.threshold == "null" else args.threshold,
            alpha=args.alpha, null_side=args.null_side,
            random_label_fraction=args.random_label_fraction, dup_threshold=args.dup_threshold,
            training=training, min_out=args.min_out, out_dir=args.out / "ablation",
            progress=not args.no_progress,
            rows=ablation_rows(tuple(args.ablation_null_sides or [args.null_side])),
        )
    ab.table.to_csv(args.out / "ablation.csv", index=False)
    md = ["## Ablation of the four fixes (critique Table 1)", "",
          f"Utility = test accuracy (%) with the memorized natural points removed minus with "
          f"as many random points removed, {args.utility_members} paired models each "
          f"(clean labels); pvalue: paired two-sided t-test; delta / p_vs_baseline: vs the "
          f"first row, paired by seed. Null threshold: upper = (1 - alpha) quantile, lower = "
          f"alpha quantile of the random-label scores (alpha = {args.alpha}). "
          f"{time.perf_counter() - t0:.0f} s.", "", md_table(ab.table)]
    (args.out / "ablation.md").write_text("\n".join(md) + "\n")
    return md, ab.table.to_dict(orient="records")


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser (``python -m imod.memorization.cli``)."""
    parser = argparse.ArgumentParser(prog="imod")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "func"):
        build_parser().print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
