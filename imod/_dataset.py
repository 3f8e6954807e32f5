"""One dataset record and one safe ``.npz`` reader, shared by the bench and memorization.

Below every package (it imports only numpy): the bench's ADBench loader and the
memorization tools' loader both read files through :func:`read_npz` and hand back a
:class:`Dataset`, so a damaged or foreign file gets the same clear words everywhere.
"""

from __future__ import annotations

import os
import tokenize
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "read_npz"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass
class Dataset:
    """A loaded dataset: training rows, labels, and an optional held-out part.

    Attributes
    ----------
    name : str
        Display name.
    X : ndarray of shape (n_samples, ...)
    y : ndarray of shape (n_samples,)
        Outlier labels (bench: 1 = outlier) or class labels (memorization).
    path : Path or None
        File it was read from (None for generated data such as digits).
    X_test, y_test : ndarray or None
        Held-out rows, when the data comes with a split.

    Examples
    --------
    >>> ds = Dataset("toy", np.zeros((4, 2)), np.array([0, 0, 0, 1]))
    >>> ds.X.shape, ds.outlier_fraction, ds.path
    ((4, 2), 0.25, None)
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    path: Path | None = None
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def outlier_fraction(self) -> float:
        """Share of rows labelled 1."""
        return float(np.mean(self.y == 1)) if len(self.y) else float("nan")


def read_npz(path: str | os.PathLike, required: Sequence[str],
             optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Read arrays from an ``.npz`` file without unpickling, with clear errors.

    Parameters
    ----------
    path : path-like
    required : sequence of str
        Keys that must be present.
    optional : sequence of str
        Keys read when present.

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        Naming the file and the problem: not an ``.npz`` (zip) archive at all, a damaged
        archive, object arrays (which would need unpickling, refused), or missing keys.

    Examples
    --------
    >>> import tempfile
    >>> bad = Path(tempfile.mkdtemp()) / "notes.npz"
    >>> _ = bad.write_text("not numpy")
    >>> read_npz(bad, ["X"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...notes.npz is not an .npz archive (a NumPy .npz file is a zip file)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}"
                                + (" (it is a folder)" if path.is_dir() else ""))
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head not in _ZIP_MAGIC:
        raise ValueError(f"{path} is not an .npz archive (a NumPy .npz file is a zip file)")
    try:
        # allow_pickle=False: a data file must never be able to run code on load.
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            missing = [k for k in required if k not in keys]
            if missing:
                raise KeyError(tuple(missing), sorted(keys))
            return {k: data[k] for k in (*required, *optional) if k in keys}
    except KeyError as exc:
        if len(exc.args) == 2 and isinstance(exc.args[0], tuple):
            raise ValueError(f"{path}: missing key(s) {list(exc.args[0])}; it holds arrays "
                             f"{exc.args[1]}") from None
        raise ValueError(f"{path}: corrupt .npz archive ({exc})") from exc
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"{path} holds object arrays, which need unpickling; imod never "
                             "unpickles data files (save plain numeric arrays)") from exc
        raise ValueError(f"{path}: corrupt .npz archive ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError,
            tokenize.TokenError) as exc:  # a garbled array header fails in the tokenizer
        raise ValueError(f"{path}: corrupt .npz archive ({type(exc).__name__}: {exc})") from exc
