"""Outlier detection from the inlier-memorization effect (scikit-learn and PyOD faces)."""

from .estimator import IMDetector
from .explain import Explanation
from .plotting import plot_explanation, plot_loss_trajectories
from .preprocessing import PREPROCESSING_METHODS, IMPreprocessor
from .projection import RandomProjection
from .pyod_face import IMDetectorPyOD
from .scoring import SCORE_METHODS, bimodality
from .training import auto_hidden_sizes

__all__ = [
    "Explanation",
    "IMDetector",
    "IMDetectorPyOD",
    "IMPreprocessor",
    "PREPROCESSING_METHODS",
    "RandomProjection",
    "SCORE_METHODS",
    "auto_hidden_sizes",
    "bimodality",
    "plot_explanation",
    "plot_loss_trajectories",
]
