"""Scale-out (issue 8): blocks on a real Dask LocalCluster merge to one run's numbers;
resume, extension, a killed worker, and ``imod bench`` cells as tasks."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from imod._runtime import ConfigMismatchError
from imod.distributed import (
    EnsembleJob,
    missing_ranges,
    run_tasks,
    train_blocks,
)
from imod.engine import (
    Placement,
    Recorder,
    Recording,
    StackedMLP,
    Task,
    Training,
    balanced_mask,
    correctness,
    per_example_loss,
)
from imod.engine import train_ensemble as engine_train

distributed = pytest.importorskip("distributed")

N = 240
MODEL = StackedMLP((64, 16, 10))
TRAINING = Training(epochs=3, batch_size=32, random_state=5)
KW = dict(loss="cross_entropy", training=TRAINING, placement=Placement(device="cpu"))
EPOCHS_6 = {**KW, "training": Training(epochs=6, batch_size=32, random_state=5)}


def train_ensemble(model, X, y, *, mask, recorders, loss, training, placement):
    """One engine call over all members (the reference the blocks must match)."""
    return engine_train(Task(model, X, y, mask=mask, loss=loss), training, placement,
                        Recording(recorders))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return (X[:N] / 16).astype(np.float32), y[:N]


@pytest.fixture(scope="module")
def recorders(data) -> list[Recorder]:
    X, y = data
    return [Recorder("correct", correctness, reduce="last"),
            Recorder("loss", per_example_loss("cross_entropy"), X=X[:50], y=y[:50])]


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    return balanced_mask(12, N, 0.7, random_state=2)


@pytest.fixture(scope="module")
def reference(data, recorders, mask):
    """One single-process run over all 12 members."""
    X, y = data
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_ensemble(MODEL, X, y, mask=mask, recorders=recorders, **KW)
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as cl:
        cl.wait_for_workers(2, timeout=60)
        yield cl


def _check_same(res, ref, k: int | None = None) -> None:
    k = ref.mask.shape[0] if k is None else k
    np.testing.assert_array_equal(res.mask, ref.mask[:k])
    np.testing.assert_array_equal(res.records["correct"], ref.records["correct"][:k])
    np.testing.assert_allclose(res.records["loss"], ref.records["loss"][:, :k],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.record_epochs, ref.record_epochs)


def test_missing_ranges_and_local_backend_match_one_run(tmp_path, data, recorders, mask,
                                                        reference):
    assert missing_ranges(7, 3, [(0, 3), (3, 4)]) == [(4, 6), (6, 7)]
    X, y = data
    res = train_blocks(MODEL, X, y, mask=mask, block_size=5, recording=Recording(recorders),
                       store=tmp_path, keep_params=True, torch_threads=1, **KW)
    _check_same(res, reference)
    for k, v in reference.params.items():
        torch.testing.assert_close(res.params[k], v, rtol=1e-5, atol=1e-6)
    assert res.trained == [(0, 5), (5, 10), (10, 12)] and res.loaded == []
    # Stored blocks load without pickle and carry the config hash.
    with np.load(tmp_path / "block_0000000_0000005.npz", allow_pickle=False) as z:
        assert z["mask"].shape == (5, N) and z["rec__loss"].shape == (3, 5, 50)
    # Another configuration is refused with a clear error.
    with pytest.raises(ConfigMismatchError, match="differs in: train.epochs"):
        train_blocks(MODEL, X, y, mask=mask, block_size=5, recording=Recording(recorders),
                     store=tmp_path, **{**KW, "training": Training(epochs=4, batch_size=32,
                                                                  random_state=5)})


def test_dask_blocks_merge_to_single_process_numbers(tmp_path, client, data, recorders, mask,
                                                     reference):
    X, y = data
    res = train_blocks(MODEL, X, y, mask=mask, block_size=3, recording=Recording(recorders),
                       store=tmp_path, backend="dask", client=client, keep_params=True, **KW)
    _check_same(res, reference)
    for k, v in reference.params.items():
        torch.testing.assert_close(res.params[k], v, rtol=1e-5, atol=1e-6)
    assert len(res.trained) == 4
    assert set(res.workers.values()) <= set(client.scheduler_info()["workers"])
    # The store alone merges back to the same numbers.
    job = EnsembleJob(MODEL, X, y, mask=mask, recording=Recording(recorders), **KW)
    store = job.open_store(tmp_path)
    merged = store.merge(12, params=True)
    np.testing.assert_array_equal(merged.records["correct"], res.records["correct"])
    for k, v in res.params.items():
        torch.testing.assert_close(merged.params[k], v)


def test_interrupted_run_resumes_without_recomputing(tmp_path, client, data, recorders, mask,
                                                     reference):
    X, y = data
    seen = []

    def stop_after_two(block, done, total):
        seen.append((block.first, block.stop))
        if len(seen) == 2:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train_blocks(MODEL, X, y, mask=mask, block_size=2, recording=Recording(recorders),
                     store=tmp_path, backend="dask", client=client, callback=stop_after_two,
                     **KW)
    files = sorted(tmp_path.glob("block_*.npz"))
    assert len(files) >= 2
    mtimes = {f.name: f.stat().st_mtime_ns for f in files}
    time.sleep(0.05)
    res = train_blocks(MODEL, X, y, mask=mask, block_size=2, recording=Recording(recorders),
                       store=tmp_path, backend="dask", client=client, **KW)
    assert set(res.loaded) == {tuple(int(p) for p in f.stem.split("_")[1:]) for f in files}
    assert not set(res.trained) & set(res.loaded)
    assert {f.name: f.stat().st_mtime_ns for f in files} == mtimes  # not rewritten
    _check_same(res, reference)


def test_extension_trains_only_new_members(tmp_path, client, data, recorders, mask, reference,
                                           monkeypatch):
    X, y = data
    import imod.distributed.jobs as jobs

    monkeypatch.setattr(jobs, "_SCATTER_BYTES", 0)  # also exercise the broadcast path
    first = train_blocks(MODEL, X, y, mask=mask, n_members=8, block_size=3,
                         recording=Recording(recorders), store=tmp_path, torch_threads=1, **KW)
    assert first.trained == [(0, 3), (3, 6), (6, 8)]
    _check_same(first, reference, k=8)
    more = train_blocks(MODEL, X, y, mask=mask, block_size=3, recording=Recording(recorders),
                        store=tmp_path, backend="dask", client=client, **KW)
    assert more.trained == [(8, 9), (9, 12)] and more.loaded == first.trained
    _check_same(more, reference)
    # Changing the rows of finished members is refused.
    other = mask.copy()
    other[0] = ~other[0]
    with pytest.raises(ValueError, match="other mask rows"):
        train_blocks(MODEL, X, y, mask=other, block_size=3, recording=Recording(recorders),
                     store=tmp_path, **KW)


def test_bench_cells_as_tasks_write_the_same_rows(tmp_path, client):
    from imod.bench.catalogue import resolve_datasets
    from imod.bench.runner import read_results, run_benchmark
    from imod.cli import build_parser

    args = build_parser().parse_args(["bench", "--scheduler", "local-cluster:2"])
    assert args.scheduler == "local-cluster:2"
    refs, _ = resolve_datasets(["wine", "vertebral"])
    dets = ["IForest", "PCA"]
    local = run_benchmark(refs, dets, [1, 2], tmp_path / "a", progress=False, n_jobs=1)
    # Half the cells first (resume must skip them), then all of them on the cluster.
    run_benchmark(refs[:1], dets, [1, 2], tmp_path / "b", progress=False, n_jobs=1,
                  scheduler=client)
    dist = run_benchmark(refs, dets, [1, 2], tmp_path / "b", progress=False, n_jobs=1,
                         scheduler=client)
    assert len(read_results(tmp_path / "b" / "results.csv")) == 8  # no cell ran twice
    cols = ["dataset", "detector", "seed", "n_train", "n_test", "auroc", "aupr", "status"]
    key = ["dataset", "detector", "seed"]
    a = local[cols].sort_values(key).reset_index(drop=True)
    b = dist[cols].sort_values(key).reset_index(drop=True)
    assert (a["status"] == "ok").all()
    assert a.equals(b)


def test_tasks_that_raise_are_retried(tmp_path, client):
    out: dict = {}
    run_tasks(_flaky, [(0, (str(tmp_path),))], out.__setitem__, client=client, retries=2)
    assert out == {0: "ok"}
    with pytest.raises(RuntimeError, match="transient"):
        run_tasks(_flaky, [(0, (str(tmp_path / "again"),))], out.__setitem__, client=client,
                  retries=0)


def _flaky(folder: str) -> str:
    """Fails on its first call, succeeds on the second (state kept in a file)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / "called"
    if not marker.exists():
        marker.write_text("1")
        raise RuntimeError("transient failure")
    return "ok"


def test_killed_worker_does_not_lose_the_run(tmp_path, client, data, recorders, mask,
                                             reference):
    X, y = data
    killed: list[str] = []
    pids = client.run(os.getpid)  # worker address -> process id

    def kill_a_busy_worker(block, done, total):
        if killed:
            return
        busy = [w for w, keys in client.processing().items() if keys]
        target = busy[0] if busy else next(iter(pids))
        killed.append(target)
        os.kill(pids[target], signal.SIGKILL)  # the worker process dies mid-run

    res = train_blocks(MODEL, X, y, mask=mask, block_size=1, recording=Recording(recorders),
                       store=tmp_path, backend="dask", client=client, retries=3,
                       callback=kill_a_busy_worker, **EPOCHS_6)
    assert killed
    ref = train_ensemble(MODEL, X, y, mask=mask, recorders=recorders, **EPOCHS_6)
    _check_same(res, ref)
    assert len(res.trained) == 12
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_memorization_scores_on_dask_equal_in_process(tmp_path, client, data):
    """The memorization estimator's blocks as Dask tasks: same scores as in-process."""
    from imod.memorization import MemorizationEstimator

    X, y = data
    kw = dict(model=(16,), n_members=12, rate=0.5, epochs=3, batch_size=32, block_size=4,
              min_out=1, random_label_fraction=0.05, threshold=0.25, device="cpu",
              n_threads=1)
    Xt, yt = X[:40], y[:40]
    local = MemorizationEstimator(**kw).fit(X, y, Xt, yt)
    dask = MemorizationEstimator(scheduler=client, out_dir=tmp_path, **kw).fit(X, y, Xt, yt)
    np.testing.assert_array_equal(dask.mask_, local.mask_)
    np.testing.assert_array_equal(dask.correct_, local.correct_)
    np.testing.assert_array_equal(dask.correct_test_, local.correct_test_)
    np.testing.assert_array_equal(dask.scores_, local.scores_)
    assert set(dask.members_.workers.values()) <= set(client.scheduler_info()["workers"])
    # and the stored blocks reload in-process without training
    again = MemorizationEstimator(out_dir=tmp_path, **kw).fit(X, y, Xt, yt)
    assert again.members_.trained_members == 0
    np.testing.assert_array_equal(again.scores_, local.scores_)


def test_memorize_cli_on_a_scheduler_address(tmp_path, client):
    """``imod memorize --scheduler tcp://...`` trains its blocks on that cluster."""
    import json

    from imod.cli import main

    args = ["memorize", "--dataset", "digits", "--members", "8", "--rate", "0.5",
            "--epochs", "1", "--hidden", "16", "--min-out", "1", "--block-size", "4",
            "--no-progress", "--threads", "1"]
    assert main([*args, "--out", str(tmp_path / "dask"),
                 "--scheduler", client.scheduler.address]) == 0
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    a = json.loads((tmp_path / "dask" / "summary.json").read_text())
    b = json.loads((tmp_path / "local" / "summary.json").read_text())
    assert a["detection"] == b["detection"] and a["n_memorized"] == b["n_memorized"]
    sa = np.loadtxt(tmp_path / "dask" / "scores.csv", delimiter=",", skiprows=1, usecols=(6, 7, 8))
    sb = np.loadtxt(tmp_path / "local" / "scores.csv", delimiter=",", skiprows=1,
                    usecols=(6, 7, 8))
    np.testing.assert_array_equal(sa, sb)  # p_in, p_out, difference
    assert len(list((tmp_path / "dask" / "members").glob("block_*.npz"))) == 2


@pytest.mark.parametrize("damage", ["garble", "truncate", "params"])
def test_damaged_block_is_trained_again(tmp_path, data, recorders, mask, reference, damage):
    """Issue 19 fault 4: an unreadable block (or parameter file) is retrained, not fatal."""
    X, y = data
    kw = dict(mask=mask, block_size=6, recording=Recording(recorders), store=tmp_path,
              keep_params=True, torch_threads=1, **KW)
    first = train_blocks(MODEL, X, y, **kw)
    assert first.trained == [(0, 6), (6, 12)]
    block = tmp_path / "block_0000006_0000012.npz"
    if damage == "garble":  # bytes flipped inside an array header (a bad disk, a bad copy)
        raw = bytearray(block.read_bytes())
        raw[100:200] = b"x" * 100
        block.write_bytes(bytes(raw))
    elif damage == "truncate":  # cut short (a full disk)
        block.write_bytes(block.read_bytes()[:1000])
    else:
        (tmp_path / "params_0000006_0000012.pt").write_bytes(b"not a torch file")
    again = train_blocks(MODEL, X, y, **kw)
    assert again.trained == [(6, 12)] and again.loaded == [(0, 6)]
    _check_same(again, reference)
    with np.load(block, allow_pickle=False) as z:  # the block on disk is whole again
        assert z["mask"].shape == (6, N)
