"""``imod bench`` and ``imod list``: the benchmark's commands, registered by :mod:`imod.cli`.

Nothing heavy is imported at module level: the root parser builds these parsers without
loading pandas, scikit-learn or torch; the commands import what they use when they run.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from imod._runtime import folder_argument

__all__ = ["add_parser", "parse_seeds"]

# The strongest PyOD peers that cost seconds, not minutes, per cell (docs/accuracy_study.md).
DEFAULT_BASELINES = ["IForest", "ECOD", "COPOD", "KNN", "LOF", "PCA", "HBOS", "CBLOF", "GMM",
                     "INNE", "KDE"]
DEFAULT_OUT = "imod-results"

_BENCH_EPILOG = """\
protocol (ADBench, Han et al. NeurIPS 2022, official defaults):
  Datasets under --min-rows (1000) rows are resampled WITH replacement to 1000 rows and
  datasets over --max-rows (10000) are subsampled to 10000, both before the split and seeded
  by the seed. Then a stratified 70/30 split, a MinMaxScaler fitted on the training part,
  fit(X_train) without labels, scores on X_test, AUROC (roc_auc_score) and AUPR
  (average_precision_score). Official oddities you can switch: resampling before the split
  lets copies of a row land in both parts (--no-resample-before-split splits first and
  resamples only the training part); --dedupe-test drops test rows equal to a training row.
  --mode transductive fits and scores all rows, as inlier-memorization papers report.

datasets:
  Suites: mini (bundled, offline), classical, cv (CV_by_ResNet18), nlp (NLP_by_BERT), all.
  Names as users know them: 'cardio' or '6_cardio' (case-insensitive; 'Cardiotocography' is
  7_Cardiotocography; names copied from 'imod list' work with their * and ? marks);
  'CV_by_ViT/MVTec-AD_bottle' for a folder variant. Files are looked up in --data-dir
  (or $IMOD_ADBENCH_DIR, with subfolders Classical, CV_by_ResNet18, CV_by_ViT, NLP_by_BERT,
  NLP_by_RoBERTa), the cache (--cache-dir, else $IMOD_CACHE_DIR/adbench, default
  ~/.cache/imod/adbench) and the bundled mini set.
  --download fetches missing official files into the cache from $IMOD_ADBENCH_URL (default
  the ADBench GitHub repository), checking their SHA-256; files without a known SHA-256
  are never downloaded (put them in --data-dir yourself).

output:
  OUT/results.csv (one row per dataset/detector/seed cell, appended as cells finish),
  OUT/run.json (configuration), OUT/summary.md, OUT/summary.csv, OUT/auroc_heatmap.png,
  OUT/rank_plot.png. Re-running with the same --out resumes: finished cells are skipped,
  failed ones retried; a different protocol, changed dataset files, other versions of
  imod or its libraries, other imod code or other detector parameters are refused unless
  --overwrite. One run at a time per --out: a
  second run on the same folder is refused while the first works. The heatmap marks with *
  a value averaged over fewer seeds than the run asked for. A run in which every cell
  failed exits with status 1 and ranks nothing.

examples:
  imod bench
  imod bench --datasets classical --detectors IMDetector IForest ECOD --seeds 3 --out results/
  imod bench --datasets cardio Pima --detectors IForest mypkg.models:MyDetector --seeds 1 2 5
"""


# Seeds reach numpy's RandomState, which takes 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def _whole(text: str) -> int:
    """A seed (or a seed count) from the command line, checked before any list is made."""
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not 0 <= n <= MAX_SEED:
        raise ValueError(f"seeds must be between 0 and {MAX_SEED} (numpy's seed range), got {n}")
    return n


def parse_seeds(values: Sequence[str]) -> list[int]:
    """``["3"]`` -> 1..3; ``["1", "2", "5"]`` -> those; ``["4-6"]`` -> 4..6.

    Raises
    ------
    ValueError
        In command-line words, for non-integers, ranges out of order, or seeds outside
        0 .. 2**32 - 1.

    Examples
    --------
    >>> parse_seeds(["3"]), parse_seeds(["4-6", "9"])
    ([1, 2, 3], [4, 5, 6, 9])
    >>> parse_seeds(["1.5"])
    Traceback (most recent call last):
    ...
    ValueError: '1.5' is not a whole number
    """
    if len(values) == 1 and "-" not in values[0]:
        n = _whole(values[0])
        if n < 1:
            raise ValueError(f"--seeds N needs N >= 1, got {n}")
        seeds = list(range(1, n + 1))
    else:
        seeds = []
        for v in values:
            if "-" in v.strip("-"):
                a, b = (_whole(x) for x in v.split("-", 1))
                if b < a:
                    raise ValueError(f"seed range {v!r} is empty")
                seeds += list(range(a, b + 1))
            else:
                seeds.append(_whole(v))
    return list(dict.fromkeys(seeds))


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="folder with ADBench .npz files (default: $IMOD_ADBENCH_DIR)")
    p.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="download cache (default: $IMOD_CACHE_DIR/adbench, else "
                        "~/.cache/imod/adbench)")


def add_parser(sub: argparse._SubParsersAction, name: str = "bench",
               help: str | None = None) -> argparse.ArgumentParser:
    """Add the ``bench`` or the ``list`` subcommand to an argparse subparsers action."""
    if name == "list":
        return _add_list_parser(sub, help)
    if name != "bench":
        raise ValueError(f"imod.bench.cli has no command {name!r}")
    return _add_bench_parser(sub, help)


def _add_bench_parser(sub: argparse._SubParsersAction,
                      help: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench", help=help or "run the ADBench protocol on detectors",
        description="Benchmark outlier detectors on ADBench datasets (unsupervised protocol).",
        epilog=_BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["mini"], metavar="NAME",
                   help="suites and/or dataset names (default: mini)")
    p.add_argument("--detectors", nargs="+", default=None, metavar="NAME",
                   help="detector names: IMDetector, IForest, ECOD, COPOD, KNN, LOF, PCA, HBOS, "
                        "OCSVM, CBLOF, LODA, AutoEncoder, DeepSVDD, MCD, GMM, INNE, KDE, DIF, "
                        "LUNAR, or 'pkg.module:Class' "
                        f"(default: IMDetector {' '.join(DEFAULT_BASELINES)}; IMDetector is "
                        "left out if it cannot be imported)")
    p.add_argument("--seeds", nargs="+", default=["3"], metavar="SEED",
                   help="one number N = seeds 1..N; several numbers or ranges like 4-6 = "
                        "those seeds (default: 3, i.e. 1 2 3 as in ADBench)")
    p.add_argument("--out", type=folder_argument, default=Path(DEFAULT_OUT), metavar="DIR",
                   help=f"output folder (default: ./{DEFAULT_OUT})")
    _add_data_options(p)
    p.add_argument("--download", action="store_true",
                   help="download missing official files (SHA-256 checked) into the cache")
    p.add_argument("--mode", choices=["inductive", "transductive"], default="inductive",
                   help="inductive: fit on 70%% train, score 30%% test (ADBench, default); "
                        "transductive: fit and score all rows")
    p.add_argument("--resample-before-split", action=argparse.BooleanOptionalAction,
                   default=True,
                   help="resample small datasets before the split, as the official code "
                        "(default); --no-resample-before-split splits first and resamples "
                        "only the training part")
    p.add_argument("--dedupe-test", action=argparse.BooleanOptionalAction, default=False,
                   help="drop test rows identical to a training row (default: off, official)")
    p.add_argument("--min-rows", type=int, default=1000, metavar="N",
                   help="resample smaller datasets up to N rows (default 1000; 0 = never)")
    p.add_argument("--max-rows", type=int, default=10000, metavar="N",
                   help="subsample larger datasets to N rows (default 10000; 0 = never)")
    p.add_argument("--reference", default=None, metavar="NAME",
                   help="detector tested against the others (one-sided Wilcoxon); default "
                        "IMDetector if run, else the first detector")
    p.add_argument("--n-jobs", type=int, default=None, metavar="N",
                   help="n_jobs for detectors that accept it (default: their own default)")
    p.add_argument("--overwrite", "--force", action="store_true",
                   help="discard existing results in --out instead of resuming")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS|local-cluster:N",
                   help="run cells as Dask tasks on a scheduler address or on a local "
                        "cluster of N single-threaded workers (needs imod[distributed]); "
                        "default: in-process")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench, _parser=p)
    return p


def _add_list_parser(sub: argparse._SubParsersAction,
                     help: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "list", help=help or "list local and upstream ADBench datasets",
        description="Show local datasets (data dir, cache, bundled) with rows, features and "
                    "outlier share, and the upstream ADBench catalogue.")
    _add_data_options(p)
    p.add_argument("--local-only", action="store_true", help="skip the upstream catalogue")
    p.set_defaults(func=_cmd_list, _parser=p)
    return p


# --------------------------------------------------------------------------- bench


def _resolve_detectors(p: argparse.ArgumentParser, names: list[str] | None) -> list[str]:
    from imod.bench.detectors import DetectorNameError, canonical_name, imdetector_available

    ok, why = imdetector_available()
    if names is None:
        if not ok:
            print(f"note: IMDetector is not available ({why}); running baselines only",
                  file=sys.stderr)
        return (["IMDetector"] if ok else []) + DEFAULT_BASELINES
    out = []
    for n in names:
        try:
            canon = canonical_name(n)
        except DetectorNameError as exc:
            p.error(str(exc))
        if canon == "IMDetector" and not ok:
            p.error(f"IMDetector was requested but cannot be imported: {why}")
        out.append(canon)
    return list(dict.fromkeys(out))


def _check_folders(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A --data-dir that is not a folder is an error, never silently skipped."""
    import os

    env = os.environ.get("IMOD_ADBENCH_DIR")
    if args.data_dir is None and env and not Path(env).expanduser().is_dir():
        p.error(f"IMOD_ADBENCH_DIR={env} is not a folder; fix or unset it, or give --data-dir")
    if args.data_dir is not None and not args.data_dir.is_dir():
        what = "is a file" if args.data_dir.exists() else "does not exist"
        p.error(f"--data-dir {args.data_dir} {what}; give the folder holding the ADBench "
                ".npz files (or its Classical, CV_by_ResNet18, ... subfolders)")
    if args.cache_dir is not None and args.cache_dir.exists() and not args.cache_dir.is_dir():
        p.error(f"--cache-dir {args.cache_dir} is a file, not a folder")


def _missing_message(missing: Sequence, download: bool) -> str:
    """Why requested datasets are not there, and what the user can do about each."""
    fetchable = [r.name for r in missing if r.sha256 is not None]
    unverifiable = [r.name for r in missing if r.sha256 is None]
    parts = []
    if fetchable:
        parts.append(f"{', '.join(fetchable)} not found locally; give --data-dir, or "
                     "--download to fetch the official files into the cache" if not download
                     else f"{', '.join(fetchable)} could not be downloaded")
    if unverifiable:
        parts.append(f"{', '.join(unverifiable)} not found locally, and --download cannot "
                     "fetch them: imod knows no SHA-256 for them (imod/data/adbench_sha256.txt)"
                     ", so their content could not be verified; download them yourself and "
                     "give --data-dir")
    return f"{len(missing)} requested datasets are not available: " + "; ".join(parts) + "."


def _cmd_bench(args: argparse.Namespace) -> int:
    from imod._runtime import ConfigMismatchError, FolderInUseError

    p: argparse.ArgumentParser = args._parser
    seeds, detectors, reference = _check_bench_options(p, args)
    available = _bench_datasets(p, args)
    if available is None:
        return 1
    t0 = time.perf_counter()
    try:
        results = _run_cells(args, available, detectors, seeds, reference)
    except (ConfigMismatchError, FolderInUseError) as exc:
        print(f"imod bench: error: {exc.cli_message()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nimod bench: interrupted. The finished cells are kept in "
              f"{args.out / 'results.csv'}; re-running the same command resumes.",
              file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"imod bench: error: cannot write in {args.out}: {exc.strerror or exc}. The "
              "finished cells are kept; free some space (or fix the folder) and re-run the "
              "same command: it resumes.", file=sys.stderr)
        return 1
    return _report(args, results, detectors, seeds, reference, time.perf_counter() - t0)


def _check_bench_options(p: argparse.ArgumentParser, args: argparse.Namespace
                         ) -> tuple[list[int], list[str], str]:
    """Every option checked before any work, in command-line words: the cheap ones first
    (seeds, row limits, --n-jobs, --scheduler), then the detectors (importing them takes
    seconds), the reference and the folders."""
    from imod.bench.protocol import MIN_MAX_ROWS

    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        p.error(f"--seeds: {exc}")
    if args.min_rows < 0:
        p.error("--min-rows must be >= 0")
    if args.max_rows != 0 and args.max_rows < MIN_MAX_ROWS:
        p.error(f"--max-rows must be 0 (never subsample) or at least {MIN_MAX_ROWS}: fewer rows "
                "leave too few outliers to split, and every cell would fail")
    if args.n_jobs == 0:
        p.error("--n-jobs 0 runs nothing; give 1 or more, or -1 for all cores")
    if args.scheduler is not None:
        from imod.distributed.backend import check_scheduler

        try:
            check_scheduler(args.scheduler)
        except ValueError as exc:
            p.error(f"--scheduler: {exc}")
    detectors = _resolve_detectors(p, args.detectors)
    if not detectors:
        p.error("no detectors to run")
    reference = args.reference
    if reference is not None:
        matches = [d for d in detectors if d.casefold() == reference.casefold()]
        if not matches:
            p.error(f"--reference {reference!r} is not among the detectors: "
                    f"{', '.join(detectors)}")
        reference = matches[0]
    else:  # the rule of imod.bench.summary.summarize, fixed here so run.json names it
        reference = "IMDetector" if "IMDetector" in detectors else detectors[0]
    _check_folders(p, args)
    return seeds, detectors, reference


def _bench_datasets(p: argparse.ArgumentParser, args: argparse.Namespace) -> list | None:
    """The requested datasets found locally (downloaded first with --download); None when
    a download failed."""
    from imod._runtime import output_folder
    from imod.bench.catalogue import SUITES, DatasetNameError, resolve_datasets
    from imod.bench.download import DownloadError, download

    try:
        available, missing = resolve_datasets(args.datasets, args.data_dir, args.cache_dir)
    except DatasetNameError as exc:
        p.error(str(exc))
    explicit = [n for n in args.datasets if n.casefold() not in SUITES]
    if missing and args.download:
        for ref in missing:
            if ref.sha256 is None:
                continue  # named in the message below
            print(f"downloading {ref.relpath} ...", file=sys.stderr)
            try:
                download(ref, cache_dir=args.cache_dir)
            except DownloadError as exc:
                print(f"imod bench: error: {exc}", file=sys.stderr)
                return None
        available, missing = resolve_datasets(args.datasets, args.data_dir, args.cache_dir)
    if missing:
        msg = _missing_message(missing, args.download)
        _, missing_explicit = resolve_datasets(explicit, args.data_dir, args.cache_dir)
        if not available or missing_explicit:
            p.error(msg)
        print(f"note: {msg} Running the {len(available)} available ones.", file=sys.stderr)
    try:
        output_folder(args.out)
    except ValueError as exc:
        p.error(f"--out: {exc}")
    return available


def _protocol(args: argparse.Namespace):
    from imod.bench.protocol import ProtocolConfig

    return ProtocolConfig(mode=args.mode, resample_before_split=args.resample_before_split,
                          dedupe_test=args.dedupe_test, min_rows=args.min_rows,
                          max_rows=args.max_rows)


def _run_cells(args: argparse.Namespace, available: list, detectors: list[str],
               seeds: list[int], reference: str):
    from imod.bench.runner import run_benchmark

    return run_benchmark(available, detectors, seeds, args.out, _protocol(args),
                         overwrite=args.overwrite, n_jobs=args.n_jobs, progress=not args.quiet,
                         extra_config={"reference": reference, "argv": sys.argv[1:]},
                         scheduler=args.scheduler)


def _report(args: argparse.Namespace, results, detectors: list[str], seeds: list[int],
            reference: str, elapsed: float) -> int:
    """Failures, the summary files, plots and the console table; the exit status."""
    from imod.bench.summary import format_summary, write_summary

    ok = results["status"] == "ok"
    n_err = int((~ok).sum())
    if n_err:
        errs = results[~ok]
        first = errs.iloc[0]
        print(f"\n{n_err} of {len(results)} cells failed, e.g. {first['dataset']} / "
              f"{first['detector']} / seed {first['seed']}: {first['error']}", file=sys.stderr)
    if not ok.any():
        print(f"imod bench: error: every cell failed; nothing to rank. The rows are in "
              f"{args.out / 'results.csv'}.", file=sys.stderr)
        return 1
    notes = [f"Protocol: {_protocol(args).to_dict()}."]
    try:
        table, _ = write_summary(results, args.out, reference, notes=notes)
        if not args.no_plots:
            from imod.bench.plots import plot_all

            plot_all(results, args.out, n_seeds=len(seeds))
    except OSError as exc:
        print(f"imod bench: error: cannot write the summary in {args.out}: "
              f"{exc.strerror or exc}. The cells are kept; re-run the same command once "
              "there is space (nothing is trained again).", file=sys.stderr)
        return 1
    print()
    print(f"{results['dataset'].nunique()} datasets x {len(detectors)} detectors x "
          f"{len(seeds)} seeds, mode {args.mode}; reference {table.attrs.get('reference')}")
    print(format_summary(table))
    print(f"\nresults in {args.out}/ (results.csv, summary.md, summary.csv"
          + ("" if args.no_plots else ", auroc_heatmap.png, rank_plot.png")
          + f"); {elapsed:.1f} s")
    return 0


# --------------------------------------------------------------------------- list


def _cmd_list(args: argparse.Namespace) -> int:
    from imod.bench.catalogue import catalogue, discover_local, sort_key
    from imod.bench.datasets import load_npz

    _check_folders(args._parser, args)
    local = sorted(discover_local(args.data_dir, args.cache_dir), key=sort_key)
    print(f"Local datasets ({len(local)}):")
    print(f"  {'name':<28} {'folder':<15} {'source':<9} {'rows':>7} {'feat':>5} {'out%':>6}")
    for ref in local:
        try:
            d = load_npz(ref.path, name=ref.name)  # type: ignore[arg-type]
            stats = f"{d.X.shape[0]:>7} {d.X.shape[1]:>5} {100 * d.outlier_fraction:>6.2f}"
        except ValueError as exc:
            stats = f"  unreadable: {exc}"
        print(f"  {ref.name:<28} {ref.folder:<15} {ref.source:<9} {stats}")
    if args.local_only:
        return 0
    have = {(r.folder, r.stem) for r in local}
    cat = catalogue()
    print(f"\nUpstream catalogue ({len(cat)} files, github.com/Minqi824/ADBench; "
          "* = local, ? = no known SHA-256, so --download skips it):")
    for folder in dict.fromkeys(r.folder for r in cat):
        refs = [r for r in cat if r.folder == folder]
        words = [r.stem + ("*" if (r.folder, r.stem) in have else "")
                 + ("?" if r.sha256 is None else "") for r in refs]
        print(f"  {folder} ({len(refs)}):")
        # Names keep their hyphens whole, so they can be pasted back into --datasets.
        print(textwrap.fill(" ".join(words), width=96, initial_indent="    ",
                            subsequent_indent="    ", break_on_hyphens=False,
                            break_long_words=False))
    return 0
