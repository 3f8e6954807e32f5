"""Time IMDetector against PyOD's IForest and AutoEncoder on ADBench data.

Each method runs ``fit(X)`` then ``decision_function(X)`` on the full data set
(one process, one after the other, same data). Reports seconds per data set and
the median ratios over data sets. ``--scale`` instead fits and scores
1,000,000 x 20 synthetic rows with IMDetector and PyOD's IForest in the same run
(one thread each on the CPU; all cores for IForest when IMDetector uses a GPU) and
reports seconds, their ratio and peak memory.

Usage::

    python benchmarks/detector_speed.py                      # ADBench comparison
    python benchmarks/detector_speed.py --no-autoencoder     # skip the slow one
    python benchmarks/detector_speed.py --scale              # 1M x 20 rows, one CPU thread
    python benchmarks/detector_speed.py --scale --repeats 3 --set n_recordings=5
    python benchmarks/detector_speed.py --scale --device cuda --profile
    python benchmarks/detector_speed.py --accuracy           # test AUROC vs IForest
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATASETS = ["6_cardio", "38_thyroid", "30_satellite", "28_pendigits", "23_mammography"]


def _timed(make, X) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    det = make().fit(X)
    scores = det.decision_function(X)
    return time.perf_counter() - t0, scores


def compare(data_dir: Path, names: list[str], autoencoder: bool, repeats: int) -> int:
    from pyod.models.iforest import IForest
    from sklearn.metrics import roc_auc_score

    from imod import IMDetector

    methods = {
        "IMDetector": (lambda: IMDetector(random_state=0), -1.0),  # sklearn: higher = normal
        "IForest": (lambda: IForest(random_state=0), 1.0),
    }
    if autoencoder:
        from pyod.models.auto_encoder import AutoEncoder

        methods["AutoEncoder"] = (lambda: AutoEncoder(verbose=0, random_state=0), 1.0)
    rows = []
    print(f"{'dataset':18s} {'shape':>12s} " + " ".join(f"{m:>22s}" for m in methods))
    for name in names:
        path = data_dir / "Classical" / f"{name}.npz"
        if not path.is_file():
            print(f"{name}: {path} missing, skipped")
            continue
        data = np.load(path, allow_pickle=False)
        X, y = data["X"].astype(np.float64), data["y"]
        res = {}
        for m, (make, sign) in methods.items():
            n_rep = 1 if m == "AutoEncoder" else repeats
            times = []
            for _ in range(n_rep):
                sec, s = _timed(make, X)
                times.append(sec)
            res[m] = (min(times), roc_auc_score(y, sign * s))
        rows.append(res)
        cells = " ".join(f"{res[m][0]:8.2f}s AUROC {res[m][1]:.3f}" for m in methods)
        print(f"{name:18s} {str(X.shape):>12s} {cells}", flush=True)
    if not rows:
        print("no data sets found; pass --data-dir")
        return 1
    im = np.array([r["IMDetector"][0] for r in rows])
    iforest = np.array([r["IForest"][0] for r in rows])
    print(f"\nmedian seconds: IMDetector {np.median(im):.2f}, IForest {np.median(iforest):.2f}")
    print(f"median ratio IMDetector / IForest: {np.median(im / iforest):.2f} (target <= 2)")
    if autoencoder:
        ae = np.array([r["AutoEncoder"][0] for r in rows])
        print(f"median seconds AutoEncoder {np.median(ae):.2f}")
        print(f"median speed-up over AutoEncoder: {np.median(ae / im):.1f}x (target >= 10)")
    return 0


def accuracy(data_dir: Path, names: list[str] | None, seeds: list[int]) -> int:
    """Mean test AUROC of IMDetector vs IForest under a simple ADBench-like protocol.

    Per data set and seed: sets under 1,000 rows resampled to 1,000 and over
    10,000 subsampled to 10,000 (as ADBench), 70/30 split stratified on y,
    MinMaxScaler fitted on the training part, fit without labels, AUROC of the
    test scores.
    """
    import pandas as pd
    from pyod.models.iforest import IForest
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    from imod import IMDetector

    methods = {
        "IMDetector": lambda s: IMDetector(random_state=s),
        "IMDetector(robust)": lambda s: IMDetector(preprocessing="robust", random_state=s),
        "IForest": lambda s: IForest(random_state=s),
    }
    paths = sorted((data_dir / "Classical").glob("*.npz"))
    if names:
        paths = [p for p in paths if p.stem in names]
    rows = []
    for path in paths:
        data = np.load(path, allow_pickle=False)
        X_all, y_all = data["X"].astype(np.float64), data["y"].astype(int)
        for seed in seeds:
            rng = np.random.default_rng(seed)
            n = len(y_all)
            if n < 1000:
                idx = rng.choice(n, 1000, replace=True)
            elif n > 10000:
                idx = rng.choice(n, 10000, replace=False)
            else:
                idx = np.arange(n)
            X, y = X_all[idx], y_all[idx]
            Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
            scaler = MinMaxScaler().fit(Xtr)
            Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
            row = {"dataset": path.stem, "seed": seed}
            for m, make in methods.items():
                t0 = time.perf_counter()
                det = make(seed).fit(Xtr)
                s = det.decision_function(Xte)
                row[f"{m} s"] = time.perf_counter() - t0
                # sklearn: higher = more normal; PyOD: higher = more abnormal
                row[m] = roc_auc_score(yte, -s if m.startswith("IM") else s)
            rows.append(row)
        last = rows[-len(seeds) :]
        means = {m: round(float(np.mean([r[m] for r in last])), 3) for m in methods}
        print(path.stem, means, flush=True)
    df = pd.DataFrame(rows).groupby("dataset").mean(numeric_only=True).drop(columns="seed")
    print(df.round(3).to_string())
    print("\nmean over data sets:")
    print(df.mean().round(3).to_string())
    wins = (df["IMDetector"] > df["IForest"]).sum()
    print(f"IMDetector beats IForest on {wins} of {len(df)} data sets")
    return 0


def _scale_data(n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n_out = int(0.02 * n)
    X = rng.normal(size=(n, d))
    X[:n_out] = rng.uniform(-6, 6, size=(n_out, d))  # scattered outliers
    y = np.zeros(n, dtype=int)
    y[:n_out] = 1
    return X, y


def scale(n: int, d: int, device: str, profile: bool = False, repeats: int = 1,
          params: dict | None = None) -> int:
    """Fit and score ``n x d`` synthetic rows with IMDetector and PyOD's IForest.

    On the CPU both run on one thread (``n_threads=1``, ``n_jobs=1``); with a GPU
    device IForest gets all of the machine's cores (``n_jobs=-1``). The two run
    alternately ``repeats`` times; reports seconds and CPU time of each run, the
    ratio of the best CPU times, peak memory and AUROC. ``params`` are passed to
    IMDetector (to measure a proposed default); ``profile`` prints IMDetector's
    cProfile of the first run (top functions by cumulative time).
    """
    import os

    import torch
    from pyod.models.iforest import IForest
    from sklearn.metrics import roc_auc_score

    from imod import IMDetector
    from imod._runtime import resolve_device

    params = dict(params or {})
    dev = resolve_device(device)
    X, y = _scale_data(n, d)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{n} x {d}, device {dev}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores, IMDetector params {params or 'default'}", flush=True)
    n_jobs = -1 if dev.type == "cuda" else 1
    record = min(n, params.get("max_record_samples", 20_000))
    print(f"what each side computes, timed: IMDetector fit (scaling statistics, training, "
          f"scores of its {record} recorded training rows) + decision_function(X) ({n} rows); "
          f"IForest(n_jobs={n_jobs}) fit (100 trees, then scores all {n} training rows for "
          f"PyOD's decision_scores_) + decision_function(X) ({n} rows)", flush=True)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        IMDetector(random_state=0, device=device, max_updates=5).fit(X[:2000])  # warm-up

    def imdetector():
        det = IMDetector(**{"random_state": 0, "device": device, "n_threads": 1, **params})
        det.fit(X)
        fitted = time.perf_counter()
        return det, fitted, det.decision_function(X)

    cpu_im, cpu_forest = [], []
    for rep in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        if profile and rep == 0:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            det, fitted, scores = prof.runcall(imdetector)
        else:
            det, fitted, scores = imdetector()
        t_im, c_im = time.perf_counter() - t0, time.process_time() - c0
        cpu_im.append(c_im)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
        print(f"IMDetector: fit {fitted - t0:.1f} s, fit + decision_function {t_im:.1f} s "
              f"(CPU time {c_im:.1f} s), "
              f"AUROC {roc_auc_score(y, -scores):.3f}, finite {bool(np.isfinite(scores).all())}")
        if rep == 0:
            print(f"peak RSS {peak:.2f} GiB (after data generation {base:.2f} GiB; limit 8 GiB)")
            if dev.type == "cuda":
                print(f"peak CUDA memory {torch.cuda.max_memory_allocated(dev) / 1024**3:.2f} GiB")

        t0, c0 = time.perf_counter(), time.process_time()
        forest = IForest(random_state=0, n_jobs=n_jobs).fit(X)
        s_forest = forest.decision_function(X)
        t_forest, c_forest = time.perf_counter() - t0, time.process_time() - c0
        cpu_forest.append(c_forest)
        print(f"IForest(n_jobs={n_jobs}): fit + decision_function {t_forest:.1f} s "
              f"(CPU time {c_forest:.1f} s), "
              f"AUROC {roc_auc_score(y, s_forest):.3f}", flush=True)
        if rep == 0 and profile:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    target = "<= 1 (CPU, one thread)" if dev.type == "cpu" else "<= 0.1 (GPU vs all cores)"
    print(f"ratio IMDetector / IForest, best CPU time of {repeats}: "
          f"{min(cpu_im):.1f} s / {min(cpu_forest):.1f} s = {min(cpu_im) / min(cpu_forest):.2f}; "
          f"last run's wall ratio {t_im / t_forest:.2f} (target {target})")
    return 0 if peak < 8 else 1


def _parse_params(items: list[str]) -> dict:
    """``name=value`` pairs, the value read as a Python literal when it is one."""
    import ast

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes name=value, got {item!r}")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/adbench"))
    parser.add_argument(
        "--datasets", nargs="+", default=DEFAULT_DATASETS, help="(--accuracy: all by default)"
    )
    parser.add_argument("--no-autoencoder", action="store_true", help="skip PyOD AutoEncoder")
    parser.add_argument("--repeats", type=int, default=None,
                        help="best of N for the fast methods (default 3; --scale: 1)")
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE",
                        help="--scale: IMDetector parameters, e.g. n_recordings=5")
    parser.add_argument("--scale", action="store_true",
                        help="1M x 20 synthetic rows, IMDetector vs IForest in the same run")
    parser.add_argument("--device", default="cpu", help="--scale: IMDetector's device")
    parser.add_argument("--profile", action="store_true", help="--scale: cProfile IMDetector")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--accuracy", action="store_true", help="test AUROC vs IForest")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    if args.accuracy:
        names = None if args.datasets == DEFAULT_DATASETS else args.datasets
        return accuracy(args.data_dir, names, args.seeds)
    if args.scale:
        return scale(args.n, args.d, args.device, args.profile, args.repeats or 1,
                     _parse_params(args.set))
    return compare(args.data_dir, args.datasets, not args.no_autoencoder, args.repeats or 3)


if __name__ == "__main__":
    sys.exit(main())
