"""scikit-learn's estimator checks on IMDetector, IMPreprocessor and RandomProjection."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from imod import IMDetector, IMPreprocessor
from imod.detector import RandomProjection

FAST = dict(n_members=3, max_updates=10, n_recordings=3, random_state=0, device="cpu")


@parametrize_with_checks(
    # the default three-view ensemble, a single view, and one projecting every input
    [IMDetector(**FAST), IMDetector(preprocessing="standard", **FAST),
     IMDetector(projection_dim=2, **FAST), IMPreprocessor(), IMPreprocessor(method="whiten"),
     RandomProjection(2, random_state=0)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
