"""The detector pinned: its scores on one bundled ADBench file.

``PINNED`` was produced by ``IMDetector(random_state=0)`` with the views of issue 16,
``("standard", "robust", "whiten")``, before the detector was restructured (issue 16,
part 4); ``PINNED_DEFAULT`` by today's default views ``("robust", "whiten",
"quantile")`` (issue 23, round 13). Refactors and speed work must leave both unchanged
(to ~1e-5; bitwise equality is not required, since batch sizes may change the order of
float sums).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imod import IMDetector

DATA = Path(__file__).resolve().parents[1] / "imod" / "data" / "29_Pima.npz"

# score_samples(X)[::24], rounded to 6 decimals
PINNED = np.array([
    -0.361207, -0.085269, -0.015965, -0.509827, 0.461292, -0.728653, -0.290858, 0.494651,
    0.102737, 0.253536, 0.730585, 0.45953, 0.411989, 0.09466, -1.176733, -0.342136,
    0.218901, -0.780266, 0.206419, -0.729991, -0.278473, -0.081141, 0.400187, -0.483742,
    -0.563849, 0.18947, 0.355268, -0.300106, -0.408184, 0.05009, 0.151826, -0.706951,
])


# the same for today's default views
PINNED_DEFAULT = np.array([
    -0.242028, -0.112047, -0.084844, -0.474224, 0.120457, -0.552833, -0.254711, 0.53115,
    0.081431, 0.251482, 0.484323, 0.420553, 0.284054, 0.091731, -1.042995, -0.332433,
    0.108625, -0.712969, 0.15922, -0.603567, -0.247793, -0.202799, 0.386592, -0.410201,
    -0.40462, -0.120758, 0.055648, -0.163493, -0.616024, 0.039131, 0.053781, -0.623032,
])


def test_default_scores_on_pima_are_pinned():
    X = np.load(DATA, allow_pickle=False)["X"].astype(np.float64)
    det = IMDetector(random_state=0, device="cpu", contamination="auto").fit(X)
    scores = det.score_samples(X)
    np.testing.assert_allclose(scores[::24], PINNED_DEFAULT, atol=2e-6, rtol=0)
    np.testing.assert_allclose(det.train_scores_, scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose([det.offset_, scores.mean(), scores.std()],
                               [-0.962343, -0.165837, 0.416714], atol=2e-6)
    assert int((det.predict(X) == -1).sum()) == 24
    det.set_params(contamination=0.1).fit(X)
    assert int((det.predict(X) == -1).sum()) == 77


def test_issue16_views_scores_on_pima_are_pinned():
    X = np.load(DATA, allow_pickle=False)["X"].astype(np.float64)
    det = IMDetector(random_state=0, device="cpu", contamination="auto",
                     preprocessing=("standard", "robust", "whiten")).fit(X)
    scores = det.score_samples(X)
    np.testing.assert_allclose(scores[::24], PINNED, atol=2e-6, rtol=0)
    np.testing.assert_allclose(det.train_scores_, scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose([det.offset_, scores.mean(), scores.std()],
                               [-1.00596, -0.137547, 0.458799], atol=2e-6)
    assert int((det.predict(X) == -1).sum()) == 29
    # the default contamination, 0.1: a tenth of Pima's 768 rows
    det.set_params(contamination=0.1).fit(X)
    assert int((det.predict(X) == -1).sum()) == 77
