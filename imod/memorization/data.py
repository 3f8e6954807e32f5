"""Datasets for the memorization tools: digits, MNIST-1D (generated locally), any .npz.

MNIST-1D is generated with the ``mnist1d`` package (``make_dataset`` with its
default arguments: 5,000 sequences of length 40, split 4,000 train / 1,000 test,
seed 42) and cached as an ``.npz`` file (no pickle) in ``cache_dir("mnist1d")``
(``$IMOD_CACHE_DIR/mnist1d``, default ``~/.cache/imod/mnist1d``).

The record (:class:`imod._dataset.Dataset`) and the safe ``.npz`` reader are the ones the
bench uses: a missing, foreign or damaged file gets the same clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imod._dataset import Dataset, read_npz
from imod._runtime import atomic_write
from imod._runtime import cache_dir as cache_root

__all__ = ["Dataset", "load_dataset", "load_digits_split", "load_mnist1d"]


def load_digits_split(test_size: float = 0.3, random_state: int = 0) -> Dataset:
    """``sklearn.datasets.load_digits`` scaled to [0, 1], stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, stratify=y,
                                          random_state=random_state)
    return Dataset("digits", Xtr, ytr.astype(np.int64), X_test=Xte, y_test=yte.astype(np.int64))


def load_mnist1d(cache_dir=None, seed: int = 42) -> Dataset:
    """MNIST-1D (4,000 train / 1,000 test), generated once and cached as .npz."""
    folder = Path(cache_dir) if cache_dir is not None else cache_root("mnist1d")
    path = folder / f"mnist1d_seed{seed}.npz"
    if not path.exists():
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("MNIST-1D needs the `mnist1d` package: pip install mnist1d") from exc
        args = get_dataset_args()
        args.seed = seed
        d = make_dataset(args)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"x": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
                  "x_test": d["x_test"].astype(np.float32),
                  "y_test": d["y_test"].astype(np.int64)}
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
    z = read_npz(path, ["x", "y", "x_test", "y_test"])
    return Dataset("mnist1d", z["x"], z["y"], path, z["x_test"], z["y_test"])


def load_npz_dataset(path, test_size: float = 0.3, random_state: int = 0) -> Dataset:
    """An .npz with ``X, y`` (and optionally ``X_test, y_test``; else a stratified split)."""
    from sklearn.model_selection import train_test_split

    path = Path(path)
    z = read_npz(path, ["X", "y"], optional=["X_test", "y_test"])
    X, y = z["X"], z["y"]
    for name, arr in z.items():
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{path}: {name} must be numeric, got dtype {arr.dtype}")
    if len(X) != len(y):
        raise ValueError(f"{path}: X has {len(X)} rows but y has {len(y)}")
    if "X_test" in z and "y_test" in z:
        return Dataset(path.stem, X, y, path, z["X_test"], z["y_test"])
    try:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, stratify=y,
                                              random_state=random_state)
    except ValueError as exc:
        raise ValueError(f"{path}: cannot split into train and test parts ({exc})") from exc
    return Dataset(path.stem, Xtr, ytr, path, Xte, yte)


def load_dataset(name: str, cache_dir=None, random_state: int = 0) -> Dataset:
    """``"digits"``, ``"mnist1d"`` or a path to an ``.npz`` file."""
    if name == "digits":
        return load_digits_split(random_state=random_state)
    if name == "mnist1d":
        return load_mnist1d(cache_dir=cache_dir)
    if name.endswith(".npz") or Path(name).exists():
        return load_npz_dataset(name, random_state=random_state)  # clear error if missing
    raise ValueError(f"unknown dataset {name!r}: use 'digits', 'mnist1d' or a path to an .npz")
