"""ADBench's synthetic anomaly types from a real set's inliers (benchmarks/studies, issue 23)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ks_2samp
from sklearn.covariance import EmpiricalCovariance
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "studies"))
from _common import bench_names, fold_of, kind_of  # noqa: E402
from synthetic_anomalies import TYPES, make_task, split_name, task_name  # noqa: E402


@pytest.fixture(scope="module")
def cardio(adbench_dir):
    with np.load(adbench_dir / "Classical" / "6_cardio.npz", allow_pickle=False) as f:
        return f["X"], f["y"]


def test_dependency_anomalies_keep_every_marginal_and_break_the_joint(cardio):
    X, y = make_task(*cardio, "dependency", seed=0)
    inliers, out = X[y == 0], X[y == 1]
    # Every feature's anomalies pass a two-sample test against the inliers (Bonferroni 5 %).
    pvalues = [ks_2samp(inliers[:, j], out[:, j]).pvalue for j in range(X.shape[1])]
    assert min(pvalues) > 0.05 / X.shape[1]
    # A per-feature score barely sees them; a correlation-based one (Mahalanobis) does.
    per_feature = np.abs((X - inliers.mean(0)) / inliers.std(0)).max(axis=1)
    joint = EmpiricalCovariance().fit(inliers).mahalanobis(X)
    assert roc_auc_score(y, per_feature) < 0.65
    assert roc_auc_score(y, joint) > 0.9


@pytest.mark.parametrize("kind", TYPES)
def test_task_keeps_the_real_inliers_and_anomaly_rate_and_is_seeded(cardio, kind):
    X0, y0 = cardio
    X, y = make_task(X0, y0, kind, seed=1)
    assert X.shape == (len(y0), X0.shape[1])
    assert y.sum() == y0.sum()  # 1,655 inliers, 176 anomalies: the source's rate
    real = {r.tobytes() for r in X0[y0 == 0]}
    assert all(r.tobytes() in real for r in X[y == 0])
    X2, y2 = make_task(X0, y0, kind, seed=1)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(X, make_task(X0, y0, kind, seed=2)[0])


def test_global_anomalies_fill_the_widened_range_and_scaled_mixtures_leave_the_inliers(cardio):
    X0, y0 = cardio
    inliers = X0[y0 == 0]
    lo, hi = inliers.min(0), inliers.max(0)
    X, y = make_task(X0, y0, "global", seed=0)
    pad = 0.05 * (hi - lo)
    assert np.all(X[y == 1] >= lo - pad - 1e-12) and np.all(X[y == 1] <= hi + pad + 1e-12)
    assert np.mean(np.any((X[y == 1] < lo) | (X[y == 1] > hi), axis=1)) > 0.5
    # Local (covariances x5) and clustered (means x5) anomalies lie further from the inliers
    # than the inliers do from each other, by Mahalanobis distance.
    for kind in ("local", "clustered"):
        X, y = make_task(X0, y0, kind, seed=0)
        d = EmpiricalCovariance().fit(X[y == 0]).mahalanobis(X)
        assert np.median(d[y == 1]) > 3 * np.median(d[y == 0])


def test_every_synthetic_task_is_in_its_source_sets_fold():
    folds, kinds = fold_of(), kind_of()
    names = [n for t in TYPES for n in bench_names(t)]
    assert len(names) == len(set(names)) == 120
    for name in names:
        source, kind = split_name(name)
        assert folds[name] == folds[source] and kinds[name] == kind
    assert split_name("6_cardio") is None and task_name("6_cardio", "local") in folds
