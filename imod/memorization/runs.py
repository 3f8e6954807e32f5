"""Train members in blocks through the engine, saving every block as it finishes.

A run of K members is cut into blocks of ``block_size`` members (the last block
may be smaller). Block ``b`` holds the members with global indices
``b * block_size ... `` and is one call of :func:`imod.engine.train_ensemble` with
``first_member = b * block_size`` on its own mask rows, so

* member seeds depend only on ``(random_state, global index)``;
* each block's mask is generated from ``(random_state, b)`` alone, balanced
  *within the block* (every example is IN exactly ``round(rate * size)`` members
  of the block), so adding blocks never changes earlier ones;
* a killed run resumes from the finished blocks, and a run extended to more
  members trains only the new blocks -- both give exactly the numbers of one
  uninterrupted run with all members (same block size). A smaller last block is
  retrained at full size when the run is extended past it.

On disk (``out_dir``)::

    manifest.json        config, config hash, target members, finished blocks
    block_00000.npz      mask (B, n) bool, correct_train (B, n) bool,
                         correct_test (B, m) bool, margin_train/margin_test float32
    ...

Files are written to a temporary name and renamed (atomic), and loaded with
``allow_pickle=False``. A folder made with another configuration is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imod.engine import OptimizerSpec, StackedMLP, train_ensemble
from imod.engine.members import ModuleMembers

from .._digest import array_digest

__all__ = [
    "ConfigMismatchError",
    "MemberResults",
    "block_sizes",
    "derive_seed",
    "array_digest",
    "model_description",
    "config_hash",
    "train_in_blocks",
    "evaluate_members",
]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ConfigMismatchError(ValueError):
    """The output folder holds a run made with a different configuration."""


@dataclass
class MemberResults:
    """Stacked results of all members (rows in global member order)."""

    mask: np.ndarray  # (K, n) bool
    correct_train: np.ndarray  # (K, n) bool
    correct_test: np.ndarray | None  # (K, m) bool
    margin_train: np.ndarray  # (K, n) float32
    margin_test: np.ndarray | None  # (K, m) float32
    train_seconds: float = 0.0  # engine time in this call (loaded blocks: 0)
    eval_seconds: float = 0.0  # forward passes for the correctness matrices
    trained_members: int = 0  # members trained in this call (the rest were loaded)

    @property
    def n_members(self) -> int:
        return int(self.mask.shape[0])


def derive_seed(random_state: int | None, *keys: int) -> int:
    """A 32-bit seed derived from ``random_state`` and integer keys."""
    entropy = [0 if random_state is None else int(random_state), *[int(k) for k in keys]]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def block_sizes(n_members: int, block_size: int) -> list[int]:
    """Sizes of the blocks of a run of ``n_members`` members."""
    full, rest = divmod(int(n_members), int(block_size))
    return [int(block_size)] * full + ([rest] if rest else [])


def model_description(model) -> dict:
    """A JSON-able description of the member architecture (for the config hash)."""
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


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _engine_kwargs(precision: str | None) -> dict:
    if precision in (None, "fp32", "float32"):
        return {}
    params = inspect.signature(train_ensemble).parameters
    if "precision" not in params:
        raise ValueError(
            f"precision={precision!r} was requested but this engine has no precision option"
        )
    return {"precision": precision}


def evaluate_members(result, X, y, device, batch_size: int = 8192):
    """Correctness (bool) and margin (float32) of every member on ``(X, y)``."""
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    correct, margins = [], []
    n = len(y_t)
    for i in range(0, n, batch_size):
        out = result.forward(np.asarray(X[i : i + batch_size]), device=device).float()  # (K, b, C)
        yy = y_t[i : i + batch_size]
        correct.append((out.argmax(-1) == yy.unsqueeze(0)).numpy())
        idx = yy.view(1, -1, 1).expand(out.shape[0], -1, 1)
        true = out.gather(-1, idx).squeeze(-1)
        others = out.scatter(-1, idx, float("-inf")).max(-1).values
        margins.append((true - others).numpy().astype(np.float32))
    return np.concatenate(correct, axis=1), np.concatenate(margins, axis=1)


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _atomic_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _load_block(path: Path, size: int, n: int, m: int | None, chash: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None  # unreadable (e.g. killed while writing): retrain
    if str(data.get("config_hash", "")) != chash or data["mask"].shape != (size, n):
        return None
    if m is not None and data["correct_test"].shape != (size, m):
        return None
    return data


def train_in_blocks(
    model,
    X,
    y,
    *,
    mask_for_block: Callable[[int, int], np.ndarray],
    n_members: int,
    block_size: int,
    epochs: int,
    batch_size: int,
    optimizer: OptimizerSpec | str | dict = "adam",
    random_state: int | None = 0,
    X_test=None,
    y_test=None,
    device: str | torch.device = "cpu",
    chunk_size: int | str | None = None,
    precision: str | None = None,
    out_dir: str | os.PathLike | None = None,
    config: dict | None = None,
    overwrite: bool = False,
    callback: Callable[[int, int, int], None] | None = None,
    engine_progress: bool = False,
) -> MemberResults:
    """Train (or load) ``n_members`` classifiers block by block.

    Parameters
    ----------
    mask_for_block : callable ``(block_index, size) -> (size, n) bool``
        The mask rows of one block; must depend only on its arguments.
    config : dict
        JSON-able description of everything that determines the numbers (data
        digests, model, optimizer, ...); hashed and checked against ``out_dir``.
    callback : callable ``(block_index, members_done, n_members)``
        Called after every block (trained or loaded), e.g. to advance a
        progress bar. An exception raised there stops the run after the block
        was saved (used by tests to simulate a kill).
    """
    from imod.engine.trainer import resolve_device

    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if not isinstance(n_members, (int, np.integer)) or n_members < 1:
        raise ValueError(f"n_members must be a positive integer, got {n_members!r}")
    X = np.asarray(X)
    y = np.asarray(y)
    n = len(y)
    m = None if y_test is None else len(y_test)
    dev = resolve_device(device)
    kw = _engine_kwargs(precision)
    config = dict(config or {})
    config.update(
        {
            "format_version": FORMAT_VERSION,
            "block_size": int(block_size),
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "optimizer": dataclasses.asdict(OptimizerSpec.coerce(optimizer)),
            "random_state": random_state,
            "model": model_description(model),
            "precision": precision or "fp32",
            "chunk_size": (chunk_size if isinstance(chunk_size, (int, type(None)))
                           else str(chunk_size)),
        }
    )
    config = json.loads(json.dumps(config))  # tuples -> lists, as read back from JSON
    chash = config_hash(config)

    folder = None
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        man_path = folder / MANIFEST
        if man_path.exists():
            old = json.loads(man_path.read_text())
            if old.get("config_hash") != chash:
                if not overwrite:
                    changed = sorted(
                        k for k in set(old.get("config", {})) | set(config)
                        if old.get("config", {}).get(k) != config.get(k)
                    )
                    raise ConfigMismatchError(
                        f"{folder} holds a run with another configuration (differs in: "
                        f"{', '.join(changed) or 'hash'}); use another folder or overwrite=True"
                    )
                for f in folder.glob("block_*.npz"):
                    f.unlink()
        manifest = {"config": config, "config_hash": chash, "n_members": int(n_members),
                    "blocks": []}
        _atomic_json(man_path, manifest)

    sizes = block_sizes(n_members, block_size)
    parts: list[dict] = []
    done = 0
    train_seconds = 0.0
    eval_seconds = 0.0
    trained = 0
    for b, size in enumerate(sizes):
        first = b * int(block_size)
        data = None
        path = None
        if folder is not None:
            path = folder / f"block_{b:05d}.npz"
            if path.exists():
                data = _load_block(path, size, n, m, chash)
        if data is None:
            mask = np.asarray(mask_for_block(b, size), dtype=bool)
            if mask.shape != (size, n):
                raise ValueError(
                    f"mask_for_block returned shape {mask.shape}, expected {(size, n)}"
                )
            t0 = time.perf_counter()
            res = train_ensemble(
                model, X, y, mask=mask, loss="cross_entropy", optimizer=optimizer,
                epochs=epochs, batch_size=batch_size, random_state=random_state,
                first_member=first, device=dev,
                chunk_size=size if chunk_size is None else chunk_size,
                progress=engine_progress, **kw,
            )
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t1 = time.perf_counter()
            train_seconds += t1 - t0
            ct, mt = evaluate_members(res, X, y, dev)
            data = {"mask": mask, "correct_train": ct, "margin_train": mt}
            if m is not None:
                cte, mte = evaluate_members(res, X_test, y_test, dev)
                data["correct_test"], data["margin_test"] = cte, mte
            eval_seconds += time.perf_counter() - t1
            trained += size
            if path is not None:
                _atomic_savez(path, config_hash=np.array(chash), first_member=np.array(first),
                              **data)
        parts.append(data)
        done += size
        if folder is not None:
            manifest["blocks"].append({"index": b, "first_member": first, "size": size,
                                       "file": f"block_{b:05d}.npz"})
            _atomic_json(folder / MANIFEST, manifest)
        if callback is not None:
            callback(b, done, int(n_members))

    def cat(key):
        if key not in parts[0]:
            return None
        return np.concatenate([p[key] for p in parts], axis=0)

    return MemberResults(
        mask=cat("mask").astype(bool),
        correct_train=cat("correct_train").astype(bool),
        correct_test=None if m is None else cat("correct_test").astype(bool),
        margin_train=cat("margin_train"),
        margin_test=None if m is None else cat("margin_test"),
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        trained_members=trained,
    )


def n_blocks(n_members: int, block_size: int) -> int:
    return math.ceil(n_members / block_size)
