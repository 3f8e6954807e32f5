"""Marginal utility of a set of training examples: remove them and retrain.

Two ensembles of full-training-set models are trained through the engine, each
member with some examples removed (a mask row):

* (a) "removed": every member trains without the given examples;
* (b) "random":  member ``k`` trains without the same number of examples drawn at
  random (seeded by ``(random_state, k)``).

Member ``k`` of (a) and (b) shares its initial weights and mini-batch order
(same ``random_state`` and global member index), so the two accuracies are
paired; the report gives the mean and std of ``acc(a) - acc(b)`` and a
two-sided paired t-test (``scipy.stats.ttest_rel``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .runs import TrainingConfig, array_digest, derive_seed, train_in_blocks

__all__ = ["UtilityResult", "marginal_utility", "paired_report"]


def paired_report(a, b) -> dict[str, float]:
    """Mean/std of ``a - b`` and the two-sided paired t-test p-value."""
    from scipy.stats import ttest_rel

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    d = a - b
    std = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    if d.size < 2 or np.allclose(d, d[0]):
        t = p = float("nan")  # identical pairs: the test is undefined
    else:
        res = ttest_rel(a, b)
        t, p = float(res.statistic), float(res.pvalue)
    return {"mean_diff": float(d.mean()), "std_diff": std, "t_statistic": t, "pvalue": p}


@dataclass
class UtilityResult:
    """Test accuracies of the paired ensembles (fractions in [0, 1])."""

    n_removed: int
    acc_removed: np.ndarray  # (K,)
    acc_random: np.ndarray  # (K,)
    mean_diff: float
    std_diff: float
    t_statistic: float
    pvalue: float
    correct_removed: np.ndarray  # (K, m) bool
    correct_random: np.ndarray  # (K, m) bool
    test_idx: np.ndarray  # which test examples the accuracies use

    @property
    def diff(self) -> np.ndarray:
        return self.acc_removed - self.acc_random

    def on_subset(self, test_idx) -> UtilityResult:
        """The same models evaluated on a subset of the test set (e.g. de-duplicated)."""
        idx = np.asarray(test_idx, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("empty test subset")
        a = self.correct_removed[:, idx].mean(axis=1)
        b = self.correct_random[:, idx].mean(axis=1)
        return replace(self, acc_removed=a, acc_random=b, test_idx=idx, **paired_report(a, b))

    def as_dict(self) -> dict:
        return {
            "n_removed": self.n_removed,
            "n_models": int(len(self.acc_removed)),
            "n_test": int(len(self.test_idx)),
            "acc_removed": float(self.acc_removed.mean()),
            "acc_random": float(self.acc_random.mean()),
            "mean_diff": self.mean_diff,
            "std_diff": self.std_diff,
            "t_statistic": self.t_statistic,
            "pvalue": self.pvalue,
        }


def marginal_utility(
    model,
    X,
    y,
    X_test,
    y_test,
    remove_idx,
    *,
    n_models: int = 20,
    training: TrainingConfig | None = None,
    random_pool=None,
    out_dir=None,
    test_idx=None,
    progress_callback=None,
) -> UtilityResult:
    """Accuracy with ``remove_idx`` removed vs the same number removed at random.

    Parameters
    ----------
    model : StackedMLP, ModuleMembers or module factory
    X, y : training data (labels encoded 0..C-1)
    X_test, y_test : test data
    remove_idx : array of int
        Training examples to remove (e.g. the memorized ones).
    n_models : int
        Paired models per condition.
    training : TrainingConfig, optional
        How every model trains (epochs, batch size, optimizer, seed, device, block
        size, overwrite); default :class:`TrainingConfig`'s defaults.
    random_pool : array of int, optional
        Where the random removals are drawn from (default: all examples).
    out_dir : path, optional
        Save both ensembles there (sub-folders named by the removal set's hash),
        resumable like any run.
    test_idx : array of int, optional
        Evaluate on this subset of the test set (e.g. de-duplicated).
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    remove_idx = np.unique(np.asarray(remove_idx, dtype=np.int64))
    if remove_idx.size and (remove_idx.min() < 0 or remove_idx.max() >= n):
        raise ValueError("remove_idx holds indices outside the training set")
    k = int(remove_idx.size)
    if k >= n:
        raise ValueError(f"cannot remove all {n} training examples")
    pool = np.arange(n) if random_pool is None else np.unique(np.asarray(random_pool, np.int64))
    if k > pool.size:
        raise ValueError(f"random pool has {pool.size} examples, fewer than the {k} to remove")
    if not isinstance(n_models, (int, np.integer)) or n_models < 2:
        raise ValueError(f"n_models must be an integer >= 2 for a paired t-test, got {n_models!r}")
    t = training or TrainingConfig()
    block = int(t.block_size)
    random_state = t.random_state
    base_cfg = {"estimator": "utility", "data": array_digest(X, y),
                "test": array_digest(X_test, y_test)}

    def removed_rows(b: int, size: int) -> np.ndarray:
        m = np.ones((size, n), dtype=bool)
        m[:, remove_idx] = False
        return m

    def random_rows(b: int, size: int) -> np.ndarray:
        m = np.ones((size, n), dtype=bool)
        for r in range(size):
            rng = np.random.default_rng(derive_seed(random_state, 3, b * block + r))
            m[r, rng.choice(pool, size=k, replace=False)] = False
        return m

    common = dict(n_members=int(n_models), rate=(n - k) / n, training=t, X_test=X_test,
                  y_test=y_test, callback=progress_callback)
    tag = array_digest(remove_idx)[:12]
    sub = (lambda name: None) if out_dir is None else (lambda name: Path(out_dir) / name)
    res_a = train_in_blocks(model, X, y, mask_for_block=removed_rows, out_dir=sub(f"removed_{tag}"),
                            config=base_cfg | {"condition": "removed",
                                               "remove": array_digest(remove_idx)}, **common)
    if k == 0:
        warnings.warn("nothing to remove: both conditions are the same models", stacklevel=2)
        res_b = res_a
    else:
        res_b = train_in_blocks(model, X, y, mask_for_block=random_rows,
                                out_dir=sub(f"random_{k}_{array_digest(pool)[:8]}"),
                                config=base_cfg | {"condition": "random", "k": k,
                                                   "pool": array_digest(pool)}, **common)
    ca, cb = res_a.correct_test, res_b.correct_test
    full = UtilityResult(n_removed=k, acc_removed=ca.mean(1), acc_random=cb.mean(1),
                         correct_removed=ca, correct_random=cb,
                         test_idx=np.arange(ca.shape[1]),
                         **paired_report(ca.mean(1), cb.mean(1)))
    return full if test_idx is None else full.on_subset(test_idx)
