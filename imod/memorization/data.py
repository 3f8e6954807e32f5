"""Datasets for the memorization tools: digits, MNIST-1D (generated locally), any .npz.

MNIST-1D is generated with the ``mnist1d`` package (``make_dataset`` with its
default arguments: 5,000 sequences of length 40, split 4,000 train / 1,000 test,
seed 42) and cached as an ``.npz`` file (no pickle) under the cache folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_dataset", "load_digits_split", "load_mnist1d", "default_cache_dir"]


@dataclass
class Dataset:
    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def default_cache_dir() -> Path:
    """``$IMOD_CACHE_DIR`` or ``~/.cache/imod``."""
    env = os.environ.get("IMOD_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "imod"


def load_digits_split(test_size: float = 0.3, random_state: int = 0) -> Dataset:
    """``sklearn.datasets.load_digits`` scaled to [0, 1], stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, stratify=y,
                                          random_state=random_state)
    return Dataset("digits", Xtr, ytr.astype(np.int64), Xte, yte.astype(np.int64))


def load_mnist1d(cache_dir=None, seed: int = 42) -> Dataset:
    """MNIST-1D (4,000 train / 1,000 test), generated once and cached as .npz."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "mnist1d"
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
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, x=d["x"].astype(np.float32), y=d["y"].astype(np.int64),
                 x_test=d["x_test"].astype(np.float32), y_test=d["y_test"].astype(np.int64))
        os.replace(tmp, path)
    with np.load(path, allow_pickle=False) as z:
        return Dataset("mnist1d", z["x"], z["y"], z["x_test"], z["y_test"])


def load_npz_dataset(path, test_size: float = 0.3, random_state: int = 0) -> Dataset:
    """An .npz with ``X, y`` (and optionally ``X_test, y_test``; else a stratified split)."""
    from sklearn.model_selection import train_test_split

    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if not {"X", "y"} <= keys:
            raise ValueError(f"{path} must hold arrays 'X' and 'y' (has {sorted(keys)})")
        X, y = z["X"], z["y"]
        if {"X_test", "y_test"} <= keys:
            return Dataset(path.stem, X, y, z["X_test"], z["y_test"])
    if len(X) != len(y):
        raise ValueError(f"{path}: X has {len(X)} rows but y has {len(y)}")
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, stratify=y,
                                          random_state=random_state)
    return Dataset(path.stem, Xtr, ytr, Xte, yte)


def load_dataset(name: str, cache_dir=None, random_state: int = 0) -> Dataset:
    """``"digits"``, ``"mnist1d"`` or a path to an ``.npz`` file."""
    if name == "digits":
        return load_digits_split(random_state=random_state)
    if name == "mnist1d":
        return load_mnist1d(cache_dir=cache_dir)
    if name.endswith(".npz") or Path(name).exists():
        return load_npz_dataset(name, random_state=random_state)
    raise ValueError(f"unknown dataset {name!r}: use 'digits', 'mnist1d' or a path to an .npz")
