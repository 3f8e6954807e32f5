"""MemorizationEstimator on real data (digits subsets, small MLPs): LOO, null, resume, utility."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from imod.memorization import (
    ConfigMismatchError,
    MemorizationEstimator,
    influence_matrix,
    leave_one_out_reference,
    load_digits_split,
    marginal_utility,
    sampling_rate_study,
)
from imod.memorization.estimator import NotMemorizedWarning
from imod.memorization.runs import TrainingConfig, train_in_blocks

# Tiny models: one torch thread avoids OpenMP spin-waits on a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def small(digits):
    rng = np.random.default_rng(0)
    tr = rng.choice(len(digits.y), 400, replace=False)
    te = rng.choice(len(digits.y_test), 150, replace=False)
    return digits.X[tr], digits.y[tr], digits.X_test[te], digits.y_test[te]


@pytest.fixture(scope="module")
def fitted(small):
    X, y, Xt, yt = small
    est = MemorizationEstimator(model=(256,), n_members=32, rate=0.7, epochs=80, batch_size=16,
                                score="fractional", random_label_fraction=0.1, block_size=32,
                                random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return est.fit(X, y, Xt, yt)


def test_subsampled_estimator_approaches_leave_one_out(digits):
    rng = np.random.default_rng(1)
    sub = rng.choice(len(digits.y), 60, replace=False)
    X, y = digits.X[sub], digits.y[sub]
    common = dict(epochs=25, batch_size=16, random_state=0, device="cpu")
    loo = leave_one_out_reference((32,), X, y, n_seeds=8, **common)
    assert loo.correct_loo.shape == (8, 60)
    table = sampling_rate_study((32,), X, y, loo=loo, rates=(0.1, 0.95), n_target=8, **common)
    lo, hi = table.iloc[0], table.iloc[1]
    assert hi.out_count >= 8 and lo.in_count >= 8
    # near leave-one-out: small error, strong agreement with the exact reference
    assert hi.mae_p_out < 0.15 and hi.mae_difference < 0.15
    assert hi.pearson_difference > 0.5
    # the critique's sampling bias: a low rate overstates memorization and errs more
    assert lo.mae_difference > hi.mae_difference
    assert lo.bias_difference > hi.bias_difference


def test_fitted_attributes_and_influence_equals_loop(fitted, small):
    X, y, Xt, yt = small
    est = fitted
    n, m = len(y), len(yt)
    assert est.mask_.shape == (32, n) and est.correct_test_.shape == (32, m)
    assert (est.in_counts_ == round(0.7 * 32)).all()  # balanced: every example IN 22 members
    assert (est.out_counts_ == 10).all()
    np.testing.assert_allclose(est.difference_, est.p_in_ - est.p_out_)
    np.testing.assert_allclose(est.scores_, est.fractional_)
    assert est.influence_.shape == (n, m)
    # brute force over a few pairs
    for i, j in [(0, 0), (5, 17), (399, 149), (123, 42)]:
        ins = est.mask_[:, i]
        expect = est.correct_test_[ins, j].mean() - est.correct_test_[~ins, j].mean()
        assert est.influence_[i, j] == pytest.approx(expect, abs=1e-6)
    np.testing.assert_allclose(est.influence_, influence_matrix(est.mask_, est.correct_test_))
    pairs = est.high_influence_pairs()
    assert (pairs.memorization >= 0.25).all() and (pairs.influence >= 0.15).all()
    assert not set(pairs.train_index) & set(est.random_label_idx_)
    df = est.to_frame()
    assert len(df) == n and df.random_label.sum() == len(est.random_label_idx_) == 40


def test_random_labels_null_threshold_and_memorized_set(fitted):
    est = fitted
    rl = est.random_label_idx_
    assert (est.y_train_[rl] != est.y_clean_[rl]).all()  # always a *different* class
    assert (est.y_train_[~est.is_random_label_] == est.y_clean_[~est.is_random_label_]).all()
    for name in ("difference", "fractional"):
        assert est.detection_[name]["auroc"] > 0.5
        assert 0.0 <= est.detection_[name]["fpr_at_95tpr"] <= 1.0
    # the default (lower) side: 95 % of the random-label points score at or above it,
    # and natural points at or above it are memorized
    assert est.threshold_ == pytest.approx(np.quantile(est.null_scores_, 0.05))
    assert (est.null_scores_ >= est.threshold_).mean() >= 0.95
    expect = np.flatnonzero((est.scores_ >= est.threshold_) & ~est.is_random_label_)
    np.testing.assert_array_equal(est.memorized_, expect)
    assert est.memorized_.size > 0
    # the upper side (the critique's Eq. 3), strict
    thr = est.null_threshold_for("difference", side="upper")
    assert thr == pytest.approx(np.quantile(est.difference_[rl], 0.95))
    assert (est.memorized_for(est.difference_, thr)
            == ((est.difference_ > thr) & ~est.is_random_label_)).all()


@pytest.mark.filterwarnings("ignore::imod.memorization.estimator.NotMemorizedWarning")
def test_resume_after_interruption_and_extension_match_one_run(small, tmp_path):
    X, y, _, _ = small
    X, y = X[:120], y[:120]
    kw = dict(model=(16,), rate=0.5, epochs=3, batch_size=16, block_size=8, min_out=1,
              random_label_fraction=0.1, threshold=0.25, influence=False, device="cpu")
    ref = MemorizationEstimator(n_members=24, **kw).fit(X, y)

    class Kill(Exception):
        pass

    def boom(b, done, total):
        if b == 1:
            raise Kill

    est = MemorizationEstimator(n_members=24, out_dir=tmp_path / "a", **kw)
    import imod.memorization.estimator as mod

    orig = mod.train_in_blocks
    mod.train_in_blocks = lambda *a, **k: orig(*a, **(k | {"callback": boom}))
    try:
        with pytest.raises(Kill):
            est.fit(X, y)
    finally:
        mod.train_in_blocks = orig
    assert sorted(p.name for p in (tmp_path / "a").glob("block_*.npz")) == [
        "block_0000000_0000008.npz", "block_0000008_0000016.npz"]
    resumed = MemorizationEstimator(n_members=24, out_dir=tmp_path / "a", **kw).fit(X, y)
    assert resumed.members_.trained_members == 8  # only the third block was trained
    np.testing.assert_array_equal(resumed.mask_, ref.mask_)
    np.testing.assert_array_equal(resumed.correct_, ref.correct_)
    np.testing.assert_array_equal(resumed.scores_, ref.scores_)

    # extension: 12 members (one full + one half block), then 24 = one run of 24
    MemorizationEstimator(n_members=12, out_dir=tmp_path / "b", **kw).fit(X, y)
    ext = MemorizationEstimator(n_members=24, out_dir=tmp_path / "b", **kw).fit(X, y)
    assert ext.members_.trained_members == 16  # the half block is retrained at full size
    np.testing.assert_array_equal(ext.mask_, ref.mask_)
    np.testing.assert_array_equal(ext.correct_, ref.correct_)
    np.testing.assert_array_equal(ext.difference_, ref.difference_)
    with pytest.raises(ConfigMismatchError, match="epochs"):
        MemorizationEstimator(n_members=24, out_dir=tmp_path / "b",
                              **(kw | {"epochs": 4})).fit(X, y)


def test_block_files_load_without_pickle(small, tmp_path):
    X, y, Xt, yt = small
    from imod.engine import StackedMLP, balanced_mask

    res = train_in_blocks(StackedMLP((64, 8, 10)), X[:50], y[:50], n_members=4,
                          mask_for_block=lambda b, s: balanced_mask(s, 50, 0.5, random_state=b),
                          rate=0.5, training=TrainingConfig(epochs=1, batch_size=16, block_size=4),
                          X_test=Xt[:10], y_test=yt[:10], out_dir=tmp_path)
    with np.load(tmp_path / "block_0000000_0000004.npz", allow_pickle=False) as z:
        assert set(z.files) >= {"mask", "rec__correct_train", "rec__correct_test",
                                "rec__margin_train", "rec__confidence_train", "config_hash"}
        np.testing.assert_array_equal(z["rec__correct_test"], res.correct_test)


@pytest.mark.filterwarnings("ignore::imod.memorization.estimator.NotMemorizedWarning")
def test_module_factory_path_on_image_shaped_data(small):
    X, y, _, _ = small
    images = X[:100].reshape(-1, 1, 8, 8)

    def factory():
        return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                                   torch.nn.Flatten(), torch.nn.Linear(4 * 36, 10))

    est = MemorizationEstimator(model=factory, n_members=8, rate=0.5, epochs=2, batch_size=16,
                                threshold=0.25, random_label_fraction=0.05, min_out=1,
                                device="cpu").fit(images, y[:100])
    assert est.scores_.shape == (100,) and np.isfinite(est.scores_).all()
    with pytest.raises(ValueError, match="module factory"):
        MemorizationEstimator(n_members=8, rate=0.5, min_out=1).fit(images, y[:100])


def test_marginal_utility_returns_paired_t_test(small):
    X, y, Xt, yt = small
    from imod.engine import StackedMLP

    u = marginal_utility(StackedMLP((64, 16, 10)), X[:200], y[:200], Xt, yt,
                         remove_idx=np.arange(20), n_models=4,
                         training=TrainingConfig(epochs=3, batch_size=16, block_size=4))
    assert u.n_removed == 20 and u.acc_removed.shape == (4,) == u.acc_random.shape
    from scipy.stats import ttest_rel

    assert u.pvalue == pytest.approx(ttest_rel(u.acc_removed, u.acc_random).pvalue)
    assert u.mean_diff == pytest.approx((u.acc_removed - u.acc_random).mean())
    sub = u.on_subset(np.arange(50))
    assert len(sub.test_idx) == 50 and sub.acc_removed.shape == (4,)


@pytest.mark.parametrize(
    "kwargs, data, match",
    [
        ({}, "single", "single class"),
        ({}, "mismatch", "labels"),
        ({"rate": 0.0}, None, "'rate' parameter"),
        ({"rate": 1.0}, None, "'rate' parameter"),
        ({"rate": 1.5}, None, "'rate' parameter"),
        ({"epochs": "long"}, None, "'epochs' parameter"),
        ({"null_side": "middle"}, None, "'null_side' parameter"),
        ({"n_members": 10, "rate": 0.95}, None, "too few members"),
        ({"n_members": 4, "rate": 0.1, "min_out": 1}, None, "too few members"),
        ({"score": "ratio"}, None, "score"),
        ({"threshold": "null", "random_label_fraction": 0.0}, None, "random_label_fraction"),
        ({}, "test_only_X", "both X_test"),
    ],
)
def test_bad_input_errors(small, kwargs, data, match):
    X, y, Xt, yt = small
    X, y = X[:40], y[:40]
    est = MemorizationEstimator(**({"n_members": 8, "rate": 0.5, "epochs": 1, "min_out": 1,
                                    "device": "cpu"} | kwargs))
    args = (X, y)
    extra = {}
    if data == "single":
        args = (X, np.zeros(40, int))
    elif data == "mismatch":
        args = (X, y[:-1])
    elif data == "test_only_X":
        extra = {"X_test": Xt}
    with pytest.raises(ValueError, match=match):
        est.fit(*args, **extra)


def test_fitted_reports_in_sample_accuracy_of_natural_and_random_label_rows(fitted):
    est = fitted
    rl = est.is_random_label_
    expect_nat = est.correct_[est.mask_ & ~rl[None]].mean()
    expect_rnd = est.correct_[est.mask_ & rl[None]].mean()
    assert est.in_sample_accuracy_["natural"] == pytest.approx(expect_nat)
    assert est.in_sample_accuracy_["random_label"] == pytest.approx(expect_rnd)
    # this fixture's members memorize: the random labels are fit and found
    assert est.in_sample_accuracy_["random_label"] > 0.9 and est.null_meaningful_
    assert est.detection_["fractional"]["auroc"] > 0.9


def test_under_fit_members_warn_that_the_null_threshold_means_nothing(small):
    X, y, _, _ = small
    est = MemorizationEstimator(model=(16,), n_members=8, rate=0.5, epochs=1, batch_size=64,
                                min_out=1, block_size=8, random_label_fraction=0.1,
                                influence=False, device="cpu")
    with pytest.warns(NotMemorizedWarning, match="epochs") as rec:
        est.fit(X, y)
    assert any("near chance" in str(w.message) for w in rec) or \
        est.detection_["fractional"]["auroc"] >= 0.6
    assert est.in_sample_accuracy_["random_label"] < 0.9
    assert not est.null_meaningful_


def test_auto_epochs_fit_the_random_labels_of_caller_noisy_digits(digits):
    # a cut-down version of the target (benchmarks/studies/memorization_targets.py):
    # 5 % of the labels replaced by the caller, the estimator's defaults otherwise
    X, y = digits.X[:300], digits.y[:300].copy()
    rng = np.random.default_rng(3)
    bad = rng.choice(len(y), 15, replace=False)
    y[bad] = (y[bad] + rng.integers(1, 10, size=15)) % 10
    est = MemorizationEstimator(n_members=16, device="cpu").fit(X, y)
    assert est.epochs != est.epochs_ and 1 <= est.epochs_ <= 200
    assert est.in_sample_accuracy_["random_label"] > 0.9
    is_bad = np.zeros(len(y), bool)
    is_bad[bad] = True
    from imod.memorization import detection_metrics

    assert detection_metrics(est.fractional_, is_bad)["auroc"] > 0.9
    assert est.null_meaningful_ and est.memorized_.size > 0
    # the one-run proxy from the pilot's recordings finds the replaced labels too (0.975
    # when written), and the split-half stability of the 16 members is reported
    assert detection_metrics(est.cumulative_loss_, is_bad)["auroc"] > 0.9
    assert est.stability_["members_per_half"] == 8 and 0 < est.stability_["spearman"] < 1


def test_get_set_params_come_from_base_estimator():
    from sklearn.base import BaseEstimator, clone

    est = MemorizationEstimator(n_members=8, rate=0.5)
    assert isinstance(est, BaseEstimator)
    assert "get_params" not in MemorizationEstimator.__dict__
    assert clone(est).get_params()["n_members"] == 8
    assert est.set_params(rate=0.9).rate == 0.9
    with pytest.raises(TypeError):
        MemorizationEstimator(8)  # keyword-only
