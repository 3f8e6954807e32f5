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

__all__ = ["array_digest", "atomic_write", "cache_dir", "resolve_device", "torch_threads"]


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

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: unknown device 'tpu'; use 'auto', 'cpu' or 'cuda[:i]'
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:i]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available")
    return dev


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
