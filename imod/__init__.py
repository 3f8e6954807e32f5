"""imod: outlier detection from the inlier-memorization effect, and memorization scores."""

__version__ = "0.1.0"

from .detector import IMDetector, IMDetectorPyOD, IMPreprocessor  # noqa: E402

__all__ = ["IMDetector", "IMDetectorPyOD", "IMPreprocessor", "__version__"]
