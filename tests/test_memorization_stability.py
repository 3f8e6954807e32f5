"""Split-half stability and the cumulative-loss proxy on digits (the pilot's recordings)."""

from __future__ import annotations

import numpy as np
import pytest

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
    train_ensemble,
)
from imod.memorization import load_digits_split, subsample_scores
from imod.memorization.runs import TrainingConfig, pilot_run, train_in_blocks
from imod.memorization.scores import cumulative_loss
from imod.memorization.stability import half_assignment, split_half_stability

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits300():
    d = load_digits_split()
    return d.X[:300].astype(np.float32), d.y[:300]


def test_pilot_records_loss_and_correctness_in_one_signed_value(digits300):
    X, y = digits300
    mask = balanced_mask(3, len(y), 0.7, random_state=0)
    model = StackedMLP((64, 32, 10))
    rec = pilot_run(model, X, y, mask, TrainingConfig(epochs=1), epochs=4)
    # the reference: the engine's own loss and correctness recorders on the same run
    opt = TrainingConfig().optimizer
    ref = train_ensemble(Task(model, X, y, mask=mask, loss="cross_entropy"),
                         Training(optimizer=opt, epochs=4, batch_size=32, random_state=0),
                         Placement(device="cpu"),
                         Recording([Recorder("l", per_example_loss("cross_entropy")),
                                    Recorder("c", correctness)], every="epoch"))
    assert rec.shape == (4, 3, 300)
    np.testing.assert_allclose(np.abs(rec), ref.records["l"], rtol=1e-5, atol=1e-6)
    assert ((rec >= 0) == (ref.records["c"] > 0)).all()
    cum = cumulative_loss(np.abs(rec), mask)
    for i in (5, 6, 7):
        members = np.flatnonzero(mask[:, i])
        expect = np.mean([ref.records["l"][:, k, i].sum() for k in members])
        assert cum[i] == pytest.approx(expect, rel=1e-5)


def test_split_half_agreement_grows_with_members(digits300):
    # two halves of 8 members agree less than two halves of 32 (same data, same labels)
    X, y = digits300
    rng = np.random.default_rng(0)
    rl = np.zeros(len(y), bool)
    rl[rng.choice(len(y), 15, replace=False)] = True
    yr = np.where(rl, (y + 1 + rng.integers(0, 9, len(y))) % 10, y)
    K = 64
    runs = train_in_blocks(StackedMLP((64, 128, 10)), X, yr, n_members=K, rate=0.7,
                           mask_for_block=lambda b, s: balanced_mask(s, len(y), 0.7, b),
                           training=TrainingConfig(epochs=40, block_size=16))
    mask, c = runs.mask, runs.correct_train
    small = split_half_stability(mask[:16], c[:16], rl, halves=half_assignment(16, 16),
                                 min_out=1)
    large = split_half_stability(mask, c, rl, halves=half_assignment(K, 16), min_out=1)
    assert large["members_per_half"] == 32 and small["members_per_half"] == 8
    assert large["spearman"] > small["spearman"]
    assert large["spearman_brown"] > large["spearman"]
    # alternate blocks: each half is two balanced blocks, every row IN 22 of 32
    s0 = subsample_scores(mask[half_assignment(K, 16) == 0], c[half_assignment(K, 16) == 0])
    assert (s0.in_counts == 22).all()
