"""The ADBench protocol: sizes, stratification, scaling, no labels, modes, score direction."""

from __future__ import annotations

from pathlib import Path

import bench_helpers
import numpy as np
import pytest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

from imod.bench.catalogue import BUNDLED_DIR
from imod.bench.datasets import load_npz
from imod.bench.detectors import (
    DetectorNameError,
    canonical_name,
    imdetector_available,
    make_detector,
    outlier_scores,
)
from imod.bench.protocol import ProtocolConfig, evaluate, prepare_split


@pytest.fixture(scope="module")
def wine():
    return load_npz(BUNDLED_DIR / "45_wine.npz")  # 129 rows, 10 outliers


def test_small_dataset_resampled_to_1000_then_split_70_30(wine):
    s = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig())
    assert (len(s.y_train), len(s.y_test)) == (700, 300)
    # Stratified: both parts keep the outlier share of the resampled data within one row.
    total = s.y_train.sum() + s.y_test.sum()
    assert abs(s.y_test.sum() - 0.3 * total) <= 1
    # Min-max fitted on the training part only.
    assert s.X_train.min() == pytest.approx(0.0) and s.X_train.max() == pytest.approx(1.0)
    assert np.allclose(s.X_train.min(axis=0)[np.ptp(s.X_train, axis=0) > 0], 0.0)
    # Resampling with replacement before the split: the original has no 1000 distinct rows.
    assert len(np.unique(np.vstack([s.X_train, s.X_test]), axis=0)) <= len(wine.y)


def test_reproduces_official_index_stream(wine):
    """Same draws as ADBench: np.random.seed(seed); choice; train_test_split(global state)."""
    seed = 2
    np.random.seed(seed)  # noqa: NPY002 - emulating the official code on purpose
    idx = np.random.choice(np.arange(len(wine.y)), 1000, replace=True)  # noqa: NPY002
    X, y = wine.X[idx], wine.y[idx]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, shuffle=True, stratify=y)
    scaler = MinMaxScaler().fit(X_tr)
    s = prepare_split(wine.X, wine.y, seed=seed, config=ProtocolConfig())
    np.testing.assert_allclose(s.X_train, scaler.transform(X_tr))
    np.testing.assert_allclose(s.X_test, scaler.transform(X_te))
    np.testing.assert_array_equal(s.y_test, y_te)


def test_mid_size_dataset_equals_random_state_seed(adbench_dir: Path):
    d = load_npz(adbench_dir / "Classical" / "7_Cardiotocography.npz")  # 2114 rows
    s = prepare_split(d.X, d.y, seed=3, config=ProtocolConfig())
    X_tr, X_te, _, y_te = train_test_split(d.X, d.y, test_size=0.3, stratify=d.y,
                                           random_state=3, shuffle=True)
    scaler = MinMaxScaler().fit(X_tr)
    np.testing.assert_allclose(s.X_test, scaler.transform(X_te))
    np.testing.assert_array_equal(s.y_test, y_te)


def test_large_dataset_subsampled_to_max_rows(adbench_dir: Path):
    d = load_npz(adbench_dir / "Classical" / "23_mammography.npz")  # 11183 rows
    s = prepare_split(d.X, d.y, seed=1, config=ProtocolConfig())
    assert (len(s.y_train), len(s.y_test)) == (7000, 3000)
    small = prepare_split(d.X, d.y, seed=1, config=ProtocolConfig(max_rows=2000))
    assert len(small.y_train) + len(small.y_test) == 2000


def test_split_first_keeps_test_rows_original(wine):
    cfg = ProtocolConfig(resample_before_split=False)
    s = prepare_split(wine.X, wine.y, seed=1, config=cfg)
    assert len(s.y_train) == 700
    assert len(s.y_test) == round(0.3 * len(wine.y)) or abs(len(s.y_test) - 39) <= 1
    train_rows = {r.tobytes() for r in s.X_train}
    # Only rows that are duplicated in the original file may appear on both sides.
    n_dup_original = len(wine.y) - len(np.unique(wine.X, axis=0))
    assert sum(r.tobytes() in train_rows for r in s.X_test) <= n_dup_original


def test_dedupe_test_drops_training_duplicates(wine):
    plain = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig())
    dd = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig(dedupe_test=True))
    assert len(dd.y_test) < len(plain.y_test)
    train_rows = {r.tobytes() for r in dd.X_train}
    assert not any(r.tobytes() in train_rows for r in dd.X_test)


def test_transductive_fits_and_scores_all_rows(wine):
    s = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig(mode="transductive"))
    assert len(s.y_train) == len(s.y_test) == 1000
    assert s.X_train is s.X_test
    assert s.X_train.min() == 0.0 and s.X_train.max() == 1.0


def test_labels_never_reach_fit(wine):
    bench_helpers.SpyDetector.calls.clear()
    s = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig())
    res = evaluate("bench_helpers:SpyDetector", s, seed=7)
    assert res.status == "ok", res.error
    (call,) = bench_helpers.SpyDetector.calls
    assert call["args"] == () and call["kwargs"] == {}
    np.testing.assert_array_equal(call["X"], s.X_train)
    assert call["random_state"] == 7
    # Higher score_samples = more normal, so the benchmark negates it: AUROC well above 0.5.
    assert res.auroc > 0.6 and 0 < res.aupr <= 1
    assert (res.n_train, res.n_test, res.n_features) == (700, 300, wine.X.shape[1])


def test_score_direction_sklearn_and_pyod(wine):
    s = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig())
    sk = evaluate("sklearn.ensemble:IsolationForest", s, seed=1)
    py = evaluate("IForest", s, seed=1)
    assert sk.status == py.status == "ok"
    assert sk.auroc > 0.6 and py.auroc > 0.6
    det = make_detector("sklearn.ensemble:IsolationForest", 1, s.X_train.shape[1]).fit(s.X_train)
    np.testing.assert_allclose(outlier_scores(det, s.X_test), -det.score_samples(s.X_test))


def test_failures_are_recorded_not_raised(wine):
    s = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig())
    crash = evaluate("bench_helpers:CrashingDetector", s, seed=1)
    assert crash.status == "error" and "deliberate failure" in crash.error
    nan = evaluate("bench_helpers:NaNDetector", s, seed=1)
    assert nan.status == "error" and "NaN" in nan.error


def test_builtin_detectors_construct_with_pyod_requirements():
    for name in ("DeepSVDD", "AutoEncoder", "IForest", "LODA", "CBLOF", "OCSVM"):
        det = make_detector(name, seed=3, n_features=5)
        assert det is not None
    assert make_detector("DeepSVDD", 3, 5).n_features == 5
    assert make_detector("IForest", 3, 5).random_state == 3
    assert canonical_name("iforest") == "IForest"
    with pytest.raises(DetectorNameError, match="Choices: IMDetector"):
        canonical_name("IsolationForrest")
    with pytest.raises(DetectorNameError, match="cannot import"):
        canonical_name("no_such_module_xyz:Thing")


def test_imdetector_when_available(wine):
    ok, _ = imdetector_available()
    if not ok:
        pytest.skip("imod.detector.IMDetector is not importable yet")
    s = prepare_split(wine.X, wine.y, seed=1, config=ProtocolConfig())
    res = evaluate("IMDetector", s, seed=1)
    assert res.status == "ok", res.error
    assert 0.0 <= res.auroc <= 1.0
