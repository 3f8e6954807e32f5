"""Options added by the accuracy study: quantile preprocessing, the initial recording."""

from __future__ import annotations

import numpy as np
import pytest

from imod import IMDetector, IMPreprocessor

FAST = dict(n_members=3, max_updates=30, n_recordings=4, random_state=0, device="cpu")


def test_quantile_is_rank_gauss_and_extrapolates():
    rng = np.random.default_rng(0)
    X = np.c_[rng.lognormal(sigma=2, size=2000), rng.random(2000) < 0.05]
    pre = IMPreprocessor("quantile").fit(X)
    Z = pre.transform(X)
    # the skewed column becomes roughly standard normal, order preserved
    assert abs(Z[:, 0].mean()) < 0.05 and abs(Z[:, 0].std() - 1) < 0.05
    order = np.argsort(X[:, 0])
    assert np.all(np.diff(Z[order, 0]) >= -1e-12)
    # tied binary values: zeros near 0, ones far out
    assert abs(Z[X[:, 1] == 0, 1].mean()) < 0.2 and Z[X[:, 1] == 1, 1].min() > 1.5
    # beyond the training range values keep growing (new outliers stay extreme)
    hi = pre.transform([[X[:, 0].max() * 2, 0.0], [X[:, 0].max() * 4, 0.0]])[:, 0]
    assert Z[:, 0].max() < hi[0] < hi[1]


def test_quantile_persistence(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.exponential(size=(150, 3))
    det = IMDetector(preprocessing="quantile", **FAST).fit(X)
    det.save(tmp_path / "m")
    same = IMDetector.load(tmp_path / "m")
    np.testing.assert_array_equal(same.score_samples(X), det.score_samples(X))


@pytest.mark.parametrize("include", [False, True])
def test_include_initial_records_update_zero(include):
    X = np.random.default_rng(2).normal(size=(200, 4))
    det = IMDetector(include_initial=include, **FAST).fit(X)
    assert len(det.views_) == 3  # the default views; each records its own updates
    for view in det.views_:
        assert (view.record_updates_[0] == 0) == include
    assert np.isfinite(det.train_scores_).all()
