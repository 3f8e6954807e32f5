"""Loading, validation and naming of ADBench datasets (real files only)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imod.bench.catalogue import (
    BUNDLED_DIR,
    DatasetNameError,
    catalogue,
    discover_local,
    manifest,
    resolve_datasets,
    resolve_name,
)
from imod.bench.datasets import load_npz
from imod.bench.download import sha256_file


def test_bundled_files_are_small_valid_and_official():
    files = sorted(BUNDLED_DIR.glob("*.npz"))
    assert 6 <= len(files) <= 8
    assert sum(f.stat().st_size for f in files) < 300_000
    sums = manifest()
    for f in files:
        d = load_npz(f)
        assert d.X.dtype == np.float64 and d.X.ndim == 2
        assert set(np.unique(d.y)) == {0, 1}
        assert sha256_file(f) == sums[f"Classical/{f.name}"]
    assert (BUNDLED_DIR / "LICENSE-ADBENCH.md").read_text().count("BSD 2-Clause") >= 1


def test_every_shared_file_loads_and_matches_manifest(adbench_dir: Path):
    sums = manifest()
    files = sorted(adbench_dir.glob("*/*.npz"))
    assert len(files) >= 40
    for f in files:
        rel = f"{f.parent.name}/{f.name}"
        assert rel in sums, rel
        if f.stat().st_size < 200_000:  # hashing/loading the big ones adds little
            assert sha256_file(f) == sums[rel]
            d = load_npz(f)
            assert len(d.y) == d.X.shape[0] > 0


def test_catalogue_lists_upstream_names():
    cat = catalogue()
    stems = {r.stem for r in cat}
    assert {"1_ALOI", "6_cardio", "7_Cardiotocography", "47_yeast", "CIFAR10_0",
            "MVTec-AD_zipper", "20news_3", "yelp"} <= stems
    assert sum(r.folder == "Classical" for r in cat) == 47
    assert all(rel.split("/")[1][:-4] in stems for rel in manifest())
    assert any(r.sha256 is None for r in cat)  # e.g. 3_backdoor: not in our manifest


def _tmp_copy(tmp_path: Path, name: str = "4_breastw.npz") -> Path:
    dst = tmp_path / name
    shutil.copy(BUNDLED_DIR / name, dst)
    dst.chmod(0o644)
    return dst


def test_garbage_file_gives_clear_error(tmp_path: Path):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"this is not a zip archive at all" * 10)
    with pytest.raises(ValueError, match="garbage.npz"):
        load_npz(bad)


def test_truncated_file_gives_clear_error(tmp_path: Path):
    f = _tmp_copy(tmp_path)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ValueError, match="4_breastw.npz"):
        load_npz(f)


def test_tampered_bytes_give_clear_error(tmp_path: Path):
    f = _tmp_copy(tmp_path, "29_Pima.npz")
    raw = bytearray(f.read_bytes())
    with zipfile.ZipFile(f) as zf:
        info = zf.getinfo("X.npy")
    # Flip bytes inside the compressed X member: zlib or the CRC check must notice.
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 64
    for i in range(start, start + 32):
        raw[i] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"29_Pima\.npz.*(corrupt|read)"):
        load_npz(f)


def test_object_arrays_are_refused(tmp_path: Path):
    f = tmp_path / "pickled.npz"
    np.savez(f, X=np.array([[1.0, 2.0]] * 4, dtype=object), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="pickled.npz"):
        load_npz(f)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.ones((4, 2))}, "missing key"),
        ({"X": np.ones(4), "y": np.array([0, 1, 0, 1])}, "2-D"),
        ({"X": np.ones((4, 2)), "y": np.array([0, 1, 2, 1])}, "binary"),
        ({"X": np.ones((4, 2)), "y": np.array([0, 1, 0])}, "3 labels"),
        ({"X": np.array([[1.0, np.nan]] * 4), "y": np.array([0, 1, 0, 1])}, "NaN"),
        ({"X": np.ones((4, 2)), "y": np.ones((4, 1))}, "1-D"),
    ],
)
def test_invalid_content(tmp_path: Path, arrays: dict, message: str):
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    with pytest.raises(ValueError, match=message):
        load_npz(f)


def test_names_cardio_vs_cardiotocography(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("IMOD_ADBENCH_DIR", raising=False)
    local = discover_local(data_dir=None, cache_dir="/nonexistent")
    assert resolve_name("cardio", local).stem == "6_cardio"
    assert resolve_name("6_cardio", local).stem == "6_cardio"
    assert resolve_name("CARDIO", local).stem == "6_cardio"
    assert resolve_name("Cardiotocography", local).stem == "7_Cardiotocography"
    assert resolve_name("cardiotocography", local).stem == "7_Cardiotocography"
    assert resolve_name("cardio", local).source == "bundled"
    assert resolve_name("Cardiotocography", local).path is None  # upstream only here
    assert resolve_name("CV_by_ViT/MVTec-AD_bottle", local).folder == "CV_by_ViT"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(DatasetNameError) as err:
        resolve_name("cardoi", [])
    msg = str(err.value)
    assert "6_cardio" in msg and "Did you mean" in msg and "Valid names" in msg
    assert "47_yeast" in msg


def test_data_dir_precedence_and_suites(adbench_dir: Path, tmp_path: Path):
    refs, missing = resolve_datasets(["classical"], data_dir=adbench_dir, cache_dir=tmp_path)
    assert len(refs) >= 30 and all(r.path is not None for r in refs)
    cardio = next(r for r in refs if r.stem == "6_cardio")
    assert cardio.source == "data-dir"
    assert {r.stem for r in missing} >= {"3_backdoor", "14_glass"}
    cv, _ = resolve_datasets(["cv"], data_dir=adbench_dir, cache_dir=tmp_path)
    assert {r.folder for r in cv} == {"CV_by_ResNet18"} and len(cv) >= 17
    mini, missing = resolve_datasets(["mini", "cardio"], cache_dir=tmp_path)
    assert not missing and [r.stem for r in mini].count("6_cardio") == 1


def test_data_dir_from_env(adbench_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IMOD_ADBENCH_DIR", str(adbench_dir))
    refs, missing = resolve_datasets(["Cardiotocography"], cache_dir=tmp_path)
    assert not missing and refs[0].source == "data-dir"
