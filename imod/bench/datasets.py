"""ADBench datasets: validated loading into the shared dataset record.

Names, suites, the catalogue and local discovery live in :mod:`imod.bench.catalogue`;
the record and the safe ``.npz`` reader are :mod:`imod._dataset`'s, shared with the
memorization tools.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imod._dataset import Dataset, read_npz
from imod.bench.catalogue import BUNDLED_DIR  # noqa: F401 - the doctest's data

__all__ = ["Dataset", "load_npz"]


def load_npz(path: str | os.PathLike[str], name: str | None = None) -> Dataset:
    """Load and validate an ADBench ``.npz`` file (keys ``X``, ``y``) without unpickling.

    Parameters
    ----------
    path : path-like
        The ``.npz`` file.
    name : str, optional
        Display name; defaults to the file stem.

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file and the problem when it is not a readable ``.npz`` archive (not a
        zip at all, corrupt or truncated zip, bad CRC), holds object arrays, lacks ``X`` or
        ``y``, or when ``X`` is not a finite numeric 2-D array or ``y`` not a 1-D 0/1 array of
        the same length.

    Examples
    --------
    >>> ds = load_npz(BUNDLED_DIR / "45_wine.npz")
    >>> ds.name, ds.X.shape, ds.X.dtype, int(ds.y.sum())
    ('45_wine', (129, 13), dtype('float64'), 10)

    A file that is not an ADBench archive is refused with the reason:

    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> bad = Path(tempfile.mkdtemp()) / "bad.npz"
    >>> np.savez(bad, X=np.ones((3, 2)), y=np.array([0, 2, 1]))
    >>> load_npz(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...bad.npz: y must be binary 0/1 (1 = outlier), found values [0 1 2]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    arrays = read_npz(path, ["X", "y"])
    X, y = _validate_arrays(arrays["X"], arrays["y"], str(path))
    return Dataset(name=name or path.stem, X=X, y=y, path=path)


def _validate_arrays(X: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, dtypes and values; return float64 X and int64 y."""
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{where}: X must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{where}: X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{where}: X is empty (shape {X.shape})")
    X = np.asarray(X, dtype=np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{where}: X contains {int((~np.isfinite(X)).sum())} NaN/inf values")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{where}: y must be numeric 0/1 labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{where}: y must be 1-D, got shape {y.shape}")
    if len(y) != X.shape[0]:
        raise ValueError(f"{where}: X has {X.shape[0]} rows but y has {len(y)} labels")
    values = np.unique(y)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{where}: y must be binary 0/1 (1 = outlier), found values {values[:10]}")
    return X, y.astype(np.int64)
