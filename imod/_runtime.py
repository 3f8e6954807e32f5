"""What every package needs from the machine: threads, device, cache folder, safe writes.

One copy of each, below the engine: nothing here imports another imod module.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

__all__ = [
    "ConfigMismatchError",
    "FolderInUseError",
    "TrainingDiverged",
    "array_digest",
    "atomic_write",
    "cache_dir",
    "device_available",
    "folder_argument",
    "folder_lock",
    "output_folder",
    "resolve_device",
    "torch_threads",
]

LOCK_NAME = ".imod.lock"


class ConfigMismatchError(ValueError):
    """A folder holds results made under another configuration (every package raises this).

    ``str(exc)`` speaks Python (``overwrite=True``); :meth:`cli_message` speaks the
    command line (``--out``, ``--overwrite``).

    Examples
    --------
    >>> exc = ConfigMismatchError("runs/a", ["protocol changed"])
    >>> "overwrite=True" in str(exc), exc.problems
    (True, ['protocol changed'])
    >>> print(exc.cli_message())  # doctest: +NORMALIZE_WHITESPACE
    runs/a holds results from a different configuration: protocol changed.
    Use another --out, or --overwrite to discard them.
    """

    def __init__(self, folder: str | os.PathLike, problems: list[str] | str,
                 changed: tuple[str, ...] | list[str] = ()) -> None:
        self.folder = Path(folder)
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.changed = tuple(changed)  # dotted configuration keys, for a command's own words
        super().__init__(f"{self._what()} Use another folder, or overwrite=True (--overwrite on "
                         "the command line) to discard them.")

    def __reduce__(self):  # picklable with its arguments (Dask sends exceptions)
        return type(self), (self.folder, self.problems, self.changed)

    def _what(self) -> str:
        return (f"{self.folder} holds results from a different configuration: "
                f"{'; '.join(self.problems)}.")

    def cli_message(self, flag: str = "--out") -> str:
        """The message in command-line words."""
        return f"{self._what()} Use another {flag}, or --overwrite to discard them."


class TrainingDiverged(ValueError):
    """Training produced non-finite losses, weights or outputs (a learning rate or initial
    scale far too large). The detector and the memorization estimator raise it; the
    command line says it in its own words."""


class FolderInUseError(RuntimeError):
    """Another imod process holds the lock on an output folder."""

    def cli_message(self, flag: str = "--out") -> str:
        """The message in command-line words, naming the flag that gave the folder."""
        return f"{flag} {self}"


def folder_argument(text: str) -> Path:
    """``argparse`` type of an output folder flag: an empty name is refused (it would
    write into the current folder).

    Examples
    --------
    >>> folder_argument("runs/a").as_posix()
    'runs/a'
    """
    import argparse

    if not text.strip():
        raise argparse.ArgumentTypeError("give a folder name (an empty one would write into the "
                                         "current folder)")
    return Path(text)


def output_folder(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Raises
    ------
    ValueError
        In plain words when ``path`` is a file, cannot be created, or is read-only.

    Examples
    --------
    >>> import tempfile
    >>> f = tempfile.NamedTemporaryFile(suffix=".txt", delete=False).name
    >>> output_folder(f)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ....txt is a file, not a folder
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the folder {path}: {exc.strerror or exc}") from exc
    try:
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise ValueError(f"cannot write in the folder {path}: {exc.strerror or exc}") from exc
    return path


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, wait: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on an output folder for the block (``folder/.imod.lock``).

    The operating system drops the lock when the process ends, however it ends, so a
    killed run never leaves a stale lock. Without ``wait`` a second holder is refused
    at once with :class:`FolderInUseError` naming the folder and the other process.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with folder_lock(d):
    ...     with folder_lock(d):  # doctest: +ELLIPSIS
    ...         pass
    Traceback (most recent call last):
    ...
    imod._runtime.FolderInUseError: ... is in use by another imod run (process ...)...
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks here
        yield folder
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise FolderInUseError(
                f"{folder} is in use by another imod run (process {other}); wait for it to "
                "finish, or use another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's CPU thread count inside the block (restored afterwards).

    ``None`` leaves torch's global setting alone. Small networks train fastest
    on one thread: OpenMP start-up and spin-waits cost more than they save, and
    on a loaded 2-core machine they made training 50x slower.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def resolve_device(device):
    """``"auto"`` picks CUDA when available, else the CPU; other names are checked.

    A device this machine lacks (``"cuda"`` without CUDA, ``"mps"`` off Apple silicon)
    is a ``ValueError`` before any work, not a failure deep inside torch.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda", "mps")
    True
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: unknown device 'tpu'; use 'auto', 'cpu', 'cuda[:i]' or 'mps'
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda[:i]' or "
                         "'mps'") from exc
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda[:i]' or 'mps'")
    if not device_available(dev):
        raise ValueError(f"device={device!r} was requested but this machine has no "
                         f"{dev.type.upper()} device; use 'auto' or 'cpu'")
    return dev


def device_available(device) -> bool:
    """Whether this machine has ``device``'s kind (the CPU always; CUDA or MPS if present).

    Examples
    --------
    >>> device_available("cpu")
    True
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return True
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available())
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return True


def cache_dir(*parts: str) -> Path:
    """imod's cache folder: ``$IMOD_CACHE_DIR`` or ``~/.cache/imod``, then ``parts``.

    Every package keeps its downloads in a sub-folder of this one place
    (``cache_dir("adbench")``, ``cache_dir("mnist1d")``).

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"IMOD_CACHE_DIR": "/tmp/c"}):
    ...     print(cache_dir("adbench").as_posix())
    /tmp/c/adbench
    """
    env = os.environ.get("IMOD_CACHE_DIR")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "imod"
    return root.joinpath(*parts)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file so that readers see the old content or the new, never a part.

    ``write(f)`` fills a temporary file in the same folder, which is flushed,
    synced and renamed over ``path``; on any error the temporary file is
    removed and ``path`` is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = atomic_write(f"{d}/a.txt", lambda f: f.write(b"hello"))
    >>> p.read_bytes()
    b'hello'
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode open() would: 0666
        # less the umask, so a shared results folder stays readable as the user set it.
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def array_digest(*arrays) -> str:
    """SHA-256 of arrays' shapes, dtypes and bytes (None is hashed as a marker).

    Ties saved results to the data they came from.

    Examples
    --------
    >>> import numpy as np
    >>> array_digest(np.zeros(3)) == array_digest(np.zeros(3))
    True
    """
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"<none>")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.shape}|{a.dtype.str}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()
