"""Detectors used by the ``test_bench_*`` tests (imported by path ``bench_helpers:Class``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


class CrashingDetector:
    """Raises in ``fit``: the benchmark must record an error and go on."""

    def fit(self, X, y=None):
        raise RuntimeError("deliberate failure in fit")

    def score_samples(self, X):  # pragma: no cover - never reached
        return np.zeros(len(X))


class NaNDetector:
    """Fits, but scores NaN."""

    def fit(self, X, y=None):
        return self

    def score_samples(self, X):
        return np.full(len(X), np.nan)


class SpyDetector:
    """scikit-learn-style detector that records what ``fit`` received (class-level log).

    ``score_samples`` is higher = more normal: minus the distance to the training mean.
    """

    calls: list[dict] = []

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, *args, **kwargs):
        SpyDetector.calls.append({"X": np.array(X), "args": args, "kwargs": kwargs,
                                  "random_state": self.random_state})
        self.mean_ = np.asarray(X).mean(axis=0)
        return self

    def score_samples(self, X):
        return -np.linalg.norm(np.asarray(X) - self.mean_, axis=1)


class RowCountingDetector(SpyDetector):
    """Counts result rows already in ``$IMOD_TEST_RESULTS`` each time it is fitted."""

    seen: list[int] = []

    def fit(self, X, *args, **kwargs):
        path = Path(os.environ["IMOD_TEST_RESULTS"])
        lines = path.read_text().splitlines() if path.exists() else []
        RowCountingDetector.seen.append(max(len(lines) - 1, 0))
        return super().fit(X)


class SlowDetector(SpyDetector):
    """Sleeps in ``fit`` so a test can kill a run midway.

    With ``IMOD_TEST_HOLD`` set to a path, every ``fit`` after the first also waits (up to
    5 minutes) until that file exists: a test holds the run in progress, with its first cells
    finished, for as long as it needs, whatever the load.
    """

    fits = 0

    def fit(self, X, *args, **kwargs):
        time.sleep(float(os.environ.get("IMOD_TEST_SLEEP", "0.4")))
        SlowDetector.fits += 1
        hold = os.environ.get("IMOD_TEST_HOLD") if SlowDetector.fits > 1 else None
        deadline = time.monotonic() + 300
        while hold and not Path(hold).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().fit(X)


class SeedTwoFails(SpyDetector):
    """Fails for seed 2 only: its heatmap values come from fewer seeds than asked for."""

    def fit(self, X, *args, **kwargs):
        if self.random_state == 2:
            raise RuntimeError("deliberate failure for seed 2")
        return super().fit(X)


class ExitingDetector:
    """Calls ``sys.exit(3)`` in ``fit``: that cell fails, the run goes on."""

    def fit(self, X, y=None):
        import sys

        sys.exit(3)

    def score_samples(self, X):  # pragma: no cover - never reached
        return np.zeros(len(X))
