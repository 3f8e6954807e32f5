"""What the accuracy studies share: the development datasets, their fixed folds, paths.

Scripts in this folder import it as ``from _common import ...`` (Python puts a script's own
folder first on ``sys.path``).

The 48 development sets are the 30 ADBench ``Classical`` sets and the 18 image/text
embedding sets (``CV_by_ResNet18``, ``NLP_by_BERT``) under the data folder (``--data-dir`` or
``IMOD_ADBENCH_DIR``). Issue 23 adds 120 synthetic tasks, the four anomaly types of
``synthetic_anomalies.py`` from each Classical set's inliers; each sits in its source set's
fold and has its type as its kind. ``folds.json``
next to this file partitions them into 5 folds once and for all (issue 16): a default is
chosen on 4 folds and judged on the fifth. It was written by :func:`make_folds` with seed
16 before any choice was made with it, and is never regenerated: `load_folds` reads the
file, it does not recompute it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from synthetic_anomalies import TYPES, task_name

HERE = Path(__file__).resolve().parent
FOLDS_FILE = HERE / "folds.json"
EMBEDDING_FOLDERS = ("CV_by_ResNet18", "NLP_by_BERT")
KINDS = ("classical", "embedding", *TYPES)


def data_dir_from(data_dir: Path | None = None) -> Path:
    """The ADBench folder: ``data_dir`` if given, else ``IMOD_ADBENCH_DIR``."""
    if data_dir is None:
        env = os.environ.get("IMOD_ADBENCH_DIR")
        if not env:
            raise SystemExit("no ADBench folder: pass --data-dir or set IMOD_ADBENCH_DIR")
        data_dir = Path(env)
    return Path(data_dir).expanduser()

def _adbench_number(stem: str) -> tuple[int, str]:
    return int(stem.split("_", 1)[0]), stem


def development_sets(data_dir: Path | None = None) -> dict[str, list[str]]:
    """``{"classical": [...], "embedding": [...]}``: stems of the development sets.

    Classical stems are sorted by ADBench number, embedding sets as ``folder/stem``.
    """
    data_dir = data_dir_from(data_dir)
    classical = sorted((p.stem for p in (data_dir / "Classical").glob("*.npz")),
                       key=_adbench_number)
    embedding = sorted(f"{folder}/{p.stem}" for folder in EMBEDDING_FOLDERS
                       for p in (data_dir / folder).glob("*.npz"))
    return {"classical": classical, "embedding": embedding}


def make_folds(data_dir: Path | None = None, n_folds: int = 5,
               seed: int = 16) -> list[dict[str, list[str]]]:
    """A seeded shuffle of each kind dealt round-robin into ``n_folds`` folds.

    Every fold gets 6 Classical sets and 3 or 4 embedding sets. Used once to write
    ``folds.json``; the studies read that file (`load_folds`).
    """
    rng = np.random.default_rng(seed)
    folds: list[dict[str, list[str]]] = [{"classical": [], "embedding": []}
                                         for _ in range(n_folds)]
    offset = 0
    for kind, names in development_sets(data_dir).items():
        order = [names[i] for i in rng.permutation(len(names))]
        for i, name in enumerate(order):
            folds[(offset + i) % n_folds][kind].append(name)
        offset += len(names)
    for fold in folds:
        for kind in fold:
            fold[kind].sort(key=lambda s: _adbench_number(s) if kind == "classical" else (0, s))
    return folds


def load_folds() -> list[dict[str, list[str]]]:
    """The fixed partition of the 48 development sets (``folds.json``)."""
    return json.loads(FOLDS_FILE.read_text())["folds"]


def fold_of() -> dict[str, int]:
    """Bench name (file stem) -> fold number (0-4); a synthetic task is in its source's fold."""
    real = {name.split("/")[-1]: k for k, fold in enumerate(load_folds())
            for names in fold.values() for name in names}
    return {**real, **{task_name(s, t): real[s] for s in bench_names("classical")
                       for t in TYPES}}


def kind_of() -> dict[str, str]:
    """Bench name -> ``"classical"``, ``"embedding"`` or a synthetic type (``KINDS``)."""
    real = {name.split("/")[-1]: kind for fold in load_folds()
            for kind, names in fold.items() for name in names}
    return {**real, **{task_name(s, t): t for s in bench_names("classical") for t in TYPES}}


def bench_names(kind: str | None = None) -> list[str]:
    """The names ``imod bench --datasets`` takes (file stems) of the real sets, all or one
    kind; a synthetic type gives its 30 task names."""
    if kind in TYPES:
        return [task_name(s, kind) for s in bench_names("classical")]
    return [name.split("/")[-1] for fold in load_folds() for k, names in fold.items()
            if kind in (None, k) for name in names]


def classical_halves(data_dir: Path | None = None) -> dict[str, list[str]]:
    """The earlier studies' split: Classical sorted by ADBench number, alternately into
    A (selection) and B (confirmation); E = the embedding sets."""
    sets = development_sets(data_dir)
    return {"A": sets["classical"][0::2], "B": sets["classical"][1::2], "E": sets["embedding"]}


def dataset_path(data_dir: Path, name: str) -> Path:
    """``Classical/<name>.npz``, or ``<folder>/<stem>.npz`` for embedding sets."""
    return data_dir / (f"{name}.npz" if "/" in name else f"Classical/{name}.npz")


if __name__ == "__main__":  # written once (issue 16); never rerun to change the folds
    if FOLDS_FILE.exists():
        raise SystemExit(f"{FOLDS_FILE} exists: the folds are fixed, not regenerated")
    FOLDS_FILE.write_text(json.dumps(
        {"about": "Fixed 5-fold partition of the 48 development sets (issue 16): "
                  "benchmarks/studies/_common.py make_folds(seed=16). Never changed.",
         "folds": make_folds()}, indent=1) + "\n")
