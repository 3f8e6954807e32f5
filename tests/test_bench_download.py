"""Download helper against a real local HTTP server mirroring the upstream layout."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imod.bench.catalogue import manifest, resolve_datasets
from imod.bench.download import ChecksumError, DownloadError, download, sha256_file
from imod.cli import main


@pytest.fixture
def mirror(adbench_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a tmp folder laid out like ``adbench/datasets`` on 127.0.0.1."""
    root = tmp_path / "mirror"
    (root / "Classical").mkdir(parents=True)
    for name in ("15_Hepatitis.npz", "39_vertebral.npz", "45_wine.npz", "46_WPBC.npz"):
        shutil.copy(adbench_dir / "Classical" / name, root / "Classical" / name)
    # A tampered copy: same name as an official file, one byte changed.
    bad = root / "Classical" / "45_wine.npz"
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad.chmod(0o644)
    bad.write_bytes(bytes(raw))
    # A file the manifest does not know.
    shutil.copy(adbench_dir / "Classical" / "4_breastw.npz", root / "Classical" / "99_extra.npz")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_download_verifies_and_caches(mirror: tuple[str, Path], tmp_path: Path):
    url, _ = mirror
    cache = tmp_path / "cache"
    path = download("Classical/15_Hepatitis.npz", cache_dir=cache, base_url_override=url)
    assert path == cache / "Classical" / "15_Hepatitis.npz"
    assert sha256_file(path) == manifest()["Classical/15_Hepatitis.npz"]
    # Cached: a second call does not need the server.
    assert download("Classical/15_Hepatitis.npz", cache_dir=cache,
                    base_url_override="http://127.0.0.1:9") == path
    refs, missing = resolve_datasets(["Hepatitis"], data_dir=tmp_path / "none", cache_dir=cache)
    assert refs[0].source == "cache" and not missing
    assert not list((cache / "Classical").glob("*.part"))


def test_env_base_url_and_stale_cache_refetched(
    mirror: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    url, _ = mirror
    monkeypatch.setenv("IMOD_ADBENCH_URL", url)
    monkeypatch.setenv("IMOD_CACHE_DIR", str(tmp_path / "envcache"))
    stale = tmp_path / "envcache" / "adbench" / "Classical" / "39_vertebral.npz"  # one cache root
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    path = download("Classical/39_vertebral.npz")
    assert path == stale and sha256_file(path) == manifest()["Classical/39_vertebral.npz"]


def test_corrupted_download_raises_and_leaves_nothing(mirror: tuple[str, Path], tmp_path: Path):
    url, _ = mirror
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="checksum mismatch.*45_wine"):
        download("Classical/45_wine.npz", cache_dir=cache, base_url_override=url)
    leftovers = list(cache.rglob("*")) if cache.exists() else []
    assert not [p for p in leftovers if p.is_file()]


def test_unknown_file_needs_explicit_hash(mirror: tuple[str, Path], tmp_path: Path,
                                          adbench_dir: Path):
    url, _ = mirror
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="no known SHA-256"):
        download("Classical/99_extra.npz", cache_dir=cache, base_url_override=url)
    sha = sha256_file(adbench_dir / "Classical" / "4_breastw.npz")
    path = download("Classical/99_extra.npz", cache_dir=cache, base_url_override=url, sha256=sha)
    assert path.is_file()
    with pytest.raises(ChecksumError):
        download("Classical/15_Hepatitis.npz", cache_dir=cache, base_url_override=url,
                 sha256="0" * 64)


def test_http_error_is_clear(mirror: tuple[str, Path], tmp_path: Path):
    url, _ = mirror
    with pytest.raises(DownloadError, match="could not download"):
        download("Classical/29_Pima.npz", cache_dir=tmp_path / "c", base_url_override=url)
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file()]


def test_cli_bench_download(mirror: tuple[str, Path], tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    url, _ = mirror
    monkeypatch.setenv("IMOD_ADBENCH_URL", url)
    monkeypatch.delenv("IMOD_ADBENCH_DIR", raising=False)
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["bench", "--datasets", "WPBC", "--detectors", "PCA", "--seeds", "1",
            "--cache-dir", str(cache), "--out", str(out), "--quiet", "--no-plots"]
    with pytest.raises(SystemExit) as exc:
        main(argv)  # not local and no --download: argparse error
    assert exc.value.code == 2
    assert main([*argv, "--download"]) == 0
    assert (cache / "NLP_by_BERT").exists() is False
    assert (cache / "Classical" / "46_WPBC.npz").is_file()
    assert "46_WPBC" in (out / "summary.md").read_text()
    capsys.readouterr()
