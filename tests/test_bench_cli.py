"""Command line: help, argument errors (exit 2), a tiny run with all outputs, list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imod.bench.cli import parse_seeds
from imod.cli import main

REPO = Path(__file__).resolve().parents[1]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_python_m_imod_help():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "imod", "bench", "--help"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for option in ("--datasets", "--detectors", "--seeds", "--out", "--data-dir", "--mode",
                   "--download", "--resample-before-split", "--dedupe-test", "--reference",
                   "--overwrite", "--max-rows", "transductive", "WITH replacement"):
        assert option in res.stdout, option


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0 and "bench" in out and "list" in out


def test_unknown_detector_exits_2_with_choices(capsys: pytest.CaptureFixture[str]):
    code, _, err = _run(["bench", "--detectors", "IForrest", "--out", "x"], capsys)
    assert code == 2
    assert "Did you mean: IForest" in err and "Choices:" in err and "ECOD" in err


def test_unknown_dataset_exits_2_with_suggestions(capsys: pytest.CaptureFixture[str]):
    code, _, err = _run(["bench", "--datasets", "cardoi", "--out", "x"], capsys)
    assert code == 2 and "6_cardio" in err and "Valid names" in err


def test_bad_seeds_and_reference_exit_2(capsys: pytest.CaptureFixture[str]):
    assert _run(["bench", "--seeds", "x"], capsys)[0] == 2
    code, _, err = _run(["bench", "--detectors", "PCA", "--reference", "KNN"], capsys)
    assert code == 2 and "not among the detectors" in err
    code, _, err = _run(["bench", "--mode", "semi"], capsys)
    assert code == 2 and "transductive" in err


def test_missing_explicit_dataset_without_download(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("IMOD_ADBENCH_DIR", raising=False)
    code, _, err = _run(["bench", "--datasets", "Cardiotocography", "--cache-dir",
                         str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--download" in err


def test_parse_seeds():
    assert parse_seeds(["3"]) == [1, 2, 3]
    assert parse_seeds(["1", "2", "5"]) == [1, 2, 5]
    assert parse_seeds(["4-6", "9"]) == [4, 5, 6, 9]


def test_tiny_run_writes_all_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "res"
    code, stdout, _ = _run(["bench", "--datasets", "wine", "Hepatitis", "vertebral",
                            "--detectors", "PCA", "KNN", "HBOS", "--seeds", "2",
                            "--out", str(out), "--reference", "knn", "--quiet"], capsys)
    assert code == 0
    for name in ("results.csv", "run.json", "summary.md", "summary.csv",
                 "auroc_heatmap.png", "rank_plot.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "auroc_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((out / "run.json").read_text())
    assert config["protocol"]["mode"] == "inductive" and config["seeds"] == [1, 2]
    assert config["reference"] == "KNN"
    md = (out / "summary.md").read_text()
    assert "avg rank" in md and "p (ref > det)" in md and "15_Hepatitis" in md
    assert "| KNN |" in stdout
    # Same command again: everything resumes, nothing recomputed.
    before = (out / "results.csv").read_text()
    assert _run(["bench", "--datasets", "wine", "Hepatitis", "vertebral", "--detectors", "PCA",
                 "KNN", "HBOS", "--seeds", "2", "--out", str(out), "--quiet"], capsys)[0] == 0
    assert (out / "results.csv").read_text() == before
    # A different protocol into the same folder is refused.
    code, _, err = _run(["bench", "--datasets", "wine", "--detectors", "PCA", "--out", str(out),
                         "--mode", "transductive", "--quiet"], capsys)
    assert code == 2 and "--overwrite" in err


def test_list_shows_local_and_upstream(adbench_dir: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch):
    code, out, _ = _run(["list", "--data-dir", str(adbench_dir)], capsys)
    assert code == 0
    assert "6_cardio" in out and "data-dir" in out
    assert out.index("4_breastw") < out.index("10_cover")  # catalogue order
    assert "Upstream catalogue" in out and "3_backdoor?" in out and "CV_by_ResNet18" in out
    line = next(l for l in out.splitlines() if l.strip().startswith("45_wine"))
    assert "129" in line and "13" in line and "7.75" in line
    # Without a data folder (IMOD_ADBENCH_DIR unset, as conftest may set it) the bundled
    # files show.
    monkeypatch.delenv("IMOD_ADBENCH_DIR", raising=False)
    code, out, _ = _run(["list", "--local-only", "--cache-dir", str(adbench_dir / "none")],
                        capsys)
    assert code == 0 and "bundled" in out and "Upstream" not in out
