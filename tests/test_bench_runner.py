"""Runner: incremental rows, resume after a kill, failures recorded, config checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bench_helpers
import pandas as pd
import pytest

from imod._runtime import ConfigMismatchError
from imod.bench.catalogue import resolve_datasets
from imod.bench.protocol import ProtocolConfig
from imod.bench.runner import read_results, run_benchmark
from imod.bench.summary import summarize, write_summary

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"),
                                         env.get("PYTHONPATH", "")])
    return env


def test_rows_are_written_as_cells_finish_and_errors_do_not_stop(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    refs, _ = resolve_datasets(["wine", "vertebral"])
    out = tmp_path / "out"
    monkeypatch.setenv("IMOD_TEST_RESULTS", str(out / "results.csv"))
    bench_helpers.RowCountingDetector.seen.clear()
    dets = ["bench_helpers:CrashingDetector", "bench_helpers:RowCountingDetector", "PCA"]
    res = run_benchmark(refs, dets, [1, 2], out, progress=False)
    # The counting detector runs 2nd of 3 per (dataset, seed): it sees every earlier row.
    assert bench_helpers.RowCountingDetector.seen == [1, 4, 7, 10]
    assert len(res) == 12 and len(read_results(out / "results.csv")) == 12
    crash = res[res["detector"] == dets[0]]
    assert (crash["status"] == "error").all()
    assert crash["error"].str.contains("deliberate failure").all()
    assert (res[res["detector"] != dets[0]]["status"] == "ok").all()
    table = summarize(res, reference="PCA")
    assert table.set_index("detector").loc[dets[0], "errors"] == 4
    _, md = write_summary(res, out)
    assert (out / "summary.md").is_file() and "| detector |" in md


def test_protocol_mismatch_refused_unless_overwrite(tmp_path: Path):
    refs, _ = resolve_datasets(["wine"])
    run_benchmark(refs, ["PCA"], [1], tmp_path, progress=False)
    with pytest.raises(ConfigMismatchError, match="--overwrite"):
        run_benchmark(refs, ["PCA"], [1], tmp_path, ProtocolConfig(mode="transductive"),
                      progress=False)
    res = run_benchmark(refs, ["PCA"], [1], tmp_path, ProtocolConfig(mode="transductive"),
                        overwrite=True, progress=False)
    assert list(res["mode"]) == ["transductive"] and res["n_test"].iloc[0] == 1000


def test_extending_a_run_reuses_finished_cells(tmp_path: Path):
    refs, _ = resolve_datasets(["wine"])
    first = run_benchmark(refs, ["PCA"], [1], tmp_path, progress=False)
    second = run_benchmark(refs, ["PCA", "KNN"], [1, 2], tmp_path, progress=False)
    assert len(second) == 4
    again = second[(second["detector"] == "PCA") & (second["seed"] == 1)]
    assert again["finished_at"].iloc[0] == first["finished_at"].iloc[0]


def test_cli_resume_after_kill(tmp_path: Path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "imod", "bench", "--datasets", "wine", "vertebral",
           "--detectors", "bench_helpers:SlowDetector", "PCA", "--seeds", "3",
           "--out", str(out), "--quiet", "--no-plots"]
    env = _env() | {"IMOD_TEST_SLEEP": "0.5"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    results = out / "results.csv"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if results.exists() and len(results.read_text().splitlines()) >= 4:
                break
            if proc.poll() is not None:
                pytest.fail(f"bench ended early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    partial = read_results(results)
    assert 3 <= len(partial) < 12
    assert (partial["status"] == "ok").all()

    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    final = read_results(results)
    assert len(final) == 12
    assert not final.duplicated(["dataset", "detector", "seed"]).any()
    # The rows finished before the kill are kept as they were, not recomputed.
    merged = partial.merge(final, on=["dataset", "detector", "seed"], suffixes=("", "_new"))
    assert len(merged) == len(partial)
    assert (merged["finished_at"] == merged["finished_at_new"]).all()
    assert "| detector |" in done.stdout and (out / "summary.md").is_file()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["detector"]) == {"bench_helpers:SlowDetector", "PCA"}
