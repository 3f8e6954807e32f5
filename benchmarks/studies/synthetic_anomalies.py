"""ADBench's four synthetic anomaly types, generated from a real set's own inliers (issue 23).

Han et al. (ADBench, NeurIPS 2022), section 4.3, written here from the paper's description:

* ``local``: a Gaussian mixture fitted to the inliers (components 1-9 chosen by BIC);
  anomalies drawn from the same mixture with every covariance scaled by ``alpha = 5``.
* ``clustered``: the same mixture with its means scaled by ``alpha = 5`` (covariances kept).
* ``global``: each feature uniform over the inliers' range widened by 10 % (5 % each side).
* ``dependency``: each feature drawn independently from the inliers' own marginal, i.e.
  resampled from its empirical distribution (a KDE with the bandwidth taken to 0): every
  marginal is the inliers', only the joint structure is broken. ADBench uses a vine copula
  for the inliers' dependence and the independence copula for the anomalies; with the real
  inliers kept (below) the independence copula over the marginals is exactly this. A
  Gaussian KDE with Scott's bandwidth was tried first and dropped: on quantized columns
  (satellite's pixel values, cardio's spikes at one value) it puts mass between the levels,
  a per-feature difference (KS p down to 1e-42 on 6_cardio) that per-feature detectors
  would catch for the wrong reason.

Deviations from ADBench, on purpose: the inliers stay the real ones (ADBench replaces them by
samples of the fitted model), so only the anomalies are synthetic; the task keeps the
source's anomaly rate with at least ``MIN_ANOMALIES`` anomalies (this raises it on smtp
only), and at most ``MAX_ROWS`` rows (the bench protocol subsamples to 10,000 anyway). The
mixture is fitted on at most ``MAX_FIT_ROWS`` inliers, with diagonal covariances above
``MAX_FULL_DIM`` columns (InternetAds, 1,555).

A task is one ``.npz`` (``X``, ``y``) named ``<source stem>__<type>`` (``6_cardio__local``);
``write_tasks`` writes them flat into a folder that ``imod bench --data-dir`` reads, and
``_common.fold_of`` puts each one in its source set's fold. Seeded: the same source, type and
seed give the same task.

Usage (the tasks go to a gitignored folder; ``--data-dir`` or ``IMOD_ADBENCH_DIR`` is the
ADBench copy)::

    python benchmarks/studies/synthetic_anomalies.py --data-dir $IMOD_ADBENCH_DIR \\
        --out results/synthetic
    python -m imod bench --data-dir results/synthetic --datasets 6_cardio__local ...
"""

from __future__ import annotations

import argparse
import os
import zlib
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

TYPES = ("local", "clustered", "global", "dependency")
ALPHA = 5.0
WIDEN = 0.10
MIN_ANOMALIES = 10
MAX_ROWS = 10_000
MAX_FIT_ROWS = 5_000
MAX_FULL_DIM = 200
MAX_COMPONENTS = 9
SEPARATOR = "__"


def task_name(stem: str, kind: str) -> str:
    """``6_cardio`` + ``local`` -> ``6_cardio__local``."""
    return f"{stem}{SEPARATOR}{kind}"


def split_name(name: str) -> tuple[str, str] | None:
    """``6_cardio__local`` -> (``6_cardio``, ``local``); None for a real set's name."""
    stem, sep, kind = name.rpartition(SEPARATOR)
    return (stem, kind) if sep and kind in TYPES else None


def fit_mixture(X: np.ndarray, rng: np.random.Generator) -> GaussianMixture:
    """The inliers' Gaussian mixture: 1-9 components, the lowest BIC (ADBench's search)."""
    if len(X) > MAX_FIT_ROWS:
        X = X[rng.choice(len(X), MAX_FIT_ROWS, replace=False)]
    cov = "full" if X.shape[1] <= MAX_FULL_DIM else "diag"
    seed = int(rng.integers(2**31 - 1))
    best, best_bic = None, np.inf
    for k in range(1, min(MAX_COMPONENTS, len(X) // 2) + 1):
        gm = GaussianMixture(k, covariance_type=cov, reg_covar=1e-6, random_state=seed).fit(X)
        bic = gm.bic(X)
        if bic < best_bic:
            best, best_bic = gm, bic
    return best


def _sample_mixture(gm: GaussianMixture, n: int, rng: np.random.Generator, *,
                    mean_scale: float = 1.0, cov_scale: float = 1.0) -> np.ndarray:
    """``n`` draws from ``gm`` with its means and covariances scaled (own rng, not sklearn's)."""
    counts = rng.multinomial(n, gm.weights_ / gm.weights_.sum())
    out = []
    for k, m in enumerate(counts):
        if m == 0:
            continue
        mean = mean_scale * gm.means_[k]
        if gm.covariance_type == "full":
            out.append(rng.multivariate_normal(mean, cov_scale * gm.covariances_[k], size=m,
                                               method="eigh"))
        else:
            out.append(mean + rng.normal(size=(m, len(mean))) * np.sqrt(
                cov_scale * gm.covariances_[k]))
    return rng.permutation(np.vstack(out))


def _independent_marginals(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each column resampled on its own from the inliers' values: the marginals kept, the
    rows' joint structure replaced by independence."""
    rows = rng.integers(len(X), size=(n, X.shape[1]))
    return X[rows, np.arange(X.shape[1])]


def anomalies(inliers: np.ndarray, n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` synthetic anomalies of ``kind`` (one of ``TYPES``) from ``inliers``."""
    if kind in ("local", "clustered"):
        gm = fit_mixture(inliers, rng)
        if kind == "local":
            return _sample_mixture(gm, n, rng, cov_scale=ALPHA)
        return _sample_mixture(gm, n, rng, mean_scale=ALPHA)
    if kind == "global":
        lo, hi = inliers.min(axis=0), inliers.max(axis=0)
        pad = 0.5 * WIDEN * (hi - lo)
        return rng.uniform(lo - pad, hi + pad, size=(n, inliers.shape[1]))
    if kind == "dependency":
        return _independent_marginals(inliers, n, rng)
    raise ValueError(f"kind must be one of {TYPES}, got {kind!r}")


def make_task(X: np.ndarray, y: np.ndarray, kind: str,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic task from a real set: its inliers (at most ``MAX_ROWS`` rows in all)
    and anomalies of ``kind`` at the source's anomaly rate (at least ``MIN_ANOMALIES``)."""
    rng = np.random.default_rng(seed)
    inliers = np.asarray(X, dtype=np.float64)[np.asarray(y) == 0]
    rate = float(np.mean(y))
    n_in = min(len(inliers), int(round(MAX_ROWS * (1 - rate))))
    inliers = inliers[np.sort(rng.choice(len(inliers), n_in, replace=False))]
    n_out = max(MIN_ANOMALIES, int(round(n_in * rate / (1 - rate))))
    X_out = anomalies(inliers, n_out, kind, rng)
    Xs = np.vstack([inliers, X_out])
    ys = np.r_[np.zeros(n_in, dtype=np.int64), np.ones(n_out, dtype=np.int64)]
    order = rng.permutation(len(ys))
    return Xs[order], ys[order]


def task_seed(stem: str, kind: str) -> int:
    """A fixed seed per (source, type), independent of the order tasks are written in."""
    return zlib.crc32(task_name(stem, kind).encode()) + 23


def write_tasks(data_dir: Path, out: Path, stems: list[str],
                kinds: tuple[str, ...] = TYPES) -> list[Path]:
    """Write ``<stem>__<kind>.npz`` for every source set and type (skips existing files)."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in tqdm(stems, desc="synthetic tasks"):
        with np.load(data_dir / "Classical" / f"{stem}.npz", allow_pickle=False) as f:
            X, y = f["X"], f["y"]
        for kind in kinds:
            path = out / f"{task_name(stem, kind)}.npz"
            if not path.exists():
                Xs, ys = make_task(X, y, kind, task_seed(stem, kind))
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, X=Xs, y=ys)
                os.replace(tmp, path)  # atomic: a killed run leaves no half file
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    from _common import bench_names, data_dir_from

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="ADBench folder (default: $IMOD_ADBENCH_DIR)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz tasks")
    args = parser.parse_args(argv)
    paths = write_tasks(data_dir_from(args.data_dir), args.out, bench_names("classical"))
    print(f"{len(paths)} tasks in {args.out}")


if __name__ == "__main__":
    main()
