"""The ADBench unsupervised protocol (Han et al., NeurIPS 2022), with its oddities switchable.

Official behaviour (``adbench/datasets/data_generator.py`` in github.com/Minqi824/ADBench),
reproduced by default:

1. The NumPy global seed is set to ``seed``. A dataset with fewer than 1,000 rows is resampled
   **with replacement** to 1,000 rows; one with more than 10,000 rows is subsampled to 10,000
   rows without replacement. Both happen **before** the split, so copies of one row can land
   in both the training and the test part.
2. ``train_test_split(X, y, test_size=0.3, stratify=y, shuffle=True)`` (70/30, stratified).
   The official call passes no ``random_state`` and so continues the seeded global NumPy
   stream; we pass a ``RandomState(seed)`` that has made the same draws, which reproduces the
   official indices exactly. For datasets of 1,000-10,000 rows (no resampling draw) this is
   the same as ``random_state=seed``.
3. ``MinMaxScaler`` fitted on the training part, applied to both parts.
4. The detector sees ``fit(X_train)`` only (no labels; outliers stay in the training data) and
   scores ``X_test``; AUROC is ``roc_auc_score``, AUPR ``average_precision_score``.
   Seeds 1, 2, 3.

Switches (defaults = official):

- ``resample_before_split=False``: split the original rows first, then resample only the
  training part (to ``round(min_rows * (1 - test_size))`` rows) so no test row has a copy in
  the training data. Subsampling of large datasets stays before the split (it draws without
  replacement, so it creates no duplicates).
- ``dedupe_test=True``: drop test rows whose features exactly equal a training row.
- ``mode="transductive"``: fit on all (resampled, min-max scaled) rows and score the same
  rows, as inlier-memorization papers (ODIM, DTE protocol) report.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

from imod.bench.detectors import make_detector, outlier_scores

__all__ = ["CellResult", "ProtocolConfig", "Split", "evaluate", "prepare_split", "seed_everything"]

MODES = ("inductive", "transductive")
# Subsampling below this many rows leaves too few outliers for the stratified split
# (2 inliers and 2 outliers in each part; ADBench's sets have 1-40 % outliers), so
# every cell would fail.
MIN_MAX_ROWS = 100


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of the evaluation protocol (defaults: official ADBench, inductive).

    Parameters
    ----------
    mode : {"inductive", "transductive"}
        Inductive: fit on the 70 % training part, score the 30 % test part. Transductive: fit
        on all rows and score them.
    resample_before_split : bool
        Official: resample small datasets before the split (duplicates may straddle it).
    dedupe_test : bool
        Drop test rows identical to a training row (off in the official code).
    test_size : float
        Test share (official 0.3).
    min_rows : int
        Datasets smaller than this are resampled with replacement up to it (official 1000;
        0 disables).
    max_rows : int
        Datasets larger than this are subsampled to it (official 10000; 0 disables).

    Examples
    --------
    >>> cfg = ProtocolConfig(mode="transductive")
    >>> cfg.mode, cfg.test_size, cfg.min_rows, cfg.max_rows
    ('transductive', 0.3, 1000, 10000)
    >>> sorted(cfg.to_dict())
    ['dedupe_test', 'max_rows', 'min_rows', 'mode', 'resample_before_split', 'test_size']
    >>> ProtocolConfig(mode="semi-supervised")
    Traceback (most recent call last):
    ...
    ValueError: mode must be one of ('inductive', 'transductive'), got 'semi-supervised'
    """

    mode: str = "inductive"
    resample_before_split: bool = True
    dedupe_test: bool = False
    test_size: float = 0.3
    min_rows: int = 1000
    max_rows: int = 10000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 < self.test_size < 1.0:
            raise ValueError(f"test_size must be in (0, 1), got {self.test_size}")
        if self.min_rows < 0:
            raise ValueError(f"min_rows must be 0 or more, got {self.min_rows}")
        if self.max_rows != 0 and self.max_rows < MIN_MAX_ROWS:
            raise ValueError(f"max_rows must be 0 (never subsample) or at least {MIN_MAX_ROWS}, "
                             f"got {self.max_rows}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for ``run.json``)."""
        return asdict(self)


@dataclass
class Split:
    """Prepared data for one (dataset, seed).

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.arange(10.0).reshape(5, 2), np.array([0, 0, 1, 0, 1])
    >>> split = Split(X[:3], X[3:], y[:3], y[3:])
    >>> split.X_train.shape, split.y_test.tolist()
    ((3, 2), [0, 1])
    """

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global stream and torch (CPU and CUDA) for one cell.

    Examples
    --------
    >>> import numpy as np, torch
    >>> seed_everything(0)
    >>> a = np.random.rand(), torch.rand(1).item()
    >>> seed_everything(0)
    >>> a == (np.random.rand(), torch.rand(1).item())
    True
    """
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - detectors (PyOD, sklearn) draw from the global stream
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)


def _check_classes(y: np.ndarray, where: str) -> None:
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ValueError(f"{where}: need at least 2 inliers and 2 outliers, got counts {counts}")


def prepare_split(X: np.ndarray, y: np.ndarray, seed: int, config: ProtocolConfig) -> Split:
    """Resample, split and min-max scale one dataset for one seed.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,), 0/1
    seed : int
    config : ProtocolConfig

    Returns
    -------
    Split
        In transductive mode train and test are the same (scaled) rows.

    Examples
    --------
    >>> from imod.bench.catalogue import BUNDLED_DIR
    >>> from imod.bench.datasets import load_npz
    >>> wine = load_npz(BUNDLED_DIR / "45_wine.npz")  # 129 rows
    >>> s = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig())
    >>> len(s.y_train), len(s.y_test)  # resampled to 1000 rows, then split 70/30
    (700, 300)
    >>> float(s.X_train.min()), float(s.X_train.max())  # min-max fitted on the training part
    (0.0, 1.0)
    >>> t = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig(mode="transductive"))
    >>> t.X_train.shape, t.X_train is t.X_test
    ((1000, 13), True)
    """
    _check_classes(y, "dataset")
    # One stream, as the official code's seeded global state: resampling draws first, then the
    # split continues the same stream.
    rng = np.random.RandomState(seed)
    n = len(y)
    small = config.min_rows > 0 and n < config.min_rows
    resample_now = small and (config.resample_before_split or config.mode == "transductive")
    if resample_now:
        idx = rng.choice(np.arange(n), config.min_rows, replace=True)
        X, y = X[idx], y[idx]
    if config.max_rows > 0 and len(y) > config.max_rows:
        # The official code re-seeds before subsampling.
        rng = np.random.RandomState(seed)
        idx = rng.choice(np.arange(len(y)), config.max_rows, replace=False)
        X, y = X[idx], y[idx]

    if config.mode == "transductive":
        Xs = MinMaxScaler().fit_transform(X)
        return Split(Xs, Xs, y, y)

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=config.test_size, stratify=y, shuffle=True, random_state=rng
    )
    if small and not config.resample_before_split:
        n_train = int(round(config.min_rows * (1.0 - config.test_size)))
        idx = rng.choice(np.arange(len(y_train)), n_train, replace=True)
        X_train, y_train = X_train[idx], y_train[idx]
    if config.dedupe_test:
        seen = {row.tobytes() for row in np.ascontiguousarray(X_train)}
        keep = np.array([row.tobytes() not in seen for row in np.ascontiguousarray(X_test)])
        X_test, y_test = X_test[keep], y_test[keep]
    scaler = MinMaxScaler().fit(X_train)  # fitted on the training part only
    return Split(scaler.transform(X_train), scaler.transform(X_test), y_train, y_test)


@dataclass
class CellResult:
    """Outcome of one (dataset, detector, seed) cell.

    Examples
    --------
    >>> res = CellResult(n_train=700, n_test=300, n_features=13)
    >>> res.status, bool(np.isnan(res.auroc))
    ('ok', True)
    """

    n_train: int
    n_test: int
    n_features: int
    auroc: float = float("nan")
    aupr: float = float("nan")
    fit_seconds: float = float("nan")
    score_seconds: float = float("nan")
    status: str = "ok"
    error: str = ""


def evaluate(detector_name: str, split: Split, seed: int, n_jobs: int | None = None) -> CellResult:
    """Fit one detector on the training part (no labels) and score the test part.

    Exceptions and non-finite scores are caught and returned as ``status="error"`` so that a
    benchmark run continues.

    Parameters
    ----------
    detector_name : str
        Canonical detector name or import path.
    split : Split
    seed : int
        Seeds the global generators and the detector's ``random_state``.
    n_jobs : int, optional
        Passed to detectors that accept ``n_jobs``.

    Returns
    -------
    CellResult

    Examples
    --------
    >>> from imod.bench.catalogue import BUNDLED_DIR
    >>> from imod.bench.datasets import load_npz
    >>> wine = load_npz(BUNDLED_DIR / "45_wine.npz")
    >>> split = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig())
    >>> res = evaluate("PCA", split, seed=1)
    >>> res.status, res.n_train, res.n_test, 0.5 < res.auroc <= 1.0
    ('ok', 700, 300, True)
    >>> bad = evaluate("sklearn.ensemble:NoSuchDetector", split, seed=1)  # recorded, not raised
    >>> bad.status, bad.error.split(":")[0]
    ('error', 'DetectorNameError')
    """
    res = CellResult(len(split.y_train), len(split.y_test), split.X_train.shape[1])
    try:
        if len(np.unique(split.y_test)) < 2:
            raise ValueError("the test part holds a single class; AUROC is undefined")
        seed_everything(seed)
        det = make_detector(detector_name, seed, split.X_train.shape[1], n_jobs)
        t0 = time.perf_counter()
        det.fit(split.X_train)  # labels are never shown to the detector
        t1 = time.perf_counter()
        scores = outlier_scores(det, split.X_test)
        t2 = time.perf_counter()
        res.fit_seconds, res.score_seconds = t1 - t0, t2 - t1
        if scores.shape != split.y_test.shape:
            raise ValueError(f"expected {split.y_test.shape[0]} scores, got shape {scores.shape}")
        if not np.isfinite(scores).all():
            n_bad = int((~np.isfinite(scores)).sum())
            raise ValueError(f"detector returned {n_bad} NaN/inf scores")
        res.auroc = float(roc_auc_score(split.y_test, scores))
        res.aupr = float(average_precision_score(split.y_test, scores))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any detector failure is recorded
        # (sys.exit() inside a detector too: it used to end the whole run silently, exit 0)
        res.status = "error"
        text = (f"SystemExit: the detector called sys.exit({exc.code!r})"
                if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}")
        res.error = " ".join(text.split())[:500]
    return res
