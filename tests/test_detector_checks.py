"""scikit-learn's estimator checks on IMDetector and IMPreprocessor."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from imod import IMDetector, IMPreprocessor

FAST = dict(n_members=3, max_updates=10, n_recordings=3, random_state=0, device="cpu")


@parametrize_with_checks(
    # the default two-view ensemble and a single view
    [IMDetector(**FAST), IMDetector(preprocessing="standard", **FAST), IMPreprocessor(),
     IMPreprocessor(method="whiten")],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
