"""imod: outlier detection from the inlier-memorization effect, and memorization scores.

The detector classes are imported on first use (``imod.IMDetector``), so the command line
and ``imod.__version__`` start without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["IMDetector", "IMDetectorPyOD", "IMPreprocessor", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .detector import IMDetector, IMDetectorPyOD, IMPreprocessor


def __getattr__(name: str) -> Any:
    if name in ("IMDetector", "IMDetectorPyOD", "IMPreprocessor"):
        from . import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'imod' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
