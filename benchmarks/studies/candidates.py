"""The candidate detectors of the out-of-fold selection, rounds 7-16 (issue 23).

Each candidate is a function ``cNN_name(random_state=None)`` returning a detector with
``fit`` and ``score_samples``; ``imod bench`` builds it by import path, e.g.::

    python -m imod bench --detectors benchmarks.studies.candidates:c23_default ...

A round's cells reproduce at the commit its ``docs/results/oof_roundN/commands.md``
names: the candidates build on ``IMDetector``, whose defaults changed with the choices of
rounds 13 (the views) and 14 (the whitening from the central rows; since then c38 is
today's ``IMDetector()``, to the bit).

The list was fixed in git before any of them was scored on the development folds (real
sets and the synthetic tasks of ``synthetic_anomalies.py``). ``c23_default`` is today's
``IMDetector()`` (issue 16's choice, c23); rounds 1-6 (c00-c24) are in git history and
``docs/accuracy_study.md``. Only IMDetector's public parameters are used (issue 25).

Round 7's leads (issue 23: catch local and dependency anomalies): a denoising pretext task
whose outputs must be predicted from the other features (``denoising_im.py``: swap noise,
``c25``; masked features, ``c26``; plain reconstruction and swap-noise members in one
ensemble, ``c27``), the theory paper's smaller initialization (``c28``) and capacity and
budget set from n and d by a rule (``c29``).
"""

from __future__ import annotations

import math

import numpy as np

from imod.detector import IMDetector

# What each candidate changes, for the tables (fold_selection.py).
CHANGES = {
    "c23_default": "IMDetector() (issue 16's c23)",
    "c25_swap": "members restore rows from swap noise (20 % of features)",
    "c26_mask": "members restore rows from masked features (20 %)",
    "c27_reconstruct_swap": "4 reconstruction + 4 swap-noise members",
    "c28_init_scale_03": "init_scale=0.3",
    "c29_capacity_rule": "latent and widths from d, updates from n (rule)",
    "c30_swap_standard": "8 swap-noise members on the standard view only (one engine call)",
    "c31_feature_log": "c23 + per-column calibrated errors, log scale (scaled max with c23's)",
    "c32_feature_robust": "c23 + per-column calibrated errors, robust z (scaled max with c23's)",
    "c33_feature_log_fused": "c31's readings from one pass, column medians from 511 rows",
    "c34_mask_one_call": "c26 (masked-feature members) with every view in one engine call",
    "c35_gauss_one_call": "members remove Gaussian noise (sigma 0.5), every view in one call",
    "c36_quantile_view": "views standard, robust, whiten and quantile (2 members each)",
    "c37_quantile_for_standard": "views robust, whiten and quantile (quantile for standard)",
    "c38_reweighted_whitening": "c37 with the whitening fitted on the 70 % central rows (C-steps)",
    "c39_plain_selection": "c38 with the central rows chosen by the plain covariance",
    "c40_central_cap": "c39 with the direction cap counted on the central rows",
    "c41_mse_loss": "c38 trained and scored on the squared error",
    "c42_mse_scores": "c38 trained on the absolute error, scored by the squared error",
    "c43_mse_whiten": "c38 with the whitened view's members on the squared error",
    "c44_mse_whiten_quantile": "c38 with the whitened and quantile views on the squared error",
}


def c23_default(random_state: int | None = None) -> IMDetector:
    """Today's default."""
    return IMDetector(random_state=random_state)


def c25_swap(random_state: int | None = None):
    """Swap-noise denoising members, the default's views and budget."""
    from denoising_im import DenoisingIM  # benchmarks/studies on the path

    return DenoisingIM(tasks=("swap",), rate=0.2, random_state=random_state)


def c26_mask(random_state: int | None = None):
    """Masked-feature prediction members, the default's views and budget."""
    from denoising_im import DenoisingIM

    return DenoisingIM(tasks=("mask",), rate=0.2, random_state=random_state)


def c27_reconstruct_swap(random_state: int | None = None):
    """Two tasks in one ensemble: 4 reconstruction members, 4 swap-noise members."""
    from denoising_im import DenoisingIM

    return DenoisingIM(tasks=("reconstruct", "swap"), rate=0.2, random_state=random_state)


def c28_init_scale_03(random_state: int | None = None) -> IMDetector:
    """The theory paper's smaller initialization (round 1's c07 at full width: +0.02)."""
    return IMDetector(init_scale=0.3, random_state=random_state)


class CapacityRuleIM:
    """IMDetector with its widths and budget from the data's shape (c29).

    Widths ``(w, w/2, latent)`` with ``latent = clip(round(sqrt(d)), 2, 16)`` (a code
    growing with the width, so that wider data keeps more of its joint structure; the
    default's 8 is the rule at d = 64) and ``w = max(32, 4 * latent)``; updates
    ``clip(2 n / batch_size, 100, 300)`` (about two passes over the rows, the default's
    100 on small sets), counted on the (possibly projected) input width.
    """

    def __init__(self, *, random_state: int | None = None) -> None:
        self.random_state = random_state

    @staticmethod
    def settings(n: int, d: int, projection_dim: int = 64, batch_size: int = 128) -> dict:
        d = min(d, projection_dim)
        latent = int(np.clip(round(math.sqrt(d)), 2, 16))
        latent = min(latent, max(1, d // 2))
        w = max(32, 4 * latent)
        updates = int(np.clip(round(2 * n / batch_size), 100, 300))
        return {"hidden_sizes": (w, w // 2, latent), "max_updates": updates}

    def fit(self, X, y=None) -> CapacityRuleIM:
        X = np.asarray(X, dtype=np.float64)
        self.detector_ = IMDetector(random_state=self.random_state,
                                    **self.settings(*X.shape)).fit(X)
        return self

    def score_samples(self, X) -> np.ndarray:
        return self.detector_.score_samples(X)


def c29_capacity_rule(random_state: int | None = None) -> CapacityRuleIM:
    """Capacity and budget from n and d (`CapacityRuleIM`)."""
    return CapacityRuleIM(random_state=random_state)


# Round 8, written while round 7 ran and before any of round 7's scores were looked at:
# c25-c27 train one engine call per view (the engine takes views only for autoencoders),
# about 2.3x c23's time per cell under the shared load, so the 2x IForest time limit will
# likely exclude them. c30 keeps the swap-noise task in one call: one view, 8 members.


def c30_swap_standard(random_state: int | None = None):
    """Swap-noise members on the standardized view only: one engine call, c23's cost."""
    from denoising_im import DenoisingIM

    return DenoisingIM(tasks=("swap",), rate=0.2, preprocessing="standard",
                       random_state=random_state)


# Round 9 (issue 23, second session), fixed here before any of it was scored on the folds:
# the same training as c23, with each column's early error also read on that column's own
# scale (`feature_calibrated_im.py`), the local/dependency lead of an in-sample probe on
# 10 development sources (its numbers are in that module's docstring). The rule is round
# 7's, unchanged; the peers are round 7's stored cells plus MCD, AutoEncoder and DIF run
# on the synthetic tasks this round.


def c31_feature_log(random_state: int | None = None):
    """c23 plus per-column calibrated errors on a log scale."""
    from feature_calibrated_im import FeatureCalibratedIM

    return FeatureCalibratedIM(aggregation="log", random_state=random_state)


def c32_feature_robust(random_state: int | None = None):
    """c23 plus per-column calibrated errors as positive robust z-scores."""
    from feature_calibrated_im import FeatureCalibratedIM

    return FeatureCalibratedIM(aggregation="robust", random_state=random_state)


# Round 10, written after round 9 was scored (c31 had the best criterion but 3.3x IForest's
# time, so the rule excluded it) and fixed here before c33 was scored: the same readings
# from one forward pass, each column's median from 511 evenly spaced recorded rows.


def c33_feature_log_fused(random_state: int | None = None):
    """c31 in one pass (`FusedFeatureCalibratedIM`)."""
    from feature_calibrated_im import FusedFeatureCalibratedIM

    return FusedFeatureCalibratedIM(random_state=random_state)


# Round 11, written after rounds 9-10 were scored, fixed here before c34 was: c26 (round 7's
# masked-feature prediction, best by the criterion but 2.5-2.9x IForest's time, one engine
# call per view) with every view's members in one call, now that Task(views=...) takes
# targets. Its corruptions and member seeds differ from c26's (one call draws them once), so
# its scores are new.


def c34_mask_one_call(random_state: int | None = None):
    """c26 in one engine call (`DenoisingIM(one_call=True)`)."""
    from denoising_im import DenoisingIM

    return DenoisingIM(tasks=("mask",), rate=0.2, one_call=True, random_state=random_state)


# Round 12 (issue 23, fourth session), fixed here before it was scored on any development
# task: members that remove Gaussian noise. The lead is the low-dimensional sets where c23
# misses local anomalies most (http, skin, mammography, breastw, donors: 3-10 columns, the
# latent code spans the data, so a row far out *along* the inliers' structure is
# reconstructed as well as an inlier); a denoiser's residual estimates the density's
# gradient there (`denoising_im.py`). sigma 0.5 of a view's scaled unit, set from that
# argument before any score (large enough that the pull towards the inliers is felt a
# few spreads out, small enough that a cluster is not blurred into its neighbours). One
# candidate, in one engine call (c34's path), so it fits the time limit.


def c35_gauss_one_call(random_state: int | None = None):
    """Gaussian denoising members (sigma 0.5), every view in one engine call."""
    from denoising_im import DenoisingIM

    return DenoisingIM(tasks=("gauss",), sigma=0.5, one_call=True, random_state=random_state)


# Round 13 (issue 23, fourth session), written after round 12 was scored and fixed here
# before either was scored on the folds. An in-sample probe (every development task, seed
# 1; view_ceiling.py's numbers and a 3-member detector per single view) found that each
# preprocessing view carries one kind: robust the real sets, whiten dependency anomalies,
# and the quantile view (each column through its empirical CDF to normal scores, which
# rounds 1-6 dropped on the real sets alone) local anomalies: 0.935 alone against c23's
# 0.882 and ECOD's 0.929, because a row in one column's tail gets a large normal score
# there, whatever that column's units. Added to the default's views, the same 8 members
# split over four views (c36), or in place of the standardized view (c37, c23's member
# split and cost).


def c36_quantile_view(random_state: int | None = None) -> IMDetector:
    """c23 with a fourth, quantile view (8 members: 2 per view)."""
    return IMDetector(preprocessing=("standard", "robust", "whiten", "quantile"),
                      random_state=random_state)


def c37_quantile_for_standard(random_state: int | None = None) -> IMDetector:
    """c23 with the quantile view in place of the standardized one."""
    return IMDetector(preprocessing=("robust", "whiten", "quantile"), random_state=random_state)


# Round 14 (issue 23, fifth session), fixed here before it was scored on the folds, with
# no probe on the development tasks: after round 13 the largest gaps are dependency
# (-4.2 points below MCD) and clustered anomalies (-2.1 below KDE). The whitened view,
# the one that sees a broken joint, takes its covariance from every row, anomalies
# included; MCD takes it from the central rows. c38 fitted the whitening as MCD's C-steps
# do; the rule chose it, and IMPreprocessor("whiten") now fits it so: today's
# IMDetector() is c38 to the bit (checked on cardio and Pima, seeds 1-2, against the study
# code at 26e1176, whose c39 and c40 varied how the central rows are chosen and the
# direction cap counted; rerun them there).


def c38_reweighted_whitening(random_state: int | None = None) -> IMDetector:
    """c37 with the whitened view fitted on the central 70 % of rows: ``IMDetector()``."""
    return IMDetector(random_state=random_state)


# Round 15 (issue 23, seventh session), fixed here before it was scored, with no probe on
# the development tasks: the largest gaps after round 14 are dependency (-3.7 points below
# MCD) and clustered anomalies (-1.9 below KDE), then local (-0.8 below ECOD). The loss has
# been the mean absolute error since before issue 16, chosen on the real sets with other
# views; in the whitened view a row that breaks one correlation differs in a few columns,
# which a mean squared error weighs 2.4x more against the inliers' noise than a mean
# absolute one (`squared_error_im.py`); MCD scores a squared distance. c41 trains and
# scores on the squared error; c42 keeps training on the absolute error (bounded
# gradients: the IM effect's early fit of the inliers) and scores by the squared error.


def c41_mse_loss(random_state: int | None = None):
    """c38 trained and scored on the squared error."""
    from squared_error_im import SquaredErrorIM

    return SquaredErrorIM(random_state=random_state)


def c42_mse_scores(random_state: int | None = None):
    """c38 trained on the absolute error, recorded and scored by the squared error."""
    from squared_error_im import SquaredErrorScoresIM

    return SquaredErrorScoresIM(random_state=random_state)


# Round 16 (issue 23, eighth session), fixed here before it was scored, with no probe on
# the development tasks (checked only that the study code reproduces IMDetector() with no
# view squared and c41 with every view squared, bit for bit, on cardio, Ionosphere and
# MVTec cable): round 15's squared error moved dependency (+1.1) and clustered anomalies
# (-1.2) in opposite directions. It suits a view whose inliers' residuals are about
# Gaussian in every column, the whitened one (MCD's squared Mahalanobis distance); the
# robust view keeps the columns' heavy tails, where one far column would dominate a row's
# squared error and the members' gradients (`view_loss_im.py`). c43: the whitened view on
# the squared error, the others on the absolute error; c44: the quantile view (Gaussian
# marginals) too. All views still train in one engine call.


def c43_mse_whiten(random_state: int | None = None):
    """c38 with the whitened view's members trained and scored on the squared error."""
    from view_loss_im import ViewLossIM

    return ViewLossIM(random_state=random_state)


def c44_mse_whiten_quantile(random_state: int | None = None):
    """c38 with the whitened and the quantile views on the squared error."""
    from view_loss_im import WhitenQuantileSquaredIM

    return WhitenQuantileSquaredIM(random_state=random_state)


# Candidates whose code is only in git (commit named): their cells keep these labels.
RETIRED = {"c39_plain_selection": "26e1176", "c40_central_cap": "26e1176"}

__all__ = ["CHANGES", "RETIRED", *(c for c in CHANGES if c not in RETIRED)]
