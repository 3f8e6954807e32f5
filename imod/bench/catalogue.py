"""ADBench names, suites, the upstream catalogue with checksums, and local discovery.

A dataset is identified by its ADBench folder and file stem, e.g. ``Classical/6_cardio``.
Users name it as they know it: ``6_cardio``, ``cardio`` or ``CARDIO`` (matching ignores case
and the numeric prefix), but never ``Cardiotocography``, which is ``7_Cardiotocography``.

Local files are searched, in this order of precedence, in

1. a data folder (``data_dir`` argument, else the ``IMOD_ADBENCH_DIR`` environment variable),
   both at its top level and in its subfolders ``Classical``, ``CV_by_ResNet18``,
   ``CV_by_ViT``, ``NLP_by_BERT`` and ``NLP_by_RoBERTa``;
2. the download cache (``imod._runtime.cache_dir("adbench")``: ``$IMOD_CACHE_DIR/adbench``,
   default ``~/.cache/imod/adbench``), laid out like upstream (``<cache>/<folder>/<file>``);
3. the tiny datasets bundled in ``imod/data/`` (the ``mini`` suite), so the default
   benchmark runs offline.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imod._runtime import cache_dir as cache_root

__all__ = [
    "ADBENCH_FOLDERS",
    "BUNDLED_DIR",
    "SUITES",
    "DatasetNameError",
    "DatasetRef",
    "catalogue",
    "default_data_dir",
    "discover_local",
    "manifest",
    "resolve_name",
    "resolve_datasets",
    "sort_key",
]

#: Upstream folders, in the order a plain name prefers them (ResNet-18 / BERT embeddings are
#: the ADBench defaults; the ViT / RoBERTa variants share their file names).
ADBENCH_FOLDERS: tuple[str, ...] = (
    "Classical",
    "CV_by_ResNet18",
    "NLP_by_BERT",
    "CV_by_ViT",
    "NLP_by_RoBERTa",
)
#: Folder of the package data (bundled datasets, manifest, catalogue).
BUNDLED_DIR: Path = Path(__file__).resolve().parent.parent / "data"
#: Named suites and the upstream folder each one covers (``mini`` = bundled files).
SUITES: dict[str, tuple[str, ...]] = {
    "mini": (),
    "classical": ("Classical",),
    "cv": ("CV_by_ResNet18",),
    "nlp": ("NLP_by_BERT",),
    "all": ("Classical", "CV_by_ResNet18", "NLP_by_BERT"),
}
_PREFIX = re.compile(r"^\d+_")
# Embedding variants not in the catalogue -> (their folder, the folder with the same names).
_MIRRORS = {"cv_by_vit": ("CV_by_ViT", "CV_by_ResNet18"),
            "nlp_by_roberta": ("NLP_by_RoBERTa", "NLP_by_BERT")}


@dataclass(frozen=True)
class DatasetRef:
    """Where a dataset lives: its upstream folder, file stem, and local path if any.

    Parameters
    ----------
    folder : str
        ADBench folder (``Classical``, ``CV_by_ResNet18``, ...) or ``custom`` for a file in a
        data folder that is not in the upstream catalogue.
    stem : str
        File name without ``.npz`` (``6_cardio``).
    path : Path or None
        Local file, or None when the dataset is only known upstream.
    source : str
        ``data-dir``, ``cache``, ``bundled`` or ``upstream``.
    sha256 : str or None
        Official checksum when the manifest knows it.

    Examples
    --------
    >>> ref = DatasetRef("Classical", "6_cardio")
    >>> ref.relpath, ref.name, ref.key
    ('Classical/6_cardio.npz', '6_cardio', 'cardio')
    >>> DatasetRef("CV_by_ViT", "MVTec-AD_bottle").name  # qualified: the stem is not unique
    'CV_by_ViT/MVTec-AD_bottle'
    """

    folder: str
    stem: str
    path: Path | None = None
    source: str = "upstream"
    sha256: str | None = field(default=None, compare=False)

    @property
    def relpath(self) -> str:
        """Upstream relative path ``folder/file.npz``."""
        return f"{self.folder}/{self.stem}.npz"

    @property
    def name(self) -> str:
        """Name used in result tables: the stem, qualified by folder for the ViT/RoBERTa
        variants (whose stems collide with the ResNet-18/BERT ones)."""
        if self.folder in ("CV_by_ViT", "NLP_by_RoBERTa"):
            return f"{self.folder}/{self.stem}"
        return self.stem

    @property
    def key(self) -> str:
        """Case-folded stem without the numeric prefix: what users usually type."""
        return _PREFIX.sub("", self.stem).casefold()


# --------------------------------------------------------------------------- catalogue


def _read_table(path: Path) -> dict[str, str | None]:
    """Read ``relpath  sha`` / ``sha  relpath`` lines (``#`` comments; ``-`` = unknown)."""
    table: dict[str, str | None] = {}
    if not path.is_file():
        return table
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        a, b = line.split()[:2]
        rel, sha = (b, a) if re.fullmatch(r"[0-9a-f]{64}", a) else (a, b)
        table[rel.removeprefix("./")] = None if sha == "-" else sha.lower()
    return table


def manifest() -> dict[str, str]:
    """Official SHA-256 per upstream relative path (``imod/data/adbench_sha256.txt``)."""
    return dict(_manifest())


@functools.lru_cache(maxsize=1)
def _manifest() -> tuple[tuple[str, str], ...]:
    table = _read_table(BUNDLED_DIR / "adbench_sha256.txt")
    return tuple((k, v) for k, v in table.items() if v)


@functools.lru_cache(maxsize=1)
def _catalogue() -> tuple[DatasetRef, ...]:
    sums = manifest()
    refs = []
    for rel, sha in _read_table(BUNDLED_DIR / "adbench_catalogue.txt").items():
        folder, file = rel.split("/", 1)
        refs.append(DatasetRef(folder, file.removesuffix(".npz"), sha256=sha or sums.get(rel)))
    return tuple(refs)


def catalogue() -> list[DatasetRef]:
    """Upstream datasets (``imod/data/adbench_catalogue.txt``), hash attached when known.

    Examples
    --------
    >>> refs = catalogue()
    >>> cardio = [r for r in refs if r.relpath == "Classical/6_cardio.npz"]
    >>> len(cardio), cardio[0].path, len(cardio[0].sha256)  # upstream only: no local path
    (1, None, 64)
    """
    return list(_catalogue())


def default_data_dir() -> Path | None:
    """``IMOD_ADBENCH_DIR`` if set."""
    env = os.environ.get("IMOD_ADBENCH_DIR")
    return Path(env).expanduser() if env else None


# --------------------------------------------------------------------------- discovery


def _upstream_folder_of(stem: str) -> str:
    """Guess the folder of a loose file from the catalogue (else ``custom``)."""
    for ref in catalogue():
        if ref.stem == stem:
            return ref.folder
    return "custom"


def discover_local(
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    include_bundled: bool = True,
) -> list[DatasetRef]:
    """List local ``.npz`` files, one entry per (folder, stem), highest precedence first.

    Parameters
    ----------
    data_dir : path-like, optional
        Data folder; defaults to ``IMOD_ADBENCH_DIR`` when set.
    cache_dir : path-like, optional
        Download cache; defaults to `default_cache_dir`.
    include_bundled : bool
        Whether to include the datasets shipped in ``imod/data``.

    Returns
    -------
    list of DatasetRef

    Examples
    --------
    A file in the data folder wins over the bundled copy of the same dataset:

    >>> import shutil, tempfile
    >>> data_dir, cache_dir = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = shutil.copy(BUNDLED_DIR / "45_wine.npz", data_dir)
    >>> refs = discover_local(data_dir, cache_dir)
    >>> [(r.folder, r.source) for r in refs if r.stem == "45_wine"]
    [('Classical', 'data-dir')]
    >>> {r.source for r in refs if r.stem != "45_wine"}
    {'bundled'}
    """
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else cache_root("adbench")
    sums = manifest()
    found: dict[tuple[str, str], DatasetRef] = {}

    def add(folder: str, path: Path, source: str) -> None:
        key = (folder, path.stem)
        if key not in found:  # first source wins: data dir > cache > bundled
            rel = f"{folder}/{path.name}"
            found[key] = DatasetRef(folder, path.stem, path, source, sums.get(rel))

    if data_dir is not None and data_dir.is_dir():
        for folder in ADBENCH_FOLDERS:
            for p in sorted((data_dir / folder).glob("*.npz")):
                add(folder, p, "data-dir")
        for p in sorted(data_dir.glob("*.npz")):
            add(_upstream_folder_of(p.stem), p, "data-dir")
    if cache_dir.is_dir():
        for folder in ADBENCH_FOLDERS:
            for p in sorted((cache_dir / folder).glob("*.npz")):
                add(folder, p, "cache")
    if include_bundled:
        for p in sorted(BUNDLED_DIR.glob("*.npz")):
            add("Classical", p, "bundled")
    return list(found.values())


def bundled_names() -> list[str]:
    """Stems of the bundled datasets (the ``mini`` suite), in catalogue order."""
    return _sort_refs([DatasetRef("Classical", p.stem) for p in BUNDLED_DIR.glob("*.npz")])


def sort_key(ref: DatasetRef) -> tuple[int, int, str]:
    folder_rank = ADBENCH_FOLDERS.index(ref.folder) if ref.folder in ADBENCH_FOLDERS else 99
    m = re.match(r"^(\d+)_", ref.stem)
    return folder_rank, int(m.group(1)) if m else 10**6, ref.stem.casefold()


def _sort_refs(refs: Iterable[DatasetRef]) -> list[str]:
    return [r.stem for r in sorted(refs, key=sort_key)]


# --------------------------------------------------------------------------- names


class DatasetNameError(ValueError):
    """Unknown or ambiguous dataset name (message lists close matches and choices)."""


def _candidates(local: Sequence[DatasetRef]) -> list[DatasetRef]:
    """Local refs first (they carry paths), then catalogue entries not present locally."""
    seen = {(r.folder, r.stem) for r in local}
    return list(local) + [r for r in catalogue() if (r.folder, r.stem) not in seen]


def resolve_name(name: str, local: Sequence[DatasetRef]) -> DatasetRef:
    """Resolve a user-given dataset name to one dataset.

    Accepts ``folder/stem`` (``CV_by_ViT/MVTec-AD_bottle``), an exact stem (``6_cardio``), or,
    ignoring case, the stem or the stem without its numeric prefix (``cardio``). When a name
    exists in several folders the ResNet-18/BERT one wins over the ViT/RoBERTa variant.

    Parameters
    ----------
    name : str
        What the user typed (a trailing ``.npz``, and the ``*``/``?`` marks ``imod list``
        prints after names, are ignored).
    local : sequence of DatasetRef
        Local files (see `discover_local`); upstream-only names resolve to a ref without path.

    Returns
    -------
    DatasetRef

    Raises
    ------
    DatasetNameError
        Unknown or ambiguous name; the message lists close matches and the valid names.

    Examples
    --------
    >>> ref = resolve_name("CARDIO", [])  # no local files: resolved from the catalogue
    >>> ref.folder, ref.stem, ref.path
    ('Classical', '6_cardio', None)
    >>> resolve_name("Cardiotocography", []).stem  # a different dataset
    '7_Cardiotocography'
    >>> import tempfile
    >>> empty = tempfile.mkdtemp()
    >>> resolve_name("wine", discover_local(empty, empty)).source  # the bundled file
    'bundled'
    >>> resolve_name("cardoi", [])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    imod.bench.catalogue.DatasetNameError: unknown dataset 'cardoi'. Did you mean: 6_cardio, ...
    """
    cands = _candidates(local)
    # `imod list` marks names with * (local) and ? (no known SHA-256): pasted back, they work
    query = name.strip().rstrip("*?").removesuffix(".npz")
    if "/" in query:
        folder, stem = query.split("/", 1)
        hits = [r for r in cands if r.folder.casefold() == folder.casefold()]
        hits = [r for r in hits if stem.casefold() in (r.stem.casefold(), r.key)]
        mirror = _MIRRORS.get(folder.casefold())
        if not hits and mirror:
            # The ViT / RoBERTa folders hold the same file names as ResNet-18 / BERT.
            twins = [r for r in cands if r.folder == mirror[1]
                     and stem.casefold() in (r.stem.casefold(), r.key)]
            hits = [DatasetRef(mirror[0], r.stem) for r in twins]
    else:
        hits = [r for r in cands if r.stem == query]
        if not hits:
            hits = [r for r in cands if r.stem.casefold() == query.casefold()]
        if not hits:
            hits = [r for r in cands if r.key == query.casefold()]
    # Same stem in several folders (ResNet18 vs ViT): keep the preferred folder.
    by_stem: dict[str, DatasetRef] = {}
    for r in sorted(hits, key=sort_key):
        by_stem.setdefault(r.stem, r)
    hits = list(by_stem.values())
    if len(hits) == 1:
        return hits[0]
    all_names = _sort_refs({DatasetRef(r.folder, r.stem) for r in cands})
    if len(hits) > 1:
        raise DatasetNameError(
            f"dataset name {name!r} is ambiguous: {', '.join(r.stem for r in hits)}; "
            "give the full name"
        )
    pool = {n: n for n in all_names}
    pool.update({_PREFIX.sub("", n).casefold(): n for n in all_names})
    close = difflib.get_close_matches(query.casefold(), list(pool), n=5, cutoff=0.6)
    close_names = list(dict.fromkeys(pool[c] for c in close))
    hint = f" Did you mean: {', '.join(close_names)}?" if close_names else ""
    raise DatasetNameError(
        f"unknown dataset {name!r}.{hint} Suites: {', '.join(SUITES)}. "
        f"Valid names: {', '.join(all_names)}"
    )


def resolve_datasets(
    names: Sequence[str],
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[DatasetRef], list[DatasetRef]]:
    """Expand suites and names into dataset refs.

    Parameters
    ----------
    names : sequence of str
        Suite names (``mini``, ``classical``, ``cv``, ``nlp``, ``all``) and/or dataset names.
    data_dir, cache_dir : path-like, optional
        See `discover_local`.

    Returns
    -------
    available : list of DatasetRef
        Datasets with a local file, in order, without duplicates.
    missing : list of DatasetRef
        Datasets of a suite (or named explicitly) known upstream but absent locally; the caller
        decides whether to download them (see `imod.bench.download`).

    Raises
    ------
    DatasetNameError
        For unknown or ambiguous names.

    Examples
    --------
    >>> import tempfile
    >>> empty = tempfile.mkdtemp()  # no data folder, empty cache: bundled files only
    >>> available, missing = resolve_datasets(["wine", "Cardiotocography"], empty, empty)
    >>> [(r.stem, r.source) for r in available], [r.stem for r in missing]
    ([('45_wine', 'bundled')], ['7_Cardiotocography'])
    >>> available, missing = resolve_datasets(["mini"], empty, empty)
    >>> [r.stem for r in available][:3], missing
    (['4_breastw', '6_cardio', '15_Hepatitis'], [])
    """
    local = discover_local(data_dir, cache_dir)
    by_key = {(r.folder, r.stem): r for r in local}
    chosen: list[DatasetRef] = []
    for name in names:
        suite = name.casefold()
        if suite == "mini":
            chosen += [by_key.get(("Classical", s), DatasetRef("Classical", s)) for s in
                       bundled_names()]
        elif suite in SUITES:
            folders = SUITES[suite]
            refs = [r for r in _candidates(local) if r.folder in folders]
            chosen += sorted(refs, key=sort_key)
        else:
            chosen.append(resolve_name(name, local))
    out: dict[tuple[str, str], DatasetRef] = {}
    for r in chosen:
        out.setdefault((r.folder, r.stem), r)
    available = [r for r in out.values() if r.path is not None]
    missing = [r for r in out.values() if r.path is None]
    return available, missing
