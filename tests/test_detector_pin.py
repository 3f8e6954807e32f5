"""The detector pinned: its scores on one bundled ADBench file.

``PINNED`` was produced by ``IMDetector(random_state=0)`` with the views of issue 16,
``("standard", "robust", "whiten")``, before the detector was restructured (issue 16,
part 4); ``PINNED_DEFAULT`` by today's default views ``("robust", "whiten",
"quantile")`` (issue 23, round 13). Both were regenerated once, on purpose, when the
whitened view came to be estimated from the central rows (issue 23, round 14; the former
values are in git). Refactors and speed work must leave both unchanged (to ~1e-5; bitwise
equality is not required, since batch sizes may change the order of float sums).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imod import IMDetector

DATA = Path(__file__).resolve().parents[1] / "imod" / "data" / "29_Pima.npz"

# score_samples(X)[::24], rounded to 6 decimals
PINNED = np.array([
    -0.140407, -0.069839, -0.015866, -0.490174, 0.442495, -0.700336, -0.164958, 0.474533,
    0.098137, 0.095949, 0.678374, 0.417983, 0.395144, 0.090379, -1.271331, -0.270784,
    0.209701, -0.749905, 0.197714, -0.74513, 0.099609, -0.078461, 0.38381, -0.359571,
    -0.542057, 0.086839, 0.427936, -0.207076, -0.719053, 0.047574, 0.025751, -0.713196,
])


# the same for today's default views
PINNED_DEFAULT = np.array([
    -0.060379, -0.114328, -0.088181, -0.462446, 0.109151, -0.538003, -0.227176, 0.404562,
    0.125463, 0.235089, 0.458891, 0.366349, 0.281059, 0.081539, -1.204685, -0.385996,
    0.097777, -0.730788, 0.146409, -0.680557, -0.250232, -0.201557, 0.448377, -0.176924,
    -0.395544, -0.122701, 0.046857, -0.163777, -0.624301, 0.030981, 0.045063, -0.67044,
])


@pytest.mark.parametrize(("preprocessing", "pinned", "stats", "flagged_auto"), [
    (None, PINNED_DEFAULT, [-0.929152, -0.167185, 0.423348], 48),
    (("standard", "robust", "whiten"), PINNED, [-0.930626, -0.130552, 0.455271], 50),
], ids=["default", "issue16_views"])
def test_scores_on_pima_are_pinned(preprocessing, pinned, stats, flagged_auto):
    X = np.load(DATA, allow_pickle=False)["X"].astype(np.float64)
    views = {} if preprocessing is None else {"preprocessing": preprocessing}
    det = IMDetector(random_state=0, device="cpu", contamination="auto", **views).fit(X)
    scores = det.score_samples(X)
    np.testing.assert_allclose(scores[::24], pinned, atol=2e-6, rtol=0)
    np.testing.assert_allclose(det.train_scores_, scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose([det.offset_, scores.mean(), scores.std()], stats, atol=2e-6)
    assert int((det.predict(X) == -1).sum()) == flagged_auto
    # the default contamination, 0.1: a tenth of Pima's 768 rows
    det.set_params(contamination=0.1).fit(X)
    assert int((det.predict(X) == -1).sum()) == 77
