"""What a fitted :class:`~imod.memorization.estimator.MemorizationEstimator` answers.

Reading the fitted attributes -- the memorized set at any threshold, the null threshold
of another score, the high-influence train/test pairs, the one-row-per-example table --
and the warnings when the null threshold cannot be trusted. Kept apart from
:mod:`imod.memorization.estimator` (parameters, training and computing the attributes) so
each module stays one job; the estimator inherits these methods from
:class:`FittedResultsMixin`, so they are called exactly as before.
"""

from __future__ import annotations

import warnings

import numpy as np

from .inputs import NotMemorizedWarning, null_problems
from .scores import high_influence_pairs, null_threshold

__all__ = ["FittedResultsMixin"]


class FittedResultsMixin:
    """Methods reading the attributes a fitted memorization estimator sets.

    They need ``scores_``, ``threshold_``, ``memorized_mask_``, ``random_label_idx_``,
    ``is_random_label_`` and the other fitted attributes of
    :class:`~imod.memorization.estimator.MemorizationEstimator`, and its ``score``,
    ``threshold``, ``alpha`` and ``null_side`` parameters. The mixin has no ``__init__``
    (sklearn's ``get_params`` reads the estimator's own) and sets one attribute,
    ``null_meaningful_``, in :meth:`_warn_if_not_meaningful`.
    """

    def _warn_if_not_meaningful(self) -> None:
        """Set ``null_meaningful_`` and warn when the null threshold cannot be trusted.

        Called at the end of scoring in ``fit``; ``stacklevel=3`` points the warnings at
        the caller of ``fit`` (fit -> _set_results -> here).
        """
        why = null_problems(self)
        self.null_meaningful_ = bool(self.random_label_idx_.size) and not why
        if why:
            warnings.warn(
                "; ".join(why) + ": the null threshold, memorized_ and detection_ are not "
                "meaningful. Train longer (epochs='auto' or a larger epochs), or give the "
                "members more capacity (model).",
                NotMemorizedWarning, stacklevel=3)
        if (self.threshold == "null" and self.null_side == "upper"
                and not self.memorized_mask_.any() and np.isfinite(self.threshold_)
                and self.threshold_ >= np.nanmax(self.scores_)):
            warnings.warn(
                f"the (1 - alpha) quantile of the null scores is the largest {self.score} score "
                f"({self.threshold_:.3g}): no natural point can exceed it, so memorized_ is empty. "
                "Memorized random-label points are rarely predicted when held out, so their "
                "scores pile up at the maximum. null_side='lower' thresholds at 95 % TPR on "
                "the random-label points instead.", UserWarning, stacklevel=3)

    def memorized_for(self, scores, threshold: float, inclusive: bool = False) -> np.ndarray:
        """Natural (not relabelled) points with a finite score above ``threshold``.

        ``inclusive=True`` also counts scores equal to it: the lower null threshold is
        the 95 % TPR operating point (random-label points *at or above* it are found),
        and memorized scores tie at the maximum (fractional score 1 when ``p_out = 0``).
        """
        s = np.asarray(scores, dtype=float)
        with np.errstate(invalid="ignore"):
            above = (s >= threshold) if inclusive else (s > threshold)
            return np.isfinite(s) & above & ~self.is_random_label_

    def null_threshold_for(self, score: str, alpha: float | None = None,
                           side: str | None = None) -> float:
        """The null threshold of another score (``"difference"`` / ``"fractional"``)."""
        s = getattr(self, score + "_")[self.random_label_idx_]
        return null_threshold(s, self.alpha if alpha is None else alpha,
                              self.null_side if side is None else side)

    def high_influence_pairs(self, mem_threshold: float = 0.25, infl_threshold: float = 0.15,
                             top_k: int | None = None, score: str = "difference"):
        """Train/test pairs with high memorization and influence (F&Z: 0.25 / 0.15).

        Uses the ``difference`` score by default, as F&Z; relabelled points are
        left out (their influence is measured against a wrong label).
        """
        if self.influence_ is None:
            raise ValueError("no influence matrix: fit with X_test/y_test and influence=True")
        mem = getattr(self, score + "_").astype(float).copy()
        mem[self.is_random_label_] = np.nan
        return high_influence_pairs(
            mem, self.influence_,
            mem_threshold=mem_threshold, infl_threshold=infl_threshold,
            top_k=top_k, train_labels=self.classes_[self.y_clean_],
            test_labels=self.classes_[self.y_test_],
        )

    def to_frame(self):
        """One row per training example with every score."""
        import pandas as pd

        return pd.DataFrame({
            "index": np.arange(len(self.scores_)),
            "label": self.classes_[self.y_clean_],
            "train_label": self.classes_[self.y_train_],
            "random_label": self.is_random_label_,
            "in_count": self.in_counts_,
            "out_count": self.out_counts_,
            "p_in": self.p_in_,
            "p_out": self.p_out_,
            "difference": self.difference_,
            "fractional": self.fractional_,
            "score": self.scores_,
            "memorized": self.memorized_mask_,
            "c_score": self.c_scores_,
            "lira": self.lira_scores_,
            "cumulative_loss": self.cumulative_loss_,
        })
