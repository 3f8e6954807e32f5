"""Fetch official ADBench files into the local cache, verified by SHA-256.

Files come from ``<base>/<folder>/<file>`` where ``base`` defaults to
``https://github.com/Minqi824/ADBench/raw/main/adbench/datasets`` and can be overridden by
the ``base_url`` argument or the ``IMOD_ADBENCH_URL`` environment variable (a mirror, or a
local server in tests). Every file is checked against ``imod/data/adbench_sha256.txt``;
files the manifest does not know are refused unless the caller passes the expected hash.
A download goes to a temporary file in the cache folder, is verified, and only then renamed
into place (atomic on one file system), so the cache never holds an unverified file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from imod._runtime import cache_dir as cache_root
from imod.bench.catalogue import DatasetRef, manifest
from imod.bench.datasets import load_npz

__all__ = ["DEFAULT_BASE_URL", "ChecksumError", "DownloadError", "download", "sha256_file"]

DEFAULT_BASE_URL = "https://github.com/Minqi824/ADBench/raw/main/adbench/datasets"
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched (network, HTTP status, refused unknown file).

    Examples
    --------
    A file the manifest does not know is refused before any network access:

    >>> download("Classical/not_a_dataset.npz")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    imod.bench.download.DownloadError: Classical/not_a_dataset.npz has no known SHA-256 ...
    """


class ChecksumError(DownloadError):
    """A fetched or cached file does not have the expected SHA-256.

    Examples
    --------
    >>> issubclass(ChecksumError, DownloadError)
    True
    >>> download("Classical/45_wine.npz", sha256="0" * 64)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    imod.bench.download.ChecksumError: Classical/45_wine.npz: given sha256 000... differs ...
    """


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "abc.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> sha256_file(path)
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    >>> from imod.bench.catalogue import BUNDLED_DIR
    >>> sha256_file(BUNDLED_DIR / "45_wine.npz") == manifest()["Classical/45_wine.npz"]
    True
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def base_url(override: str | None = None) -> str:
    """Base URL: the argument, else ``IMOD_ADBENCH_URL``, else the official repository."""
    return (override or os.environ.get("IMOD_ADBENCH_URL") or DEFAULT_BASE_URL).rstrip("/")


def download(
    ref: DatasetRef | str,
    cache_dir: str | os.PathLike[str] | None = None,
    base_url_override: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Return the cached, verified path of an upstream file, fetching it if needed.

    Parameters
    ----------
    ref : DatasetRef or str
        The dataset, or its upstream relative path ``folder/file.npz``.
    cache_dir : path-like, optional
        Cache root; defaults to ``imod._runtime.cache_dir("adbench")``.
    base_url_override : str, optional
        Base URL (see module docstring).
    sha256 : str, optional
        Expected hash; required for files the manifest does not know, and checked against the
        manifest when both are given.
    timeout : float
        Socket timeout in seconds.

    Returns
    -------
    Path
        ``<cache>/<folder>/<file>``.

    Raises
    ------
    DownloadError
        Unknown file without an explicit hash, or a network/HTTP failure.
    ChecksumError
        The downloaded bytes do not match the expected hash (nothing is left in the cache).

    Examples
    --------
    A verified file already in the cache is returned without any network access (here the
    cache is seeded with the bundled copy, which is byte-identical to upstream):

    >>> import shutil, tempfile
    >>> from imod.bench.catalogue import BUNDLED_DIR
    >>> cache = Path(tempfile.mkdtemp())
    >>> (cache / "Classical").mkdir()
    >>> _ = shutil.copy(BUNDLED_DIR / "45_wine.npz", cache / "Classical")
    >>> path = download(DatasetRef("Classical", "45_wine"), cache_dir=cache)
    >>> path == cache / "Classical" / "45_wine.npz"
    True
    """
    rel = ref.relpath if isinstance(ref, DatasetRef) else str(ref).removeprefix("./")
    if rel.count("/") != 1 or not rel.endswith(".npz") or ".." in rel:
        raise DownloadError(f"expected an upstream path 'folder/file.npz', got {rel!r}")
    official = manifest().get(rel)
    if sha256 is not None and official is not None and sha256.lower() != official:
        raise ChecksumError(f"{rel}: given sha256 {sha256} differs from the manifest {official}")
    expected = (sha256 or official or "").lower()
    if not expected:
        raise DownloadError(
            f"{rel} has no known SHA-256 in imod/data/adbench_sha256.txt, so it cannot be "
            "verified; refusing to download it. Pass sha256=... (the expected hash) to allow it."
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_root("adbench")
    folder, file = rel.split("/")
    dest = cache / folder / file
    if dest.is_file():
        if sha256_file(dest) == expected:
            return dest
        dest.unlink()  # a stale or damaged cache entry: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = f"{base_url(base_url_override)}/{folder}/{urllib.parse.quote(file)}"
    # Temporary file in the destination folder so the final rename stays on one file system.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{file}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
                    for chunk in iter(lambda: resp.read(_CHUNK), b""):
                        h.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as exc:
                raise DownloadError(f"could not download {url}: {exc}") from exc
        actual = h.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {rel} from {url}: expected sha256 {expected}, "
                f"got {actual}; the file was discarded"
            )
        load_npz(tmp, name=dest.stem)  # a verified hash given by the caller may still be wrong
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
