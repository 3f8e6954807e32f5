"""scikit-learn's estimator checks on IMDetector, IMDetectorPyOD, IMPreprocessor and
RandomProjection."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from imod import IMDetector, IMDetectorPyOD, IMPreprocessor
from imod.detector import RandomProjection

# The two checks that assume scikit-learn's outlier labels; the PyOD face keeps PyOD's
# (1 = outlier, 0 = inlier) on purpose. Every other check applies and passes.
PYOD_CONVENTIONS = {
    "check_outliers_train": "PyOD labels outliers 1 and inliers 0, not -1 / +1",
    "check_outliers_fit_predict": "PyOD labels outliers 1 and inliers 0, not -1 / +1",
}
FAST = dict(n_members=3, max_updates=10, n_recordings=3, random_state=0, device="cpu")


@parametrize_with_checks(
    # the default three-view ensemble, a single view, and one projecting every input
    [IMDetector(**FAST), IMDetector(preprocessing="standard", **FAST),
     IMDetector(projection_dim=2, **FAST), IMPreprocessor(), IMPreprocessor(method="whiten"),
     RandomProjection(2, random_state=0), IMDetectorPyOD(**FAST)],
    expected_failed_checks=lambda est: PYOD_CONVENTIONS if isinstance(est, IMDetectorPyOD) else {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
