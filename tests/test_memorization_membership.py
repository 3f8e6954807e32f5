"""C-scores and online LiRA from the estimator's masks and recordings, against direct loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from imod.memorization import MemorizationEstimator, load_digits_split
from imod.memorization.membership import MIN_STD, c_scores, lira_scores, membership_auroc
from imod.memorization.runs import logit_confidence

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs():
    d = load_digits_split()
    X, y = d.X[:240], d.y[:240]
    kw = dict(model=(128,), n_members=16, epochs=80, batch_size=16, block_size=16,
              random_label_fraction=0.1, min_out=1, influence=False, device="cpu")
    return {rate: MemorizationEstimator(rate=rate, **kw).fit(X, y) for rate in (0.5, 0.75)}


def test_c_scores_equal_held_out_accuracy_averaged_over_rates(runs):
    a, b = runs[0.5], runs[0.75]
    got = c_scores([(a.mask_, a.correct_), (b.mask_, b.correct_)])
    for i in [0, 7, 100, 239]:
        per_rate = [e.correct_[~e.mask_[:, i], i].mean() for e in (a, b)]
        assert got[i] == pytest.approx(np.mean(per_rate))
    np.testing.assert_allclose(a.c_scores_, c_scores([(a.mask_, a.correct_)]))
    # random-label rows are rarely predicted when held out: low C-scores
    assert a.c_scores_[a.is_random_label_].mean() < a.c_scores_[~a.is_random_label_].mean()


def test_lira_equals_gaussian_fits_on_the_other_members(runs):
    est = runs[0.5]
    phi = est.members_.confidence_train.astype(np.float64)
    mask = est.mask_
    for k, i in [(0, 0), (3, 17), (15, 239), (8, int(est.random_label_idx_[0]))]:
        others = np.arange(mask.shape[0]) != k
        fin = phi[others & mask[:, i], i]
        fout = phi[others & ~mask[:, i], i]
        s_in = max(fin.std(ddof=1), MIN_STD)
        s_out = max(fout.std(ddof=1), MIN_STD)
        direct = (norm.logpdf(phi[k, i], fin.mean(), s_in)
                  - norm.logpdf(phi[k, i], fout.mean(), s_out))
        assert est.lira_[k, i] == pytest.approx(direct, rel=1e-6, abs=1e-6)
    expect = np.array([est.lira_[mask[:, i], i].mean() for i in range(mask.shape[1])])
    np.testing.assert_allclose(est.lira_scores_, expect)
    m = membership_auroc(mask, est.lira_)
    assert m == est.membership_ and m["auroc"] > 0.5
    # memorized (random-label) rows are the easiest members to spot
    assert est.detection_["lira"]["auroc"] > 0.8


def test_logit_confidence_is_log_odds_of_the_softmax():
    torch.manual_seed(0)
    out = torch.randn(3, 5, 4) * 3
    y = torch.tensor([0, 3, 1, 2, 2])
    p = torch.softmax(out.double(), -1).gather(-1, y.view(1, -1, 1).expand(3, -1, 1))[..., 0]
    torch.testing.assert_close(logit_confidence(out.double(), y), torch.log(p / (1 - p)))


def test_membership_inputs_are_checked():
    with pytest.raises(ValueError, match="at least one"):
        c_scores([])
    with pytest.raises(ValueError, match="must be equal"):
        lira_scores(np.ones((4, 3), bool), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        lira_scores(np.ones((4, 1), bool), np.full((4, 1), np.nan))
    # too few OUT members -> NaN, not a made-up number
    s = lira_scores(np.array([[1], [1], [1], [0]], bool), np.arange(4.0)[:, None])
    assert np.isnan(s).all()
