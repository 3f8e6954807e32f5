"""imod: outlier detection from the inlier-memorization effect, and memorization scores."""

__version__ = "0.1.0"
