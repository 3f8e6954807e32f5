"""Results of an ensemble trained in blocks, one file per finished block.

A store is a folder::

    manifest.json                    {"format_version", "config", "config_hash",
                                      "reductions", "blocks": [...]}
    block_0000000_0000064.npz        members [0, 64): mask (B, n) bool, one array per
                                      recorder ("rec__<name>", members on the recorder's
                                      member axis), record_epochs, record_updates,
                                      first_member, stop_member, config_hash
    params_0000000_0000064.pt        optional: the final stacked parameters, a dict of
                                      tensors written with ``torch.save``
    ...

Every file is written through :func:`imod._runtime.atomic_write` (temporary name, flush,
rename), so a killed run leaves either a whole block or none. Blocks are read with
``allow_pickle=False`` and parameters with ``torch.load(weights_only=True)``; a block or
parameter file that cannot be read (damaged on disk, cut by a full disk) counts as missing
and is trained again. Opening a folder that holds a run made with another configuration
raises :class:`~imod._runtime.ConfigMismatchError` (imod's one error for it). A manifest
that cannot be read is rebuilt from the blocks, which record their configuration's hash:
when every block there was made under this configuration; otherwise the folder is
refused like a changed configuration.

A member's numbers depend only on the configuration and its global index, so blocks may
cover any ranges ``[first, stop)``; :meth:`BlockStore.merge` stitches the ranges that
cover ``[0, K)`` back into one ``(K, ...)`` result.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imod._runtime import ConfigMismatchError, atomic_write

__all__ = ["BlockData", "BlockStore", "config_hash", "missing_ranges"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_BLOCK_RE = re.compile(r"^block_(\d{7})_(\d{7})\.npz$")


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of a JSON-able configuration.

    Examples
    --------
    >>> config_hash({"a": 1}) == config_hash({"a": 1})
    True
    """
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the entries that differ between two JSON-able configurations.

    Examples
    --------
    >>> changed_keys({"train": {"epochs": 3, "lr": 1}, "a": 1}, {"train": {"epochs": 4, "lr": 1}})
    ['a', 'train.epochs']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "?"]


def member_axis(reduce: str) -> int:
    """Axis of the members in a recorder's array: 1 for ``"stack"`` ``(T, K, n)``, else 0."""
    return 1 if reduce == "stack" else 0


@dataclass
class BlockData:
    """What one block of members ``[first, stop)`` produced.

    Attributes
    ----------
    first, stop : int
        Global member range.
    mask : ndarray of shape (stop - first, n)
    records : dict of str to ndarray
        Recorder arrays with the block's members on :func:`member_axis`.
    record_epochs, record_updates : ndarray of shape (T,)
    params : dict of str to Tensor, optional
        Final stacked parameters ``(stop - first, ...)``.
    seconds : float
        Wall time of the training task (0 for blocks read from disk).
    """

    first: int
    stop: int
    mask: np.ndarray
    records: dict[str, np.ndarray]
    record_epochs: np.ndarray
    record_updates: np.ndarray
    params: dict[str, Any] | None = None
    seconds: float = 0.0
    worker: str = ""

    @property
    def size(self) -> int:
        return self.stop - self.first


@dataclass
class Merged:
    """Blocks stitched into one run over members ``[0, K)``."""

    mask: np.ndarray
    records: dict[str, np.ndarray]
    record_epochs: np.ndarray
    record_updates: np.ndarray
    params: dict[str, Any] | None = None
    blocks: list[tuple[int, int]] = field(default_factory=list)


def missing_ranges(
    n_members: int, block_size: int, have: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Member ranges of at most ``block_size`` (on the block grid) not covered by ``have``.

    Examples
    --------
    >>> missing_ranges(10, 4, [(0, 4)])
    [(4, 8), (8, 10)]
    >>> missing_ranges(10, 4, [(0, 6)])
    [(6, 8), (8, 10)]
    """
    covered = np.zeros(n_members, dtype=bool)
    for a, b in have:
        covered[a : min(b, n_members)] = True
    out = []
    for g0 in range(0, n_members, block_size):
        g1 = min(g0 + block_size, n_members)
        i = g0
        while i < g1:
            if covered[i]:
                i += 1
                continue
            j = i
            while j < g1 and not covered[j]:
                j += 1
            out.append((i, j))
            i = j
    return out


class BlockStore:
    """A folder of finished member blocks with a manifest of the configuration.

    Parameters
    ----------
    path : path-like
        The folder (created).
    config : dict
        JSON-able description of everything that determines the numbers. Its hash is
        written to ``manifest.json``; reopening the folder with another configuration
        raises :class:`~imod._runtime.ConfigMismatchError` unless ``overwrite=True``
        (which deletes the blocks).
    reductions : dict of str to str
        Recorder name -> ``reduce`` (``"stack"``, ``"mean"`` or ``"last"``).
    overwrite : bool

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> store = BlockStore(d, {"epochs": 3}, {"loss": "last"})
    >>> blk = BlockData(0, 2, np.ones((2, 4), bool), {"loss": np.zeros((2, 4))},
    ...                 np.array([3.0]), np.array([6]))
    >>> store.save(blk)
    >>> store.ranges()
    [(0, 2)]
    >>> BlockStore(d, {"epochs": 4}, {"loss": "last"})
    Traceback (most recent call last):
    ...
    imod._runtime.ConfigMismatchError: ...differs in: epochs...
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: dict[str, Any],
        reductions: dict[str, str],
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = json.loads(json.dumps(config, default=str))
        self.hash = config_hash(self.config)
        self.reductions = dict(reductions)
        man = self.path / MANIFEST
        if man.is_file():
            try:
                old = json.loads(man.read_text(encoding="utf-8"))
                if not isinstance(old, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                old = self._rebuilt_manifest(man, exc, overwrite)
            if old.get("config_hash") != self.hash:
                if not overwrite:
                    diff = changed_keys(old.get("config", {}), self.config)
                    raise ConfigMismatchError(
                        self.path, f"blocks of hash {old.get('config_hash')} != {self.hash}; "
                        f"differs in: {', '.join(diff) or '?'}", changed=diff)
                for f in list(self.path.glob("block_*.npz")) + list(self.path.glob("params_*.pt")):
                    f.unlink()
        self._write_manifest()

    def _rebuilt_manifest(self, man: Path, exc: Exception, overwrite: bool) -> dict[str, Any]:
        """What a damaged manifest said, from the blocks: their configuration hash (each
        block records it). Blocks of another configuration are refused, as a changed
        configuration is; blocks that cannot be read are trained again."""
        hashes = set()
        for a, b in self.ranges():
            try:
                with np.load(self._block_path(a, b), allow_pickle=False) as z:
                    hashes.add(str(z["config_hash"]))
            except Exception:  # noqa: BLE001 - a damaged block is trained again
                continue
        if hashes - {self.hash} and not overwrite:
            raise ConfigMismatchError(
                self.path, f"{man.name} is unreadable ({exc}) and blocks there were made under "
                "another configuration", changed=["?"]) from exc
        return {"config_hash": self.hash if not hashes - {self.hash} else None}

    # ------------------------------------------------------------------ files
    def _block_path(self, first: int, stop: int) -> Path:
        return self.path / f"block_{first:07d}_{stop:07d}.npz"

    def _params_path(self, first: int, stop: int) -> Path:
        return self.path / f"params_{first:07d}_{stop:07d}.pt"

    def _write_manifest(self) -> None:
        manifest = {
            "format_version": FORMAT_VERSION,
            "config": self.config,
            "config_hash": self.hash,
            "reductions": self.reductions,
            "blocks": [{"first": a, "stop": b, "file": self._block_path(a, b).name}
                       for a, b in self.ranges()],
        }
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        atomic_write(self.path / MANIFEST, lambda fh: fh.write(text))

    def ranges(self) -> list[tuple[int, int]]:
        """Member ranges ``(first, stop)`` of the finished blocks on disk, sorted."""
        out = []
        for f in self.path.iterdir():
            m = _BLOCK_RE.match(f.name)
            if m:
                out.append((int(m.group(1)), int(m.group(2))))
        return sorted(out)

    def block_files(self) -> dict[tuple[int, int], Path]:
        """Range -> block file."""
        return {r: self._block_path(*r) for r in self.ranges()}

    # ------------------------------------------------------------------ save / load
    def save(self, block: BlockData) -> None:
        """Write one block (and its parameters, when present) atomically."""
        arrays: dict[str, np.ndarray] = {
            "mask": np.ascontiguousarray(block.mask, dtype=bool),
            "record_epochs": np.asarray(block.record_epochs, dtype=float),
            "record_updates": np.asarray(block.record_updates, dtype=np.int64),
            "first_member": np.array(block.first),
            "stop_member": np.array(block.stop),
            "config_hash": np.array(self.hash),
        }
        for name, arr in block.records.items():
            arrays[f"rec__{name}"] = np.asarray(arr)
        if block.params is not None:
            import torch

            params = {k: v.detach().cpu().contiguous() for k, v in block.params.items()}
            atomic_write(self._params_path(block.first, block.stop),
                         lambda fh: torch.save(params, fh))
        atomic_write(self._block_path(block.first, block.stop),
                     lambda fh: np.savez(fh, **arrays))
        self._write_manifest()

    def load(self, first: int, stop: int, params: bool = False) -> BlockData | None:
        """Read one block; None when it is missing, unreadable or of another configuration.

        A damaged file (bad zip, bad CRC, cut short, missing arrays) reads as None, so the
        caller trains the block again.
        """
        path = self._block_path(first, stop)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception:  # noqa: BLE001 - a damaged file fails in many ways (even SyntaxError
            return None  # from a garbled array header); it is trained again
        if str(data.get("config_hash", "")) != self.hash:
            return None
        need = {"mask", "record_epochs", "record_updates"} | {f"rec__{r}" for r in self.reductions}
        if not need <= set(data) or data["mask"].shape[0] != stop - first:
            return None
        records = {k[5:]: v for k, v in data.items() if k.startswith("rec__")}
        p = None
        if params:
            ppath = self._params_path(first, stop)
            if not ppath.is_file():
                return None
            import torch

            try:
                p = torch.load(ppath, weights_only=True)
            except Exception:  # noqa: BLE001 - damaged file: retrain (torch raises many kinds)
                return None
        return BlockData(first, stop, data["mask"], records, data["record_epochs"],
                         data["record_updates"], params=p)

    def valid_ranges(self, params: bool = False) -> list[tuple[int, int]]:
        """Ranges whose block file (and parameter file, if ``params``) is usable."""
        out = []
        for a, b in self.ranges():
            if params and not self._params_path(a, b).is_file():
                continue
            if self.load(a, b) is not None:
                out.append((a, b))
        return out

    def merge(self, n_members: int, params: bool = False) -> Merged:
        """Stitch the stored blocks into members ``[0, n_members)``.

        Raises
        ------
        ValueError
            If the stored blocks do not cover ``[0, n_members)``.
        """
        chosen: list[tuple[int, int]] = []
        pos = 0
        ranges = self.valid_ranges(params=params)
        while pos < n_members:
            cands = [r for r in ranges if r[0] <= pos < r[1]]
            if not cands:
                raise ValueError(f"members [{pos}, ...) are not in the store {self.path}")
            best = max(cands, key=lambda r: r[1])
            chosen.append(best)
            pos = best[1]
        parts: list[BlockData] = []
        for a, b in chosen:
            blk = self.load(a, b, params=params)
            assert blk is not None
            parts.append(blk)
        return merge_blocks(parts, n_members, self.reductions)


def merge_blocks(
    parts: list[BlockData], n_members: int, reductions: dict[str, str]
) -> Merged:
    """Concatenate blocks that cover ``[0, n_members)`` in order (overlaps are trimmed)."""
    parts = sorted(parts, key=lambda p: p.first)
    pieces: list[tuple[BlockData, slice]] = []
    pos = 0
    for p in parts:
        if p.stop <= pos or pos >= n_members:
            continue
        if p.first > pos:
            raise ValueError(f"members [{pos}, {p.first}) are missing")
        pieces.append((p, slice(pos - p.first, min(p.stop, n_members) - p.first)))
        pos = min(p.stop, n_members)
    if pos < n_members:
        raise ValueError(f"members [{pos}, {n_members}) are missing")

    def take(arr: np.ndarray, axis: int, sl: slice) -> np.ndarray:
        idx = [slice(None)] * arr.ndim
        idx[axis] = sl
        return arr[tuple(idx)]

    mask = np.concatenate([p.mask[sl] for p, sl in pieces], axis=0)
    records = {}
    for name, reduce in reductions.items():
        ax = member_axis(reduce)
        records[name] = np.concatenate([take(p.records[name], ax, sl) for p, sl in pieces],
                                       axis=ax)
    params = None
    if all(p.params is not None for p, _ in pieces):
        import torch

        params = {k: torch.cat([p.params[k][sl] for p, sl in pieces])  # type: ignore[index]
                  for k in pieces[0][0].params}  # type: ignore[union-attr]
    first = pieces[0][0]
    return Merged(mask, records, first.record_epochs, first.record_updates, params,
                  [(p.first, p.stop) for p, _ in pieces])
