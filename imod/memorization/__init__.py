"""Memorization and influence estimation on the shared ensemble engine.

* :class:`MemorizationEstimator` -- the subsampled estimator of Feldman & Zhang
  (2020) with the critique's fixes as options (sampling rate, fractional score,
  null threshold from randomly relabelled points), resumable on disk.
* :mod:`~imod.memorization.scores` -- scores and influence from a mask and a
  correctness matrix; detection metrics (AUROC, AUPR, FPR@95%TPR).
* :mod:`~imod.memorization.membership` -- C-scores (Jiang et al. 2021) and online LiRA
  (Carlini et al. 2022) from the same masks and recorded confidences.
* :class:`TrainingConfig` -- how every member trains, one record for every study.
* :func:`find_near_duplicates` -- train/test leakage by cosine similarity.
* :func:`marginal_utility` -- retrain without the memorized points vs random ones.
* :mod:`~imod.memorization.study` -- leave-one-out reference, sampling-rate study,
  ablation of the four fixes.
"""

from .._runtime import ConfigMismatchError
from .data import Dataset, load_dataset, load_digits_split, load_mnist1d
from .estimator import MemorizationEstimator, NotMemorizedWarning, relabel_random
from .leakage import LeakageReport, find_near_duplicates
from .membership import c_scores, lira_scores, membership_auroc
from .runs import MemberResults, TrainingConfig, train_in_blocks
from .scores import (
    StarvedExamplesWarning,
    SubsampleScores,
    detection_metrics,
    fpr_at_tpr,
    fractional_difference,
    high_influence_pairs,
    influence_matrix,
    null_threshold,
    subsample_scores,
)
from .study import (
    ABLATION_ROWS,
    AblationResult,
    LOOReference,
    ablation_study,
    leave_one_out_reference,
    sampling_rate_study,
)
from .utility import UtilityResult, marginal_utility, paired_report

__all__ = [
    "ABLATION_ROWS",
    "AblationResult",
    "ConfigMismatchError",
    "Dataset",
    "LOOReference",
    "LeakageReport",
    "MemberResults",
    "MemorizationEstimator",
    "NotMemorizedWarning",
    "StarvedExamplesWarning",
    "SubsampleScores",
    "TrainingConfig",
    "UtilityResult",
    "ablation_study",
    "c_scores",
    "detection_metrics",
    "find_near_duplicates",
    "fpr_at_tpr",
    "fractional_difference",
    "high_influence_pairs",
    "influence_matrix",
    "leave_one_out_reference",
    "lira_scores",
    "load_dataset",
    "load_digits_split",
    "load_mnist1d",
    "marginal_utility",
    "membership_auroc",
    "null_threshold",
    "paired_report",
    "relabel_random",
    "sampling_rate_study",
    "subsample_scores",
    "train_in_blocks",
]
