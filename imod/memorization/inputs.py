"""Input checks and small helpers of the memorization estimator."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from imod.engine import StackedMLP

from .runs import DEFAULT_HIDDEN, block_sizes, derive_seed

__all__ = ["check_classification_data", "relabel_random", "build_model", "check_member_counts",
           "MASK_KINDS", "NotMemorizedWarning", "null_problems"]

MASK_KINDS = ("balanced", "bernoulli")

#: Mean in-sample accuracy of the random-label rows below which they count as not memorized.
MEMORIZED_ACCURACY = 0.9
#: Random-label AUROC below which detection is called near chance.
CHANCE_AUROC = 0.6


class NotMemorizedWarning(UserWarning):
    """The members did not fit the random-label rows they trained on, or the scores do
    not find them: the null threshold and ``memorized_`` are not meaningful."""


def null_problems(est) -> list[str]:
    """Why a fitted estimator's null threshold means nothing (empty when it does).

    The random-label rows were fit on average below :data:`MEMORIZED_ACCURACY` by the
    members that trained on them, or the chosen score finds them at an AUROC below
    :data:`CHANCE_AUROC`.
    """
    if not est.random_label_idx_.size:
        return []
    why = []
    acc = est.in_sample_accuracy_["random_label"]
    if acc < MEMORIZED_ACCURACY:
        why.append(f"the members fit only {100 * acc:.0f} % of the random-label rows they "
                   f"trained on (natural rows: {100 * est.in_sample_accuracy_['natural']:.0f} "
                   "%), so those points are not memorized")
    auroc = est.detection_[est.score]["auroc"]
    if not auroc >= CHANCE_AUROC:
        why.append(f"the {est.score} score finds the random-label points at AUROC "
                   f"{auroc:.2f}, near chance")
    return why


def check_classification_data(X, y, X_test=None, y_test=None):
    """Validate inputs; return ``X, y_enc, classes, X_test, y_test_enc``.

    Raises
    ------
    ValueError
        Labels not matching X, fewer than two classes, test labels unseen in
        training, non-finite inputs, or only one of X_test / y_test.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim < 2:
        raise ValueError(f"X must be at least 2-D (n_samples, n_features...), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D class labels, got shape {y.shape}")
    if len(y) != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} examples but y has {len(y)} labels")
    if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
        raise ValueError("X must be numeric without NaN or infinite values")
    classes, y_enc = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        label = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]
        raise ValueError(f"y has a single class ({label!r}); memorization needs >= 2 classes")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    yt_enc = None
    if X_test is not None:
        X_test = np.asarray(X_test)
        y_test = np.asarray(y_test)
        if X_test.shape[1:] != X.shape[1:]:
            raise ValueError(
                f"X_test has shape {X_test.shape[1:]} per example, X has {X.shape[1:]}"
            )
        if len(y_test) != X_test.shape[0]:
            raise ValueError(f"X_test has {X_test.shape[0]} examples but y_test has {len(y_test)}")
        if not np.isfinite(X_test).all():
            raise ValueError("X_test contains NaN or infinite values")
        unseen = np.setdiff1d(np.unique(y_test), classes)
        if unseen.size:
            raise ValueError(f"y_test has classes not in y: {unseen[:5].tolist()}")
        yt_enc = np.searchsorted(classes, y_test)
    return X.astype(np.float32), y_enc.astype(np.int64), classes, (
        None if X_test is None else X_test.astype(np.float32)
    ), yt_enc


def relabel_random(y, n_classes: int, fraction: float, random_state):
    """Give a ``fraction`` of examples a random *different* class.

    Returns ``(y_new, idx)`` with ``idx`` sorted. ``fraction > 0`` relabels at
    least one example.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"random_label_fraction must be in [0, 1), got {fraction!r}")
    y = np.asarray(y)
    n = len(y)
    count = 0 if fraction == 0 else max(1, int(round(fraction * n)))
    rng = np.random.default_rng(derive_seed(random_state, 7))
    idx = np.sort(rng.choice(n, size=count, replace=False))
    y_new = y.copy()
    y_new[idx] = (y[idx] + rng.integers(1, n_classes, size=count)) % n_classes
    return y_new, idx


def is_widths(model) -> bool:
    return model is None or (
        isinstance(model, Sequence) and all(isinstance(w, numbers.Integral) for w in model)
    )


def build_model(model, n_features: int, n_classes: int):
    """None -> MLP (d, *DEFAULT_HIDDEN, C); a sequence of ints -> those hidden widths."""
    if model is None:
        model = DEFAULT_HIDDEN
    if is_widths(model):
        return StackedMLP((n_features, *[int(w) for w in model], n_classes))
    return model


def member_counts(n_members: int, block_size: int, rate: float, min_in: int, min_out: int
                  ) -> tuple[int, int, int]:
    """IN and OUT members of every example with balanced masks, and about how many
    members give ``min_in`` IN and ``min_out`` OUT.

    Examples
    --------
    >>> member_counts(4, 4, 0.7, 1, 3)
    (3, 1, 11)
    """
    sizes = block_sizes(n_members, block_size)
    n_in = sum(int(round(rate * s)) for s in sizes)
    need = int(np.ceil(max(min_in / rate, min_out / (1.0 - rate)))) + 1
    return n_in, int(n_members) - n_in, need


def check_member_counts(n_members, block_size, rate, min_in, min_out, mask_kind="balanced"):
    """Raise when some example would have < ``min_in`` IN or < ``min_out`` OUT members."""
    if not isinstance(n_members, numbers.Integral) or n_members < 1:
        raise ValueError(f"n_members must be a positive integer, got {n_members!r}")
    if not isinstance(rate, numbers.Real) or not 0.0 < float(rate) < 1.0:
        raise ValueError(f"rate must be in the open interval (0, 1), got {rate!r}")
    if mask_kind != "balanced":
        return
    sizes = block_sizes(n_members, block_size)
    n_in, n_out, need = member_counts(n_members, block_size, rate, min_in, min_out)
    if n_in < min_in or n_out < min_out:
        raise ValueError(
            f"too few members for rate={rate}: with n_members={n_members} (blocks {sizes}) every "
            f"example is IN {n_in} and OUT {n_out} members, but min_in={min_in} and "
            f"min_out={min_out} are needed; use about n_members >= {need} "
            f"(a multiple of block_size={block_size})"
        )
