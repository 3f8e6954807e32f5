"""Studies: exact leave-one-out reference, sampling-rate error, and the ablation of the fixes.

* :func:`leave_one_out_reference` -- for every example ``i`` train ``n_seeds``
  models on all data but ``i`` (mask rows with one example removed) and
  ``n_seeds`` models on all data: ``mem_LOO(i) = P[correct | all] - P[correct | all \\ i]``.
  LOO member ``s`` of every example and full member ``s`` share initial weights
  (global member index ``s``), which pairs them and lowers the reference's noise.
* :func:`sampling_rate_study` -- subsampled scores at several rates against the
  LOO reference (mean absolute error, bias, correlation).
* :func:`ablation_study` -- the critique's Table 1: the original F&Z setup, each
  of the four fixes switched on alone, then all four; utility of removing the
  memorized points vs as many random ones, with paired t-tests.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imod._runtime import resolve_device
from imod.engine import Placement, Task, Training, full_mask, train_ensemble

from .estimator import (
    MemorizationEstimator,
    build_model,
    check_classification_data,
    check_member_counts,
)
from .leakage import LeakageReport, find_near_duplicates
from .runs import TrainingConfig, evaluate_members
from .scores import StarvedExamplesWarning, fractional_difference
from .utility import UtilityResult, marginal_utility, paired_report

__all__ = [
    "LOOReference",
    "leave_one_out_reference",
    "sampling_rate_study",
    "AblationResult",
    "ablation_study",
    "ABLATION_ROWS",
]


@dataclass
class LOOReference:
    """Exact leave-one-out memorization of ``indices`` (arrays over those examples)."""

    indices: np.ndarray
    correct_full: np.ndarray  # (S, n_idx): full-data models on the examples
    correct_loo: np.ndarray  # (S, n_idx): models without example i, on i
    n_models: int = 0

    @property
    def p_in(self) -> np.ndarray:
        return self.correct_full.mean(axis=0)

    @property
    def p_out(self) -> np.ndarray:
        return self.correct_loo.mean(axis=0)

    @property
    def difference(self) -> np.ndarray:
        return self.p_in - self.p_out

    @property
    def fractional(self) -> np.ndarray:
        return fractional_difference(self.p_in, self.p_out)

    def split_half_mae(self) -> float:
        """Mean |difference(seeds A) - difference(seeds B)| over two halves of the seeds.

        A noise floor: the LOO reference's own disagreement with itself.
        """
        s = self.correct_full.shape[0] // 2
        a = self.correct_full[:s].mean(0) - self.correct_loo[:s].mean(0)
        b = self.correct_full[s : 2 * s].mean(0) - self.correct_loo[s : 2 * s].mean(0)
        return float(np.abs(a - b).mean())


def leave_one_out_reference(
    model,
    X,
    y,
    *,
    n_seeds: int = 16,
    indices=None,
    epochs: int = 20,
    batch_size: int = 32,
    optimizer="adam",
    random_state: int | None = 0,
    device="cpu",
    paired: bool = False,
    progress: bool = False,
) -> LOOReference:
    """Leave-one-out memorization through the engine (``n_seeds`` models per example).

    Costs ``n_seeds * (len(indices) + 1)`` trainings on ``n - 1`` examples: use it
    on small problems only.

    ``paired=False`` (default) trains all leave-one-out models in one engine call
    (row ``j * n_seeds + s`` leaves out ``indices[j]``; every model has its own
    seed) -- fast. ``paired=True`` gives the models without example ``i`` the
    initial weights of the full-data models (one engine call per example,
    common random numbers: a less noisy difference, slower on small problems).
    """
    X, y_enc, classes, _, _ = check_classification_data(X, y)
    n = len(y_enc)
    model = build_model(model, X.shape[1], len(classes))
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if not isinstance(n_seeds, (int, np.integer)) or n_seeds < 2:
        raise ValueError(f"n_seeds must be an integer >= 2, got {n_seeds!r}")
    dev = resolve_device(device)
    training = Training(optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                        random_state=random_state)
    n_loo = len(idx) * n_seeds
    full = train_ensemble(Task(model, X, y_enc, mask=full_mask(n_seeds, n), loss="cross_entropy",
                               first_member=0 if paired else n_loo), training, Placement(dev))
    c_full, _ = evaluate_members(full, X[idx], y_enc[idx], dev)
    c_loo = np.zeros((n_seeds, len(idx)), dtype=bool)
    if paired:
        it = idx
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(idx, desc="leave-one-out", unit="example")
        for j, i in enumerate(it):
            mask = np.ones((n_seeds, n), dtype=bool)
            mask[:, i] = False
            res = train_ensemble(Task(model, X, y_enc, mask=mask, loss="cross_entropy"),
                                 training, Placement(dev))
            c, _ = evaluate_members(res, X[i : i + 1], y_enc[i : i + 1], dev)
            c_loo[:, j] = c[:, 0]
    else:
        mask = np.ones((n_loo, n), dtype=bool)
        rows = np.arange(n_loo)
        mask[rows, np.repeat(idx, n_seeds)] = False
        res = train_ensemble(Task(model, X, y_enc, mask=mask, loss="cross_entropy"), training,
                             Placement(dev, progress=progress))
        c, _ = evaluate_members(res, X[idx], y_enc[idx], dev)  # (n_loo, len(idx))
        held = c[rows, np.repeat(np.arange(len(idx)), n_seeds)]
        c_loo = held.reshape(len(idx), n_seeds).T
    return LOOReference(indices=idx, correct_full=c_full, correct_loo=c_loo,
                        n_models=n_seeds * (len(idx) + 1))


def members_for_rate(rate: float, n_target: int, block_size: int | None = None) -> int:
    """Members so that every example is IN and OUT at least ``n_target`` members."""
    k = max(math.ceil(n_target / (1.0 - rate)), math.ceil(n_target / rate))
    while int(round(rate * k)) < n_target or k - int(round(rate * k)) < n_target:
        k += 1
    return k


def sampling_rate_study(
    model,
    X,
    y,
    *,
    loo: LOOReference,
    rates=(0.1, 0.3, 0.5, 0.7, 0.95),
    n_target: int = 16,
    epochs: int = 20,
    batch_size: int = 32,
    optimizer="adam",
    random_state: int | None = 0,
    device="cpu",
    progress: bool = False,
):
    """Subsampled scores at several rates vs the leave-one-out reference.

    At each rate, ``K`` members with every example IN and OUT at least
    ``n_target`` of them (one balanced block). Returns a DataFrame with one row
    per rate: mean absolute error of ``difference``, ``fractional``, ``p_in``,
    ``p_out`` against LOO, the bias (mean signed error) of ``difference``, and
    the Pearson correlation of the difference scores.
    """
    import pandas as pd

    rows = []
    idx = loo.indices
    for rate in rates:
        k = members_for_rate(rate, n_target)
        est = MemorizationEstimator(
            model=model, n_members=k, rate=rate, epochs=epochs, batch_size=batch_size,
            optimizer=optimizer, random_label_fraction=0.0, threshold=0.0, min_out=1,
            block_size=k, influence=False, random_state=random_state, device=device,
            progress=progress,
        ).fit(X, y)
        d = est.difference_[idx]
        err = d - loo.difference
        ok = np.isfinite(err)
        corr = (np.corrcoef(d[ok], loo.difference[ok])[0, 1]
                if ok.sum() > 2 and d[ok].std() > 0 and loo.difference[ok].std() > 0
                else float("nan"))
        rows.append({
            "rate": rate,
            "n_members": k,
            "in_count": int(est.in_counts_[0]),
            "out_count": int(est.out_counts_[0]),
            "mae_difference": float(np.nanmean(np.abs(err))),
            "bias_difference": float(np.nanmean(err)),
            "mae_fractional": float(np.nanmean(np.abs(est.fractional_[idx] - loo.fractional))),
            "mae_p_in": float(np.nanmean(np.abs(est.p_in_[idx] - loo.p_in))),
            "mae_p_out": float(np.nanmean(np.abs(est.p_out_[idx] - loo.p_out))),
            "pearson_difference": float(corr),
            "mean_difference": float(np.nanmean(d)),
            "loo_mean_difference": float(loo.difference.mean()),
            "loo_split_half_mae": loo.split_half_mae(),
        })
    return pd.DataFrame(rows)


# (label, rate, score, threshold kind, de-duplicated test); threshold kind "null" uses
# the study's null_side, "null_upper" / "null_lower" a fixed side.
ABLATION_ROWS = (
    ("original F&Z (rate 0.7, difference, threshold 0.25, test with duplicates)",
     0.7, "difference", "fixed", False),
    ("+ rate 0.95", 0.95, "difference", "fixed", False),
    ("+ fractional score", 0.7, "fractional", "fixed", False),
    ("+ null threshold", 0.7, "difference", "null", False),
    ("+ de-duplicated test", 0.7, "difference", "fixed", True),
    ("all four fixes", 0.95, "fractional", "null", True),
)


def ablation_rows(null_sides=("upper",)) -> tuple:
    """:data:`ABLATION_ROWS` with the null rows repeated for each side in ``null_sides``."""
    if len(null_sides) == 1:
        return tuple((lab, r, s, ("null_" + null_sides[0]) if t == "null" else t, d)
                     for lab, r, s, t, d in ABLATION_ROWS)
    rows = []
    for lab, r, s, t, d in ABLATION_ROWS:
        if t == "null":
            rows += [(f"{lab} ({side} quantile)", r, s, "null_" + side, d) for side in null_sides]
        else:
            rows.append((lab, r, s, t, d))
    return tuple(rows)


@dataclass
class AblationResult:
    table: object  # DataFrame
    estimators: dict = field(default_factory=dict)  # rate -> fitted MemorizationEstimator
    leakage: LeakageReport | None = None
    utilities: dict = field(default_factory=dict)  # row label -> UtilityResult


def ablation_study(
    model,
    X,
    y,
    X_test,
    y_test,
    *,
    n_members: int | dict = 64,
    n_utility_models: int = 20,
    rates=(0.7, 0.95),
    fixed_threshold: float = 0.25,
    alpha: float = 0.05,
    null_side: str = "upper",
    random_label_fraction: float = 0.05,
    dup_threshold: float = 0.98,
    dup_features=None,
    training: TrainingConfig | None = None,
    min_out: int = 3,
    out_dir=None,
    progress: bool = False,
    rows=None,
) -> AblationResult:
    """The critique's Table 1 on ``(X, y)``: one row per setting.

    One scoring run per rate (``n_members`` members, a dict ``{rate: K}`` allowed,
    with ``random_label_fraction`` relabelled points for the null), one
    near-duplicate search, then for every distinct memorized set two paired
    ensembles of ``n_utility_models`` full-data models on the *clean* labels
    (memorized natural points removed vs as many random ones). Columns:
    ``diff`` = mean accuracy(removed memorized) - accuracy(removed random) in
    percentage points, its std and the paired t-test p-value; ``delta`` and
    ``p_vs_baseline`` compare each row's per-seed differences with the first
    row's (paired by seed, two-sided). A setting that flags no point has
    ``n_memorized`` 0 and NaN utility (nothing is trained for it). ``training`` (a
    :class:`TrainingConfig`) says how every member of the scoring runs and of the utility
    ensembles trains.
    """
    import pandas as pd

    X, y_enc, classes, X_test, yt_enc = check_classification_data(X, y, X_test, y_test)
    if rows is None:
        rows = ablation_rows((null_side,))
    t = training or TrainingConfig()
    sub = (lambda name: None) if out_dir is None else (lambda name: Path(out_dir) / name)
    estimators = _scoring_runs(
        model, X, y_enc, X_test, yt_enc, rates=sorted({r[1] for r in rows}),
        n_members=n_members, training=t, random_label_fraction=random_label_fraction,
        alpha=alpha, null_side=null_side, min_out=min_out, sub=sub, progress=progress)
    leak = find_near_duplicates(X, X_test, threshold=dup_threshold, features=dup_features)
    measure = _utility_of(build_model(model, X.shape[1], len(classes)), X, y_enc, X_test,
                          yt_enc, n_models=n_utility_models, training=t, sub=sub)
    table, utilities = _ablation_table(rows, estimators, leak, measure,
                                       fixed_threshold=fixed_threshold, alpha=alpha,
                                       null_side=null_side)
    return AblationResult(table=pd.DataFrame(table), estimators=estimators, leakage=leak,
                          utilities=utilities)


def _scoring_runs(model, X: np.ndarray, y: np.ndarray, X_test, y_test, *, rates: list[float],
                  n_members: int | dict, training: TrainingConfig,
                  random_label_fraction: float, alpha: float, null_side: str, min_out: int,
                  sub: Callable[[str], Path | None],
                  progress: bool) -> dict[float, MemorizationEstimator]:
    """One fitted :class:`MemorizationEstimator` per rate (difference score, no influence).

    Every rate's member counts are checked before the first one trains, so a bad
    ``n_members`` fails at once instead of after hours of training.
    """
    t = training
    for rate in rates:  # fail before any training
        k = n_members[rate] if isinstance(n_members, dict) else n_members
        check_member_counts(k, t.block_size, rate, 1, min_out)
    estimators = {}
    for rate in rates:
        k = n_members[rate] if isinstance(n_members, dict) else n_members
        est = MemorizationEstimator(
            model=model, n_members=k, rate=rate, epochs=t.epochs, batch_size=t.batch_size,
            optimizer=t.optimizer, score="difference", random_label_fraction=random_label_fraction,
            alpha=alpha, null_side=null_side, min_out=min_out, block_size=t.block_size,
            influence=False, random_state=t.random_state, device=t.device,
            chunk_size=t.chunk_size, precision=t.precision, n_threads=t.torch_threads,
            scheduler=t.scheduler, out_dir=sub(f"scores_rate{rate:g}"), overwrite=t.overwrite,
            progress=progress,
        ).fit(X, y, X_test, y_test)
        estimators[rate] = est
    return estimators


def _memorized_set(est: MemorizationEstimator, score: str, thr_kind: str, *,
                   fixed_threshold: float, alpha: float,
                   null_side: str) -> tuple[float, np.ndarray]:
    """``(threshold, indices)`` of the natural points one table row calls memorized.

    ``thr_kind`` is ``"fixed"`` (``fixed_threshold``), ``"null"`` (the study's
    ``null_side``) or ``"null_upper"`` / ``"null_lower"`` (a fixed side); the lower null
    side counts ties at the threshold (its 95 % TPR operating point).
    """
    side = null_side if thr_kind in ("null", "fixed") else thr_kind.split("_", 1)[1]
    if thr_kind.startswith("null"):
        thr = est.null_threshold_for(score, alpha, side)
    else:
        thr = float(fixed_threshold)
    mem_idx = np.flatnonzero(est.memorized_for(
        getattr(est, score + "_"), thr,
        inclusive=thr_kind.startswith("null") and side == "lower"))
    return thr, mem_idx


def _utility_of(arch, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, *,
                n_models: int, training: TrainingConfig,
                sub: Callable[[str], Path | None]) -> Callable[[np.ndarray], UtilityResult]:
    """``measure(mem_idx)``: the utility of removing ``mem_idx``, trained once per distinct
    set -- rows that flag the same points share one pair of utility ensembles."""
    cache: dict[bytes, UtilityResult] = {}

    def measure(mem_idx: np.ndarray) -> UtilityResult:
        key = mem_idx.tobytes()
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                cache[key] = marginal_utility(
                    arch, X, y, X_test, y_test, mem_idx, n_models=n_models,
                    training=training, out_dir=sub("utility"),
                )
        return cache[key]

    return measure


def _ablation_table(rows, estimators: dict[float, MemorizationEstimator], leak: LeakageReport,
                    measure: Callable[[np.ndarray], UtilityResult], *, fixed_threshold: float,
                    alpha: float, null_side: str) -> tuple[list[dict], dict[str, UtilityResult]]:
    """The table's rows and the utility of every row that flags points.

    ``delta`` / ``p_vs_baseline`` compare with the first row that flags any point (its
    per-seed differences are the baseline); a row flagging none has NaN utility columns.
    """
    utilities: dict[str, UtilityResult] = {}
    table: list[dict] = []
    base_diff = None
    for label, rate, score, thr_kind, dedup in rows:
        thr, mem_idx = _memorized_set(estimators[rate], score, thr_kind,
                                      fixed_threshold=fixed_threshold, alpha=alpha,
                                      null_side=null_side)
        row = {"setting": label, "rate": rate, "score": score, "threshold": thr,
               "threshold_kind": thr_kind, "n_memorized": int(mem_idx.size)}
        if not mem_idx.size:  # nothing flagged: no utility to measure, nothing to train
            table.append(row)
            continue
        u = measure(mem_idx)
        if dedup:
            u = u.on_subset(leak.dedup_test_idx)
        utilities[label] = u
        d = u.diff * 100.0
        if base_diff is None:
            base_diff = d
        cmp = paired_report(d, base_diff)
        table.append({
            **row,
            "n_test": int(len(u.test_idx)),
            "acc_removed": 100.0 * float(u.acc_removed.mean()),
            "acc_random": 100.0 * float(u.acc_random.mean()),
            "diff": float(d.mean()),
            "std": float(d.std(ddof=1)),
            "pvalue": u.pvalue,
            "delta": cmp["mean_diff"],
            "p_vs_baseline": cmp["pvalue"],
        })
    return table, utilities

__all__ += ["members_for_rate", "ablation_rows", "StarvedExamplesWarning"]
