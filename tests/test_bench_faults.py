"""Issue 19's bench faults, each reproduced with real processes, real data and damaged files.

Two runs on one --out, a row cut by a kill, a resume after imod's version changed, an --out
that is a file or read-only, a run whose every cell failed, and the first-run frictions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from imod.bench.catalogue import catalogue
from imod.bench.plots import heatmap_labels, seed_counts
from imod.bench.runner import read_results
from imod.bench.summary import per_dataset

REPO = Path(__file__).resolve().parents[1]
SLOW = "bench_helpers:SlowDetector"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("IMOD_ADBENCH_DIR", None)  # bundled data: the same files on every machine
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"),
                                         env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env | extra


def _imod(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imod", *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=300)


def _no_traceback(res: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-3000:]


# ----------------------------------------------------------------------------- fault 1


def test_second_run_on_the_same_out_is_refused_and_nothing_is_lost(tmp_path: Path):
    """Fault 1: a second `imod bench` on a folder in use is refused; the first loses nothing."""
    out = tmp_path / "out"
    release = tmp_path / "release"  # the first run's slow cells wait for it (IMOD_TEST_HOLD)
    first = subprocess.Popen(
        [sys.executable, "-m", "imod", "bench", "--datasets", "wine", "vertebral",
         "--detectors", SLOW, "PCA", "--seeds", "3", "--out", str(out), "--quiet",
         "--no-plots"],
        cwd=tmp_path, env=_env(IMOD_TEST_SLEEP="0", IMOD_TEST_HOLD=str(release)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = out / "results.csv"
    try:
        deadline = time.monotonic() + 120
        while not (results.exists() and len(results.read_text().splitlines()) >= 3):
            assert first.poll() is None, first.stderr.read()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rows_before = read_results(results)
        second = _imod("bench", "--datasets", "wine", "--detectors", "PCA", "--seeds", "1",
                       "--out", str(out), "--quiet", "--no-plots", cwd=tmp_path)
        assert first.poll() is None  # the first run was still working
    finally:
        release.touch()
        stdout, stderr = first.communicate(timeout=240)
    assert second.returncode == 2
    assert str(out) in second.stderr and "in use by another imod run" in second.stderr
    _no_traceback(second)
    assert first.returncode == 0, stderr[-2000:]
    final = read_results(results)
    assert len(final) == 12 and (final["status"] == "ok").all()
    assert not final.duplicated(["dataset", "detector", "seed"]).any()
    kept = rows_before.merge(final, on=["dataset", "detector", "seed"], suffixes=("", "_f"))
    assert len(kept) == len(rows_before)
    assert (kept["finished_at"] == kept["finished_at_f"]).all()
    assert "| PCA |" in stdout


# ----------------------------------------------------------------------------- fault 6


def test_a_cut_row_does_not_swallow_the_next_on_resume(tmp_path: Path):
    """Fault 6: a row cut by a kill is dropped alone; the cell is run again and summarized."""
    out = tmp_path / "out"
    args = ["bench", "--datasets", "wine", "--detectors", "PCA", "KNN", "--seeds", "1",
            "--out", str(out), "--quiet", "--no-plots"]
    assert _imod(*args, cwd=tmp_path).returncode == 0
    results = out / "results.csv"
    header, row1, row2 = results.read_text().splitlines()
    # As a kill in the middle of writing the first row leaves it (the second never came).
    results.write_text(header + "\n" + row1[: len(row1) // 2])
    res = _imod(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    final = read_results(results)
    assert sorted(final["detector"]) == ["KNN", "PCA"] and (final["status"] == "ok").all()
    summary = pd.read_csv(out / "summary.csv").set_index("detector")
    assert summary.loc["PCA", "datasets"] == 1 and summary.loc["KNN", "datasets"] == 1
    # The cut line stays as it was (nothing is rewritten) but is never read as a row.
    lines = results.read_text().splitlines()
    assert lines[1] == row1[: len(row1) // 2] and len(lines) == 4


# ----------------------------------------------------------------------------- fault 8


def test_resume_after_a_version_change_is_refused(tmp_path: Path):
    """Fault 8: run.json records imod's version; other versions never mix in one table."""
    import imod

    out = tmp_path / "out"
    args = ["bench", "--datasets", "wine", "--detectors", "PCA", "--seeds", "1",
            "--out", str(out), "--quiet", "--no-plots"]
    assert _imod(*args, cwd=tmp_path).returncode == 0
    run_json = out / "run.json"
    config = json.loads(run_json.read_text())
    assert config["versions"]["imod"] == imod.__version__
    assert {"numpy", "sklearn", "pyod", "python"} <= set(config["versions"])
    config["versions"]["imod"] = "0.0.1"  # as a run made by an older imod left it
    config["versions"]["numpy"] = "1.0.0"
    run_json.write_text(json.dumps(config))
    before = results_text = (out / "results.csv").read_text()
    res = _imod(*args[:-2], "--seeds", "2", "--quiet", "--no-plots", cwd=tmp_path)
    assert res.returncode == 2
    assert f"imod 0.0.1 -> {imod.__version__}" in res.stderr and "numpy 1.0.0 ->" in res.stderr
    assert "--overwrite" in res.stderr and "overwrite=True" not in res.stderr
    _no_traceback(res)
    assert json.loads(run_json.read_text())["versions"]["imod"] == "0.0.1"  # not overwritten
    assert (out / "results.csv").read_text() == before == results_text
    res = _imod(*args, "--overwrite", cwd=tmp_path)
    assert res.returncode == 0
    assert json.loads(run_json.read_text())["versions"]["imod"] == imod.__version__


# ----------------------------------------------------------------------------- fault 9


def test_out_that_is_a_file_is_a_clear_error(tmp_path: Path):
    """Fault 9: --out naming a file is a usage error in CLI words, for bench and memorize."""
    f = tmp_path / "taken.txt"
    f.write_text("mine")
    res = _imod("bench", "--datasets", "wine", "--detectors", "PCA", "--out", str(f),
                cwd=tmp_path)
    assert res.returncode == 2 and f"--out: {f} is a file, not a folder" in res.stderr
    assert "usage: imod bench" in res.stderr
    _no_traceback(res)
    res = _imod("memorize", "--members", "4", "--epochs", "1", "--out", str(f), cwd=tmp_path)
    assert res.returncode == 2 and f"--out: {f} is a file, not a folder" in res.stderr
    _no_traceback(res)
    assert f.read_text() == "mine"


@contextlib.contextmanager
def _read_only(folder: Path):
    """A folder nobody may write in: mode 0555, and immutable when we are root."""
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    try:
        if os.geteuid() == 0:
            if shutil.which("chattr") is None or subprocess.run(
                    ["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
                pytest.skip("running as root without chattr: cannot make a read-only folder")
            immutable = True
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_read_only_out_is_a_clear_error(tmp_path: Path):
    """Fault 9: a read-only --out (bench and memorize) says so, with no traceback."""
    with _read_only(tmp_path / "ro") as ro:
        for args in (["bench", "--datasets", "wine", "--detectors", "PCA"],
                     ["memorize", "--members", "4", "--epochs", "1"]):
            res = _imod(*args, "--out", str(ro), cwd=tmp_path)
            assert res.returncode == 2, res.stderr[-2000:]
            assert f"--out: cannot write in the folder {ro}" in res.stderr
            _no_traceback(res)
            res = _imod(*args, "--out", str(ro / "new"), cwd=tmp_path)
            assert res.returncode == 2 and f"cannot create the folder {ro / 'new'}" in res.stderr
            _no_traceback(res)


def test_run_where_every_cell_failed_exits_1_and_ranks_nothing(tmp_path: Path):
    """Fault 9: all cells failed -> exit 1, the reason shown, no ranking written."""
    out = tmp_path / "out"
    res = _imod("bench", "--datasets", "wine", "vertebral", "--detectors",
                "bench_helpers:CrashingDetector", "--seeds", "1", "--out", str(out),
                "--quiet", cwd=tmp_path)
    assert res.returncode == 1
    assert "every cell failed" in res.stderr and "deliberate failure in fit" in res.stderr
    assert "avg rank" not in res.stdout and not (out / "summary.md").exists()
    assert len(read_results(out / "results.csv")) == 2  # the error rows are kept
    _no_traceback(res)


def test_non_zip_npz_is_not_called_pickled_data(tmp_path: Path):
    """Fault 9: a text file named .npz is 'not an .npz archive', not 'pickled data'."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "45_wine.npz").write_text("X,y\n1,0\n")
    res = _imod("list", "--local-only", "--data-dir", str(data), cwd=tmp_path)
    assert res.returncode == 0
    line = next(x for x in res.stdout.splitlines() if x.strip().startswith("45_wine"))
    assert "is not an .npz archive" in line and "pickle" not in line
    res = _imod("bench", "--datasets", "wine", "--detectors", "PCA", "--seeds", "1",
                "--data-dir", str(data), "--out", str(tmp_path / "o"), "--quiet", cwd=tmp_path)
    assert res.returncode == 1 and "is not an .npz archive" in res.stderr
    assert "pickle" not in res.stderr
    _no_traceback(res)


# ----------------------------------------------------------------------------- fault 10


def test_missing_data_dir_is_an_error(tmp_path: Path):
    """Fault 10: a --data-dir that does not exist is refused, not silently replaced."""
    missing = tmp_path / "no-such-folder"
    for cmd in (["bench", "--datasets", "wine", "--out", str(tmp_path / "o")], ["list"]):
        res = _imod(*cmd, "--data-dir", str(missing), cwd=tmp_path)
        assert res.returncode == 2 and f"--data-dir {missing} does not exist" in res.stderr
        _no_traceback(res)
    assert not (tmp_path / "o").exists()
    res = _imod("list", cwd=tmp_path, IMOD_ADBENCH_DIR=str(missing))
    assert res.returncode == 2 and f"IMOD_ADBENCH_DIR={missing} is not a folder" in res.stderr


def test_download_names_the_missing_checksum(tmp_path: Path):
    """Fault 10: `--datasets glass --download` says the file has no known SHA-256."""
    glass = [r for r in catalogue() if r.stem == "14_glass"]
    assert glass and glass[0].sha256 is None  # the case this test is about
    res = _imod("bench", "--datasets", "glass", "--download", "--cache-dir",
                str(tmp_path / "cache"), "--out", str(tmp_path / "o"), cwd=tmp_path,
                IMOD_ADBENCH_URL="http://127.0.0.1:9")  # nothing may be fetched
    assert res.returncode == 2
    assert "14_glass" in res.stderr and "imod knows no SHA-256" in res.stderr
    assert "or --download" not in res.stderr
    _no_traceback(res)


def test_wrong_option_prints_the_subcommand_usage(tmp_path: Path):
    """Fault 10: an unknown option shows `imod bench`'s usage, not the root's."""
    res = _imod("bench", "--datasetz", "wine", cwd=tmp_path)
    assert res.returncode == 2
    assert "usage: imod bench" in res.stderr and "unrecognized arguments: --datasetz" in res.stderr


def test_list_keeps_hyphenated_names_whole(tmp_path: Path):
    """Fault 10: every word `imod list` prints for the catalogue is a name that resolves."""
    res = _imod("list", cwd=tmp_path)
    assert res.returncode == 0
    stems = {r.stem for r in catalogue()}
    block = res.stdout.split("Upstream catalogue", 1)[1].splitlines()[1:]
    words = [w.rstrip("*?") for line in block if line.startswith("    ") for w in line.split()]
    assert len(words) == len(catalogue())
    assert set(words) == stems
    assert any("-" in w for w in words)  # e.g. MVTec-AD_bottle, printed whole


def test_help_imports_no_heavy_library(tmp_path: Path):
    """Fault 10: `imod --help` and `imod bench --help` load no torch, sklearn or pandas."""
    for args in (["--help"], ["bench", "--help"], ["list", "--help"]):
        res = subprocess.run([sys.executable, "-X", "importtime", "-m", "imod", *args],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0
        loaded = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()
                  if line.startswith("import time:")}
        assert not loaded & {"torch", "sklearn", "pandas", "scipy"}, args


def test_heatmap_marks_values_from_fewer_seeds_and_run_json_names_the_reference(
        tmp_path: Path):
    """Fault 10: a value from 1 of 2 seeds is marked; run.json names the console's reference."""
    out = tmp_path / "out"
    res = _imod("bench", "--datasets", "wine", "--detectors", "bench_helpers:SeedTwoFails",
                "PCA", "--seeds", "2", "--out", str(out), "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "1 of 4 cells failed" in res.stderr
    results = read_results(out / "results.csv")
    labels = heatmap_labels(per_dataset(results), seed_counts(results), n_seeds=2)
    assert labels[0][0].endswith("*") and not labels[0][1].endswith("*")
    assert (out / "auroc_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((out / "run.json").read_text())
    assert config["reference"] == "bench_helpers:SeedTwoFails"
    assert "reference bench_helpers:SeedTwoFails" in res.stdout


# ----------------------------------------------------------------------------- issue 25


@pytest.mark.parametrize(("args", "message"), [
    (["--scheduler", "bogus"], "--scheduler: 'bogus' is neither local-cluster:N nor"),
    (["--seeds", "1.5"], "--seeds: '1.5' is not a whole number"),
    (["--seeds", "4294967296"], "--seeds: seeds must be between 0 and 4294967295"),
    (["--n-jobs", "0"], "--n-jobs 0 runs nothing"),
    (["--max-rows", "1"], "--max-rows must be 0 (never subsample) or at least 100"),
    (["--out", ""], "--out: give a folder name"),
])
def test_bad_options_are_refused_before_any_cell(tmp_path: Path, args, message):
    """Issue 25 (5, 6, 7, 9): --scheduler bogus ended in 20 frames of traceback, --seeds 1.5
    said 'invalid literal for int()', and --seeds 4294967296, --n-jobs 0, --max-rows 1 were
    accepted and then failed in every cell; --out "" wrote into the current folder."""
    out = [] if "--out" in args else ["--out", str(tmp_path / "o")]
    res = _imod("bench", "--datasets", "wine", "--detectors", "PCA", *args, *out, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr, res.stderr[-2000:]
    assert "usage: imod bench" in res.stderr and "invalid literal" not in res.stderr
    _no_traceback(res)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_says_that_rerunning_resumes(tmp_path: Path):
    """Issue 25 (5): Ctrl-C mid-run gave 19 frames of traceback."""
    import signal

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "imod", "bench", "--datasets", "wine", "--detectors", SLOW,
           "--seeds", "4", "--out", str(out), "--quiet", "--no-plots"]
    # SIGINT as a terminal sends it (a shell's background job would inherit it ignored)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(IMOD_TEST_SLEEP="0.5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = out / "results.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            results.exists() and len(results.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "re-running the same command resumes" in err
    assert "Traceback" not in err
    kept = read_results(results)
    assert 1 <= len(kept) < 4 and (kept["status"] == "ok").all()


def test_a_full_disk_is_a_clear_error(tmp_path: Path):
    """Issue 25 (5): a full disk (OSError errno 28) ended in a traceback. results.csv is a
    link to /dev/full, which answers every write with ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").symlink_to("/dev/full")
    res = _imod("bench", "--datasets", "wine", "--detectors", "PCA", "--seeds", "1",
                "--out", str(out), "--quiet", "--no-plots", cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    assert f"cannot write in {out}: No space left on device" in res.stderr
    assert "re-run the same command: it resumes" in res.stderr
    _no_traceback(res)


def test_a_detector_calling_sys_exit_fails_its_cells_not_the_run(tmp_path: Path):
    """Issue 25 (9): a detector raising SystemExit ended the run silently with exit 0."""
    res = _imod("bench", "--datasets", "wine", "--detectors", "bench_helpers:ExitingDetector",
                "PCA", "--seeds", "1", "--out", str(tmp_path / "o"), "--quiet", "--no-plots",
                cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = read_results(tmp_path / "o" / "results.csv").set_index("detector")
    assert rows.loc["PCA", "status"] == "ok"
    assert rows.loc["bench_helpers:ExitingDetector", "error"] == (
        "SystemExit: the detector called sys.exit(3)")
    assert "1 of 2 cells failed" in res.stderr


def test_names_printed_by_list_paste_back_with_their_marks(tmp_path: Path):
    """Issue 25 (9): `imod list` prints wine* (local) and glass? (no SHA-256): pasted back
    into --datasets, those names failed."""
    listing = _imod("list", "--data-dir", str(tmp_path), cwd=tmp_path)
    words = listing.stdout.split()
    assert "45_wine*" in words, listing.stdout[-2000:]
    res = _imod("bench", "--datasets", "45_wine*", "--detectors", "PCA", "--seeds", "1",
                "--out", str(tmp_path / "o"), "--quiet", "--no-plots", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert set(read_results(tmp_path / "o" / "results.csv")["dataset"]) == {"45_wine"}


def test_resume_with_other_code_or_detector_parameters_is_refused(tmp_path: Path):
    """Issue 25 (3): __version__ stayed 0.1.0 through every commit and run.json could not
    tell code states apart. run.json records imod's code digest and each detector's
    parameters; a resume under another of either is refused."""
    out = tmp_path / "o"
    run = ["bench", "--datasets", "wine", "--detectors", "PCA", "--seeds", "1", "--out",
           str(out), "--quiet", "--no-plots"]
    assert _imod(*run, cwd=tmp_path).returncode == 0
    cfg = json.loads((out / "run.json").read_text())
    assert len(cfg["versions"]["imod_code"]) == 16
    assert cfg["detector_params"]["PCA"]["n_components"] == "None"
    assert len(cfg["detector_params"]["PCA"]["class file"]) == 16  # pyod's pca.py
    edited = dict(cfg, versions=dict(cfg["versions"], imod_code="0123456789abcdef"))
    (out / "run.json").write_text(json.dumps(edited))
    res = _imod(*run, cwd=tmp_path)
    assert res.returncode == 2 and "imod_code 0123456789abcdef -> " in res.stderr
    _no_traceback(res)
    params = dict(cfg["detector_params"], PCA=dict(cfg["detector_params"]["PCA"],
                                                   n_components="3"))
    (out / "run.json").write_text(json.dumps(dict(cfg, detector_params=params)))
    res = _imod(*run, cwd=tmp_path)
    assert res.returncode == 2 and "PCA's parameters changed (n_components)" in res.stderr
