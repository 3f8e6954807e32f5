"""What several detector test files share."""

from __future__ import annotations

from imod import IMDetector


def variant(**choices) -> type[IMDetector]:
    """IMDetector with study-only choices changed (``IMDetector._fixed``: init, loss,
    normalization, scoring, view combination), as benchmarks/studies vary them."""
    return type("Variant", (IMDetector,), {"_fixed": IMDetector._fixed | choices})
