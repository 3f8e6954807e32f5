"""The ensemble engine: K small networks trained at once on subset masks.

It knows nothing about outlier detection or memorization; the detector and the
memorization estimators are thin clients of :func:`train_ensemble`, which takes
four records: :class:`Task` (what to train), :class:`Training` (how),
:class:`Placement` (where) and :class:`Recording` (what to record).
"""

from .init import INIT_SCHEMES, member_seed
from .losses import LOSSES, get_loss
from .masks import balanced_mask, bernoulli_mask, full_mask, validate_mask
from .members import ModuleMembers, StackedMLP, make_members, member_state_dict
from .optim import OptimizerSpec
from .recorders import Recorder, correctness, margin, per_example_loss
from .runtime import PRECISIONS, resolve_device
from .schedule import batch_order, trim_weights
from .spec import Placement, Recording, Task, Training
from .trainer import EnsembleResult, as_tensor, train_ensemble

__all__ = [
    "INIT_SCHEMES",
    "LOSSES",
    "PRECISIONS",
    "EnsembleResult",
    "ModuleMembers",
    "OptimizerSpec",
    "Placement",
    "Recorder",
    "Recording",
    "StackedMLP",
    "Task",
    "Training",
    "as_tensor",
    "balanced_mask",
    "batch_order",
    "bernoulli_mask",
    "correctness",
    "full_mask",
    "get_loss",
    "make_members",
    "margin",
    "member_seed",
    "member_state_dict",
    "per_example_loss",
    "resolve_device",
    "train_ensemble",
    "trim_weights",
    "validate_mask",
]
