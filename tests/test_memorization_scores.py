"""Pure score functions: influence, fractional 0/0, starved examples, thresholds, leakage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import ttest_rel

from imod.engine import balanced_mask, bernoulli_mask
from imod.memorization import (
    StarvedExamplesWarning,
    detection_metrics,
    find_near_duplicates,
    fpr_at_tpr,
    fractional_difference,
    high_influence_pairs,
    influence_matrix,
    load_digits_split,
    null_threshold,
    paired_report,
    subsample_scores,
)


def brute_force(mask, correct):
    """p_in - p_out per (row example, column) by explicit loops."""
    K, n = mask.shape
    out = np.empty((n, correct.shape[1]))
    for i in range(n):
        ins = [k for k in range(K) if mask[k, i]]
        outs = [k for k in range(K) if not mask[k, i]]
        for j in range(correct.shape[1]):
            out[i, j] = (sum(correct[k, j] for k in ins) / len(ins)
                         - sum(correct[k, j] for k in outs) / len(outs))
    return out


def test_influence_equals_brute_force_loop():
    rng = np.random.default_rng(0)
    mask = bernoulli_mask(40, 15, 0.6, random_state=1)
    mask[:3, :] = True  # make sure every column has IN members
    mask[3:8, :] = False
    correct = rng.random((40, 9)) < 0.7
    infl = influence_matrix(mask, correct, min_out=1)
    np.testing.assert_allclose(infl, brute_force(mask, correct), atol=1e-6)


def test_self_influence_is_the_difference_score():
    rng = np.random.default_rng(1)
    mask = balanced_mask(30, 12, 0.5, random_state=0)
    correct = rng.random((30, 12)) < 0.6
    s = subsample_scores(mask, correct)
    np.testing.assert_allclose(np.diag(influence_matrix(mask, correct)), s.difference, atol=1e-6)
    assert (s.in_counts == 15).all() and (s.out_counts == 15).all()


def test_fractional_zero_over_zero_is_zero_and_paper_examples():
    f = fractional_difference([0.25, 1.0, 0.0, np.nan, 0.0], [0.0, 0.75, 0.0, 0.5, 0.5])
    assert f[0] == 1.0  # the critique's outlier: 25 % vs 0 % -> 100 %
    assert f[1] == pytest.approx(0.25 / 1.75)  # inlier: 100 % vs 75 % -> 14.3 %
    assert f[2] == 0.0  # never correct either way: no evidence of memorization
    assert np.isnan(f[3])
    assert f[4] == -1.0
    # through the estimator's path: an example never classified correctly
    mask = balanced_mask(10, 40, 0.5, random_state=0)
    correct = np.ones((10, 40), bool)
    correct[:, 2] = False
    s = subsample_scores(mask, correct)
    assert s.fractional[2] == 0.0 and s.difference[2] == 0.0


def test_starved_examples_get_nan_and_a_warning():
    mask = balanced_mask(20, 6, 0.5, random_state=0)
    mask[:, 0] = True  # example 0 never held out
    mask[:, 1] = True
    mask[:2, 1] = False  # example 1 held out by 2 < min_out=3 members
    correct = np.ones((20, 6), bool)
    with pytest.warns(StarvedExamplesWarning, match="2 of 6 examples"):
        s = subsample_scores(mask, correct, min_out=3)
    assert np.isnan(s.difference[:2]).all() and np.isnan(s.fractional[:2]).all()
    assert np.isnan(s.p_out[:2]).all()
    assert np.isfinite(s.difference[2:]).all()
    with pytest.warns(StarvedExamplesWarning):
        infl = influence_matrix(mask, correct, min_out=3)
    assert np.isnan(infl[:2]).all() and np.isfinite(infl[2:]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        subsample_scores(mask[:, 2:], correct[:, 2:], min_out=3)  # no warning when fine


def test_null_threshold_sides_and_errors():
    null = np.arange(101) / 100.0
    assert null_threshold(null, 0.05) == pytest.approx(0.95)
    assert null_threshold(null, 0.05, side="lower") == pytest.approx(0.05)
    assert null_threshold(np.r_[null, np.nan], 0.1) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="alpha"):
        null_threshold(null, 1.5)
    with pytest.raises(ValueError, match="no finite null"):
        null_threshold([np.nan], 0.05)


def test_detection_metrics_and_fpr_at_tpr():
    y = np.r_[np.ones(20, bool), np.zeros(80, bool)]
    perfect = np.r_[np.ones(20), np.zeros(80)]
    m = detection_metrics(perfect, y)
    assert m["auroc"] == 1.0 and m["aupr"] == 1.0 and m["fpr_at_95tpr"] == 0.0
    # positives tied with half the negatives: reaching 95 % TPR costs 50 % FPR
    tied = np.r_[np.ones(20), np.ones(40), np.zeros(40)]
    assert fpr_at_tpr(y, tied) == pytest.approx(0.5)
    m = detection_metrics(np.r_[perfect[:-1], np.nan], y)
    assert m["n_used"] == 99


def test_high_influence_pairs_thresholds_and_top_k():
    mem = np.array([0.3, 0.1, 0.5])
    infl = np.array([[0.2, 0.1], [0.9, 0.9], [0.16, 0.5]])
    df = high_influence_pairs(mem, infl)
    assert df[["train_index", "test_index"]].values.tolist() == [[2, 1], [0, 0], [2, 0]]
    assert len(high_influence_pairs(mem, infl, top_k=1)) == 1
    assert len(high_influence_pairs(mem, infl, mem_threshold=0.4, infl_threshold=0.3)) == 1


def test_leakage_finds_planted_duplicates_in_digits():
    d = load_digits_split()
    X, Xt = d.X, d.X_test.copy()
    base = find_near_duplicates(X, Xt, threshold=0.999)
    planted = {5: 11, 77: 300, 123: 1000}  # test index -> train index
    rng = np.random.default_rng(0)
    for j, i in planted.items():
        Xt[j] = X[i] + rng.normal(scale=1e-3, size=X.shape[1])  # near-duplicate
    rep = find_near_duplicates(X, Xt, threshold=0.999)
    found = set(zip(rep.pairs.test_index, rep.pairs.train_index))
    assert {(j, i) for j, i in planted.items()} <= found
    assert set(planted) <= set(rep.duplicate_test_idx)
    assert len(rep.duplicate_test_idx) == len(set(base.duplicate_test_idx) | set(planted))
    assert not set(planted) & set(rep.dedup_test_idx)
    assert len(rep.dedup_test_idx) + len(rep.duplicate_test_idx) == len(Xt)
    # an embedding instead of the raw inputs
    emb = find_near_duplicates(X, Xt, threshold=0.999, features=lambda A: A[:, :32])
    assert set(planted) <= set(emb.duplicate_test_idx)


def test_paired_report_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    r = paired_report(a, b)
    assert r["pvalue"] == pytest.approx(ttest_rel(a, b).pvalue)
    assert r["mean_diff"] == pytest.approx((a - b).mean())
    assert np.isnan(paired_report(a, a)["pvalue"])
