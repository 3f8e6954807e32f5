"""The peers added for issue 16 (MCD, GMM, INNE, KDE, DIF, LUNAR): built by name, scored."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from imod.bench.catalogue import BUNDLED_DIR
from imod.bench.datasets import load_npz
from imod.bench.detectors import BUILTIN_DETECTORS, canonical_name, make_detector
from imod.bench.protocol import ProtocolConfig, evaluate, prepare_split

NEW_PEERS = ("MCD", "GMM", "INNE", "KDE", "DIF", "LUNAR")


@pytest.fixture(scope="module")
def cardio_split():
    # 6_cardio: 1831 rows x 21 features, 176 outliers (bundled); every one of these peers
    # ranks them well (AUROC 0.89-0.97 on seed 1), none perfectly.
    data = load_npz(BUNDLED_DIR / "6_cardio.npz")
    return prepare_split(data.X, data.y, seed=1, config=ProtocolConfig())


def test_new_peers_are_registered_with_pyod_defaults():
    for name in NEW_PEERS:
        assert canonical_name(name.lower()) == name
        module, cls = BUILTIN_DETECTORS[name]
        det = make_detector(name, seed=4, n_features=9)
        assert type(det).__name__ == cls and type(det).__module__ == module
        # Nothing but the seed differs from a detector built with PyOD's defaults.
        params = inspect.signature(type(det).__init__).parameters
        reference = type(det)(**({"random_state": 4} if "random_state" in params else {}))
        for param in params:
            if param != "self":
                assert repr(getattr(det, param, None)) == repr(
                    getattr(reference, param, None)), (name, param)
        if "random_state" in params:
            assert det.random_state == 4


@pytest.mark.parametrize("name", ["MCD", "GMM", "INNE", "KDE"])
def test_cheap_new_peers_score_a_bundled_dataset(cardio_split, name):
    cell = evaluate(name, cardio_split, seed=1)
    assert cell.status == "ok", cell.error
    assert 0.85 < cell.auroc < 1.0
    det = make_detector(name, seed=1, n_features=cardio_split.X_train.shape[1]).fit(
        cardio_split.X_train)
    scores = det.decision_function(cardio_split.X_test)
    assert scores.shape == (len(cardio_split.y_test),) and np.isfinite(scores).all()
    assert roc_auc_score(cardio_split.y_test, scores) == pytest.approx(cell.auroc, abs=1e-9)
