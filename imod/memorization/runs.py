"""Train classifier members in blocks on the distributed engine, saving every block as it ends.

A run of K members is cut into blocks of ``block_size`` members (the last block
may be smaller). Block ``b`` holds the members with global indices
``b * block_size ...`` and is one task of :class:`imod.distributed.EnsembleJob`
(``grid_only=True``), so

* member seeds depend only on ``(random_state, global index)``;
* each block's mask rows come from ``mask_for_block(b, size)`` alone (balanced
  *within the block* for the estimator: every example is IN exactly
  ``round(rate * size)`` members of the block), so adding blocks never changes
  earlier ones;
* a killed run resumes from the finished blocks, and a run extended to more
  members trains only the new blocks -- both give exactly the numbers of one
  uninterrupted run with all members (same block size). A smaller last block is
  retrained at full size when the run is extended past it;
* blocks run one after the other in this process (``backend="local"``) or as Dask
  tasks on a cluster (``backend="dask"``), with the same numbers.

``out_dir`` is a :class:`imod.distributed.BlockStore`: ``manifest.json`` (config and
its hash) and one ``block_<first>_<stop>.npz`` per finished block with the mask and
the recordings ``rec__correct_train``, ``rec__margin_train``, ``rec__confidence_train``
(and ``rec__correct_test``, ``rec__margin_test`` with a test set), written atomically and read with
``allow_pickle=False``. A folder made with another configuration is refused
(:class:`~imod._runtime.ConfigMismatchError`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from imod.distributed import BlockRunResult, EnsembleJob
from imod.engine import (
    OptimizerSpec,
    Placement,
    Recorder,
    Recording,
    StackedMLP,
    Task,
    Training,
    correctness,
    margin,
)
from imod.engine.members import ModuleMembers

from .._runtime import array_digest, torch_threads

__all__ = [
    "DEFAULT_HIDDEN",
    "TrainingConfig",
    "MemberResults",
    "block_sizes",
    "derive_seed",
    "array_digest",
    "model_description",
    "train_in_blocks",
    "evaluate_members",
    "epochs_to_fit",
    "fit_epoch",
    "pilot_run",
    "signed_loss",
    "logit_confidence",
]

#: Hidden widths of the default member MLP (from benchmarks/studies/memorization_defaults.py).
DEFAULT_HIDDEN: tuple[int, ...] = (512,)


def _default_optimizer() -> OptimizerSpec:
    return OptimizerSpec("adam", lr=3e-3)


@dataclass(frozen=True)
class TrainingConfig:
    """How every member trains: the one record passed from call to call.

    The defaults are the estimator's (an MLP with :data:`DEFAULT_HIDDEN` widths
    fits its own training rows, random labels included, on digits and MNIST-1D).

    Parameters
    ----------
    epochs : int
        Passes over each member's subset.
    batch_size : int
        Examples of its own per member per update.
    optimizer : OptimizerSpec, str or dict
    random_state : int or None
        Seeds initialization and batch order (per global member index).
    device : str or torch.device
    block_size : int
        Members per engine call, per saved block and per Dask task.
    chunk_size : int, optional
        Members trained at once inside a block (default: as many as the memory budget
        allows, and on the CPU as keep a layer's activations near 1 MiB,
        :func:`~imod.engine.runtime.auto_chunk`).
    precision : str, optional
        Engine precision (default fp32).
    torch_threads : int, optional
        Torch threads inside each block task.
    scheduler : None, "local", str or distributed.Client
        In-process (None / "local") or Dask (an address, "local-cluster:N", a client).
    overwrite : bool
        Replace a saved run of another configuration instead of raising.

    Examples
    --------
    >>> from dataclasses import replace
    >>> replace(TrainingConfig(), epochs=5).epochs
    5
    """

    epochs: int = 100
    batch_size: int = 32
    optimizer: OptimizerSpec | str | dict = field(default_factory=_default_optimizer)
    random_state: int | None = 0
    device: str | torch.device = "cpu"
    block_size: int = 64
    chunk_size: int | None = None
    precision: str | None = None
    torch_threads: int | None = None
    scheduler: Any = None
    overwrite: bool = False

    @property
    def uses_dask(self) -> bool:
        return self.scheduler not in (None, "local")

    def engine_training(self, epochs: int | None = None) -> Training:
        """The engine's :class:`~imod.engine.Training` record of this configuration."""
        return Training(optimizer=self.optimizer, batch_size=self.batch_size,
                        epochs=int(self.epochs if epochs is None else epochs),
                        random_state=self.random_state)


@dataclass
class MemberResults:
    """Stacked results of all members (rows in global member order).

    ``train_seconds`` adds up the time spent inside the block tasks of this call
    (training and the end-of-training correctness passes; loaded blocks count 0),
    ``seconds`` is the wall time of the call and ``workers`` the Dask worker of each
    trained block (``""`` in-process).
    """

    mask: np.ndarray  # (K, n) bool
    correct_train: np.ndarray  # (K, n) bool
    correct_test: np.ndarray | None  # (K, m) bool
    margin_train: np.ndarray  # (K, n) float32
    margin_test: np.ndarray | None  # (K, m) float32
    confidence_train: np.ndarray | None = None  # (K, n) float32, logit-scaled (LiRA)
    train_seconds: float = 0.0
    seconds: float = 0.0
    trained_members: int = 0  # members trained in this call (the rest were loaded)
    workers: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return int(self.mask.shape[0])


def derive_seed(random_state: int | None, *keys: int) -> int:
    """A 32-bit seed derived from ``random_state`` and integer keys.

    Examples
    --------
    >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 1, 3)
    True
    """
    entropy = [0 if random_state is None else int(random_state), *[int(k) for k in keys]]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def block_sizes(n_members: int, block_size: int) -> list[int]:
    """Sizes of the blocks of a run of ``n_members`` members.

    Examples
    --------
    >>> block_sizes(20, 8)
    [8, 8, 4]
    """
    full, rest = divmod(int(n_members), int(block_size))
    return [int(block_size)] * full + ([rest] if rest else [])


def model_description(model) -> dict:
    """A JSON-able description of the member architecture (for the config hash).

    A module factory is described by its name, the ``repr`` of one module and its
    parameter shapes, so two factories of the same name but other layers differ.
    """
    if isinstance(model, StackedMLP):
        return {
            "kind": "StackedMLP",
            "sizes": list(model.sizes),
            "activation": model.activation,
            "output_activation": model.output_activation,
            "bias": model.bias,
        }
    factory = model.factory if isinstance(model, ModuleMembers) else model
    qualname = getattr(factory, "__qualname__", repr(factory))
    name = f"{getattr(factory, '__module__', '?')}.{qualname}"
    try:
        with torch.random.fork_rng(devices=[]):
            module = factory()
        shapes = {k: list(v.shape) for k, v in module.named_parameters()}
        arch = repr(module)
    except Exception:  # pragma: no cover - the engine reports bad factories itself
        shapes, arch = {}, ""
    return {"kind": "module", "factory": name, "repr": arch, "parameter_shapes": shapes}


def evaluate_members(result, X, y, device, batch_size: int = 8192):
    """Correctness (bool) and margin (float32) of every member of an ``EnsembleResult``."""
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    correct, margins = [], []
    for i in range(0, len(y_t), batch_size):
        out = result.forward(np.asarray(X[i : i + batch_size]), device=device).float()  # (K, b, C)
        yy = y_t[i : i + batch_size]
        correct.append(correctness(out, yy).bool().numpy())
        margins.append(margin(out, yy).numpy().astype(np.float32))
    return np.concatenate(correct, axis=1), np.concatenate(margins, axis=1)


def logit_confidence(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Logit-scaled confidence ``log(p_y / (1 - p_y)) = z_y - logsumexp_{y' != y} z_y'``.

    The statistic LiRA fits Gaussians to (Carlini et al. 2022), computed stably from
    the logits; shape ``(K, B)``.

    Examples
    --------
    >>> out = torch.tensor([[[2.0, 0.0, 0.0]]])
    >>> p = torch.softmax(out, -1)[0, 0, 0]
    >>> bool(torch.isclose(logit_confidence(out, torch.tensor([0]))[0, 0], torch.log(p / (1 - p))))
    True
    """
    idx = targets.view(1, -1, 1).expand(outputs.shape[0], -1, 1)
    true = outputs.gather(-1, idx).squeeze(-1)
    others = outputs.scatter(-1, idx, float("-inf"))
    return true - torch.logsumexp(others, dim=-1)


#: ``epochs="auto"``: the pilot trains this long at most ...
AUTO_MAX_EPOCHS = 200
#: ... and stops at the first epoch its members fit this share of their own rows ...
AUTO_FIT = 0.99
#: ... then the run trains this many times as long (the pilot's members are few).
AUTO_MARGIN = 1.25


def signed_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every row, negated where the member's arg-max class is wrong.

    One recording (one forward pass) then gives both the correctness (``>= 0``) and the
    loss (the absolute value): a wrong arg-max leaves ``p_y <= 1/2``, so its loss is at
    least ``log 2`` and its sign never ambiguous. Shape ``(K, B)``.

    Examples
    --------
    >>> out = torch.tensor([[[2.0, 0.0], [2.0, 0.0]]])
    >>> [round(v, 3) for v in signed_loss(out, torch.tensor([0, 1]))[0].tolist()]
    [0.127, -2.127]
    """
    from imod.engine.losses import cross_entropy

    loss = cross_entropy(outputs, targets)
    return torch.where(correctness(outputs, targets) > 0, loss, -loss)


def pilot_run(model, X, y, mask, training: TrainingConfig, *, epochs: int = AUTO_MAX_EPOCHS,
              progress: bool = False) -> np.ndarray:
    """Train the members of ``mask`` for ``epochs`` and record every row after every epoch.

    Returns the ``(epochs, k, n)`` :func:`signed_loss` recordings: ``>= 0`` where the
    member classifies the row correctly, the absolute value its cross-entropy. The
    members are seeded as the run's members of the same global index, so with the
    run's first mask rows they follow the run's first members' trajectories.
    """
    from imod.engine import train_ensemble

    with torch_threads(training.torch_threads):
        res = train_ensemble(
            Task(model, X, y, mask=mask, loss="cross_entropy"),
            training.engine_training(int(epochs)),
            Placement(device=training.device, precision=training.precision or "fp32",
                      progress=progress),
            Recording([Recorder("s", signed_loss)], every="epoch"),
        )
    return res.records["s"]


def fit_epoch(correct, mask, groups) -> tuple[int, np.ndarray]:
    """The ``epochs="auto"`` budget from per-epoch correctness ``(E, k, n)`` of pilot members.

    The fit epoch is the first at which the mean accuracy on the rows each member
    trained on reaches :data:`AUTO_FIT` in every group of rows (``groups``: boolean
    ``(n,)`` masks, e.g. natural and random-label rows); the budget is
    :data:`AUTO_MARGIN` times that, at most the recorded epochs. Returns ``(epochs,
    curve)`` with ``curve`` the ``(E, len(groups))`` in-sample accuracies.
    """
    c = np.asarray(correct, dtype=bool)
    groups = [g for g in groups if (mask & g[None]).any()]
    curve = np.stack([c[:, mask & g[None]].mean(axis=1) for g in groups], axis=1)
    fit = np.flatnonzero((curve >= AUTO_FIT).all(axis=1))
    if fit.size == 0:
        return len(c), curve
    return min(len(c), int(np.ceil(AUTO_MARGIN * (fit[0] + 1)))), curve


def epochs_to_fit(model, X, y, mask, groups, training: TrainingConfig, *,
                  progress: bool = False) -> tuple[int, np.ndarray]:
    """The ``epochs="auto"`` rule: train pilot members and find when they fit their rows.

    The pilot members (the rows of ``mask``) train :data:`AUTO_MAX_EPOCHS` epochs
    (:func:`pilot_run`), then :func:`fit_epoch` picks the budget.
    """
    rec = pilot_run(model, X, y, mask, training, progress=progress)
    return fit_epoch(rec >= 0, mask, groups)


def train_in_blocks(
    model,
    X,
    y,
    *,
    mask_for_block: Callable[[int, int], np.ndarray],
    n_members: int,
    rate: float,
    training: TrainingConfig | None = None,
    X_test=None,
    y_test=None,
    out_dir: str | os.PathLike | None = None,
    config: dict | None = None,
    callback: Callable[[int, int, int], None] | None = None,
) -> MemberResults:
    """Train (or load) ``n_members`` classifiers block by block and record their correctness.

    Parameters
    ----------
    model : StackedMLP, ModuleMembers or module factory
        The member architecture, ending in one logit per class.
    X, y : array-like
        Training inputs and integer labels ``0 .. C-1``.
    mask_for_block : callable ``(block_index, size) -> (size, n) bool``
        The mask rows of one block; must depend only on its arguments.
    n_members : int
        K.
    rate : float
        The ensemble-wide subset rate the masks are drawn with (hashed with the
        configuration; each member trains on batches of its own rows whatever it is).
    training : TrainingConfig, optional
        Epochs, batch size, optimizer, seed, device, block size (members per engine
        call, saved block and Dask task), scheduler, overwrite (default: its defaults).
    X_test, y_test : array-like, optional
        Also record correctness and margin on a test set (for influence).
    out_dir : path-like, optional
        The :class:`~imod.distributed.BlockStore` folder; resume / extend from it.
    config : dict, optional
        JSON-able description of what else determines the numbers (e.g. how the
        masks are drawn); hashed with everything else and checked against ``out_dir``.
    callback : callable ``(block_index, members_done, n_members)``
        Called after every trained block, e.g. to advance a progress bar. An
        exception raised there stops the run after the block was saved (used by
        tests to simulate a kill).

    Returns
    -------
    MemberResults

    Raises
    ------
    imod._runtime.ConfigMismatchError
        If ``out_dir`` holds a run with another configuration.

    Examples
    --------
    >>> from imod.engine import StackedMLP, balanced_mask
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 3)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> res = train_in_blocks(StackedMLP((3, 8, 2)), X, y, n_members=6,
    ...                       mask_for_block=lambda b, s: balanced_mask(s, 40, 0.5, b),
    ...                       rate=0.5, training=TrainingConfig(epochs=2, batch_size=8,
    ...                                                         block_size=4))
    >>> res.correct_train.shape, res.trained_members
    ((6, 40), 6)
    """
    t = training or TrainingConfig()
    block_size, n_members = _check_block_counts(t.block_size, n_members)
    X = np.asarray(X)
    y = np.asarray(y)
    job = _block_job(model, X, y, mask_for_block=mask_for_block, n_members=n_members,
                     rate=rate, training=t, X_test=X_test, y_test=y_test, config=config)

    def on_block(blk, done: int, total: int) -> None:
        if callback is not None:
            callback(blk.first // block_size, done, total)

    res = job.run(out_dir, backend="dask" if t.uses_dask else "local",
                  client=t.scheduler if t.uses_dask else None, overwrite=t.overwrite,
                  callback=on_block)
    return _member_results(res, has_test=y_test is not None)


def _check_block_counts(block_size, n_members) -> tuple[int, int]:
    """``(block_size, n_members)`` as ints, refused before any work when not positive ints."""
    for name, v in (("block_size", block_size), ("n_members", n_members)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(block_size), int(n_members)


def _member_recorders(X_test, y_test) -> list[Recorder]:
    """What every member records at the end of training: on its training set always (the
    scores and LiRA), on the test set only when one is given (influence)."""
    recorders = [Recorder("correct_train", correctness, reduce="last"),
                 Recorder("margin_train", margin, reduce="last"),
                 Recorder("confidence_train", logit_confidence, reduce="last")]
    if y_test is not None:
        recorders += [Recorder("correct_test", correctness, X=X_test, y=y_test, reduce="last"),
                      Recorder("margin_test", margin, X=X_test, y=y_test, reduce="last")]
    return recorders


def _block_job(model, X: np.ndarray, y: np.ndarray, *,
               mask_for_block: Callable[[int, int], np.ndarray], n_members: int, rate: float,
               training: TrainingConfig, X_test, y_test, config: dict | None) -> EnsembleJob:
    """The :class:`~imod.distributed.EnsembleJob` of a run: one task per block of the grid,
    whose mask rows come from ``mask_for_block`` and whose config hash covers the model,
    block size, rate and ``config``."""
    block_size, n = int(training.block_size), len(y)  # validated by _check_block_counts

    def mask_rows(first: int, stop: int) -> np.ndarray:
        # grid_only=True below: always one whole block of this run's grid
        rows = np.asarray(mask_for_block(first // block_size, stop - first), dtype=bool)
        if rows.shape != (stop - first, n):
            raise ValueError(
                f"mask_for_block returned shape {rows.shape}, expected {(stop - first, n)}")
        return rows

    recorders = _member_recorders(X_test, y_test)
    extra = {"model": model_description(model), "block_size": block_size, "rate": float(rate),
             **(config or {})}
    return EnsembleJob(
        model, X, y, mask=mask_rows, n_members=n_members, block_size=block_size,
        loss="cross_entropy", training=training.engine_training(),
        placement=Placement(device=training.device, precision=training.precision or "fp32",
                            chunk_size=training.chunk_size or "auto"),
        recording=Recording(recorders, every="end"),
        torch_threads=training.torch_threads, grid_only=True, config=extra,
    )


def _member_results(res: BlockRunResult, *, has_test: bool) -> MemberResults:
    """Stack a finished job's records (loaded and trained blocks alike) into
    :class:`MemberResults` with the dtypes the scores expect."""
    rec = res.records
    return MemberResults(
        mask=res.mask.astype(bool),
        correct_train=rec["correct_train"].astype(bool),
        correct_test=rec["correct_test"].astype(bool) if has_test else None,
        margin_train=rec["margin_train"].astype(np.float32),
        margin_test=rec["margin_test"].astype(np.float32) if has_test else None,
        confidence_train=rec["confidence_train"].astype(np.float32),
        train_seconds=float(sum(res.task_seconds.values())),
        seconds=res.seconds,
        trained_members=sum(b - a for a, b in res.trained),
        workers=dict(res.workers),
    )
