"""`imod memorize` faults as a user meets them, each reproduced with a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--members", "8", "--rate", "0.5", "--epochs", "1",
        "--hidden", "16", "--min-out", "1", "--block-size", "4", "--no-progress",
        "--threads", "1"]


def _imod(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "imod", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_memorize_resumes_over_a_damaged_block(tmp_path: Path):
    """Issue 19 fault 4: a damaged block is trained again on resume (real processes)."""
    out = tmp_path / "run"
    first = _imod("memorize", *TINY, "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    block = out / "members" / "block_0000004_0000008.npz"
    raw = bytearray(block.read_bytes())
    raw[100:200] = b"x" * 100  # a garbled array header
    block.write_bytes(bytes(raw))
    again = _imod("memorize", *TINY, "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert "members trained in this call: 4" in again.stdout
    assert (out / "summary.md").read_text().count("AUROC") >= 1


@pytest.mark.parametrize("case", ["missing", "text", "cut", "folder", "keys"])
def test_memorize_bad_dataset_file_is_a_clear_error(tmp_path: Path, case: str):
    """Issue 19 faults 4 and 9: a missing, foreign or damaged --dataset file, no traceback."""
    wine = REPO / "imod" / "data" / "45_wine.npz"
    path = tmp_path / "data.npz"
    expected = {
        "missing": f"--dataset {path}: no such file",
        "text": f"{path} is not an .npz archive",
        "cut": f"{path}: corrupt .npz archive",
        "folder": f"--dataset {tmp_path} is a folder",
        "keys": f"{path}: missing key(s) ['y']",
    }[case]
    if case == "text":
        path.write_text("X,y\n1,0\n")
    elif case == "cut":
        path.write_bytes(wine.read_bytes()[:3000])
    elif case == "keys":
        import numpy as np

        np.savez(path, X=np.ones((10, 2)))
    arg = str(tmp_path) if case == "folder" else str(path)
    res = _imod("memorize", *TINY, "--dataset", arg, "--out", str(tmp_path / "o"),
                cwd=tmp_path)
    assert res.returncode == 2
    assert expected in res.stderr and "pickle" not in res.stderr
    assert "Traceback" not in res.stderr


def test_memorize_config_mismatch_speaks_command_line(tmp_path: Path, capsys, one_thread):
    """Issue 19 fault 9: the refusal says --out / --overwrite, not overwrite=True."""
    from imod.cli import main

    out = tmp_path / "run"
    assert main(["memorize", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    tiny2 = list(TINY)
    tiny2[tiny2.index("--epochs") + 1] = "2"
    assert main(["memorize", *tiny2, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "trained with other settings (--epochs changed)" in err  # issue 25 (6)
    assert "Use another --out, or --overwrite" in err and "overwrite=True" not in err
    assert main(["memorize", *tiny2, "--out", str(out), "--overwrite"]) == 0


# --------------------------------------------------------------------------- issue 25


def test_memorize_diverging_training_is_an_error(tmp_path: Path):
    """Issue 25 (4): --lr 1e9 exited 0 calling 1,194 of 1,194 points memorized at chance
    accuracy, and advised "a larger --lr"."""
    res = _imod("memorize", "--members", "16", "--block-size", "4", "--epochs", "2",
                "--hidden", "8", "--lr", "1e9", "--no-progress", "--out", str(tmp_path / "x"),
                cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "training diverged" in res.stderr and "use a smaller --lr" in res.stderr
    assert "Traceback" not in res.stderr and "larger --lr" not in res.stderr
    assert not (tmp_path / "x" / "scores.csv").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--members", "0"], "--members must be 1 or more, got 0"),
    (["--threads", "-1"], "--threads must be 1 or more, got -1"),
    (["--device", "mps"], "--device mps: this machine has no MPS device"),
    (["--members", "4", "--min-out", "3"], "--members 4 is too few for --rate 0.5"),
    (["--out", ""], "--out: give a folder name"),
])
def test_memorize_bad_values_speak_command_line(tmp_path: Path, args, message):
    """Issue 25 (5, 6, 9): tracebacks (--threads -1, --device mps), Python words
    ('n_members' parameter of MemorizationEstimator, min_in=1 and min_out=3) and an
    empty --out writing into the current folder."""
    from imod._runtime import device_available

    if "mps" in args and device_available("mps"):
        pytest.skip("this machine has MPS")
    out = [] if "--out" in args else ["--out", str(tmp_path / "o")]
    res = _imod("memorize", *TINY, *args, *out, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert not any(w in res.stderr for w in ("n_members", "min_in", "MemorizationEstimator"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere


def test_memorize_single_class_names_the_label_plainly(tmp_path: Path):
    """Issue 25 (6): 'y has a single class (np.int64(0))'."""
    import numpy as np

    path = tmp_path / "one.npz"
    np.savez(path, X=np.random.default_rng(0).normal(size=(40, 3)), y=np.zeros(40, int))
    res = _imod("memorize", *TINY, "--dataset", str(path), "--out", str(tmp_path / "o"),
                cwd=tmp_path)
    assert res.returncode == 2 and "y has a single class (0)" in res.stderr, res.stderr
    assert "np.int64" not in res.stderr


def test_memorize_damaged_manifest_is_rebuilt_and_other_code_refused(tmp_path: Path):
    """Issue 25 (9): a damaged members/manifest.json offered only --overwrite; it is
    rebuilt from the blocks. Issue 25 (3): the manifest recorded no versions, so blocks
    made by other code were mixed in; a resume under another code digest is refused."""
    import json

    from imod.distributed.store import config_hash

    out = tmp_path / "run"
    assert _imod("memorize", *TINY, "--out", str(out), cwd=tmp_path).returncode == 0
    manifest = out / "members" / "manifest.json"
    assert json.loads(manifest.read_text())["config"]["extra"]["imod"]["version"]
    manifest.write_text('{"format_version": 1, "conf')  # cut by a full disk
    again = _imod("memorize", *TINY, "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "members trained in this call: 0" in again.stdout
    # Blocks recorded under another code state: refused, in command-line words.
    m = json.loads(manifest.read_text())
    m["config"]["extra"]["imod"]["code"] = "0123456789abcdef"
    m["config_hash"] = config_hash(m["config"])
    manifest.write_text(json.dumps(m))
    other = _imod("memorize", *TINY, "--out", str(out), cwd=tmp_path)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "the imod code (another version or edit) changed" in other.stderr, other.stderr
