"""Run (dataset x detector x seed) cells, appending one CSV row per finished cell.

``<out>/results.csv`` gets a row when each cell finishes, written with one ``write`` call
on a file opened for appending, so an interrupted run loses at most the cell in progress and
the file is never rewritten. A row cut by a kill is skipped on reading and never swallows
the row after it. ``<out>/run.json`` (written atomically) records the protocol, the
selection, the dataset checksums and the versions of imod and its libraries.

While a run works in ``<out>`` it holds a lock on the folder (:func:`imod._runtime.folder_lock`);
a second run on the same folder is refused at once with :class:`FolderInUseError`
naming it. Re-running with the same ``out`` skips cells that already have an ``ok`` row
(error rows are retried; the latest row of a cell wins). A different protocol, a dataset
whose file changed, or other versions of imod or its libraries are refused with
:class:`ConfigMismatchError` unless ``overwrite=True`` (``--overwrite``), which starts the
results afresh. The dataset, detector and seed selection may change between runs: cells
are keyed by (dataset, detector, seed), so a run can be extended with more detectors or
seeds.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from imod._runtime import (
    ConfigMismatchError,
    atomic_write,
    folder_lock,
    output_folder,
)
from imod.bench.catalogue import DatasetRef
from imod.bench.cells import RESULT_COLUMNS, run_cell
from imod.bench.download import sha256_file
from imod.bench.protocol import ProtocolConfig

__all__ = ["RESULT_COLUMNS", "read_results", "run_benchmark"]

_FORMAT_VERSION = 1
_INT_COLUMNS = ("seed", "n_train", "n_test", "n_features")
_FLOAT_COLUMNS = ("auroc", "aupr", "fit_seconds", "score_seconds", "seconds")


def _parse_row(line: str) -> dict[str, str] | None:
    """One physical line -> a row, or None when it is not a whole row (e.g. cut by a kill)."""
    try:
        rec = next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return None
    if len(rec) != len(RESULT_COLUMNS):
        return None
    row = dict(zip(RESULT_COLUMNS, rec, strict=True))
    if row["status"] not in ("ok", "error"):
        return None
    try:
        int(row["seed"])
        _dt.datetime.fromisoformat(row["finished_at"])  # the last field: whole if this parses
    except ValueError:
        return None
    return row


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``results.csv``, skipping lines that are not whole rows (e.g. one cut by a kill).

    Every physical line is read on its own, so a damaged line never swallows the next.

    Returns
    -------
    DataFrame
        Columns `RESULT_COLUMNS`; empty if the file is missing.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "results.csv"
    >>> read_results(path).empty, list(read_results(path).columns) == RESULT_COLUMNS
    (True, True)
    >>> row = "45_wine,PCA,1,inductive,700,300,13,0.8,0.4,0.01,0.001,0.02,ok,,2025-01-01T00:00:00"
    >>> lines = [",".join(RESULT_COLUMNS), row[:20], row.replace(",1,", ",2,", 1)]
    >>> _ = path.write_text("\\n".join(lines) + "\\n")
    >>> df = read_results(path)  # the cut line is skipped, the row after it is kept
    >>> len(df), df.loc[0, "detector"], float(df.loc[0, "auroc"]), int(df.loc[0, "seed"])
    (1, 'PCA', 0.8, 2)
    """
    path = Path(path)
    rows: list[dict[str, str]] = []
    if path.is_file():
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if lines and lines[0].split(",") == RESULT_COLUMNS:
            rows = [r for r in map(_parse_row, lines[1:]) if r is not None]
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for col in _INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in _FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["error"] = df["error"].fillna("")
    return df


def _versions() -> dict[str, str]:
    """Versions of imod and the libraries whose numbers end up in the results."""
    from imod._version import __version__, code_digest

    # the code digest tells apart code states that share a version number
    out = {"imod": __version__, "imod_code": code_digest(),
           "python": platform.python_version()}
    for mod in ("numpy", "scipy", "sklearn", "pandas", "pyod", "torch"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        out[mod] = str(getattr(m, "__version__", "?"))
    return out


def _detector_params(detectors: Sequence[str], n_jobs: int | None) -> dict[str, Any]:
    """Each detector's constructor parameters as a cell builds it (``random_state``,
    ``n_jobs`` and ``verbose`` apart), its class's fixed choices (``_fixed``, as a study
    variant of IMDetector sets them) and the SHA-256 of the file defining its class (an
    import-path detector's code is not imod's): a change of any shows here on resume."""
    import hashlib
    import inspect

    from imod.bench.detectors import make_detector

    out: dict[str, Any] = {}
    for name in detectors:
        try:
            det = make_detector(name, seed=0, n_features=2, n_jobs=n_jobs)
            params = det.get_params(deep=False) if hasattr(det, "get_params") else vars(det)
        except Exception as exc:  # noqa: BLE001 - its cells record the error
            out[name] = {"error": type(exc).__name__}
            continue
        rec = {k: repr(v) for k, v in sorted(params.items())
               if k not in ("random_state", "n_jobs", "verbose") and not k.startswith("_")}
        if isinstance(getattr(det, "_fixed", None), dict):
            rec["fixed choices"] = repr(sorted(det._fixed.items()))
        try:
            source = Path(inspect.getsourcefile(type(det)) or "").read_bytes()
            rec["class file"] = hashlib.sha256(source).hexdigest()[:16]
        except (OSError, TypeError):
            pass  # a class without a source file (built-in): its library's version covers it
        out[name] = rec
    return out


def _check_run_json(run_json: Path, config: dict[str, Any]) -> None:
    """Refuse to mix results made under another protocol, other files or other versions."""
    folder = run_json.parent
    try:
        old = json.loads(run_json.read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ConfigMismatchError(folder, f"run.json is unreadable ({exc})") from exc
    problems = []
    if old.get("protocol") != config["protocol"]:
        problems.append(f"protocol {old.get('protocol')} != now {config['protocol']}")
    old_files = old.get("dataset_sha256", {})
    for name, sha in config["dataset_sha256"].items():
        if name in old_files and old_files[name] != sha:
            problems.append(f"dataset {name} file changed (sha256 {old_files[name][:12]}... -> "
                            f"{sha[:12]}...)")
    old_v, new_v = old.get("versions", {}), config["versions"]
    changed = [f"{k} {old_v.get(k, 'not recorded')} -> {new_v.get(k, 'absent')}"
               for k in sorted(set(old_v) | set(new_v)) if old_v.get(k) != new_v.get(k)]
    if changed:
        problems.append("versions changed since its results were made: " + ", ".join(changed))
    old_p = old.get("detector_params", {})
    for det, params in config["detector_params"].items():
        if det in old_p and old_p[det] != params:
            keys = sorted(k for k in set(old_p[det]) | set(params)
                          if old_p[det].get(k) != params.get(k))
            problems.append(f"{det}'s parameters changed ({', '.join(keys)})")
    if problems:
        raise ConfigMismatchError(folder, problems)


def _row_bytes(row: dict[str, Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_fmt(row[c]) for c in RESULT_COLUMNS])
    return buf.getvalue().encode("utf-8")


def _open_rows(path: Path) -> Any:
    """``results.csv`` opened for appending whole rows (header written if new).

    A last line cut by a kill gets its line end first, so the next row starts a line.
    """
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as fh:
            header = fh.readline().decode("utf-8", errors="replace").strip()
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
        if header.split(",") != RESULT_COLUMNS:
            raise ConfigMismatchError(path.parent, "results.csv does not start with the "
                                      "header imod writes (damaged or another program's file)")
        fh = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by the caller
        if last != b"\n":
            fh.write(b"\n")
        return fh
    fh = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by the caller
    fh.write((",".join(RESULT_COLUMNS) + "\n").encode())
    return fh


def run_benchmark(
    datasets: Sequence[DatasetRef],
    detectors: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | os.PathLike[str],
    protocol: ProtocolConfig | None = None,
    overwrite: bool = False,
    n_jobs: int | None = None,
    progress: bool = True,
    extra_config: dict[str, Any] | None = None,
    scheduler: Any = None,
) -> pd.DataFrame:
    """Run every (dataset, detector, seed) cell not yet finished in ``out_dir``.

    Parameters
    ----------
    datasets : sequence of DatasetRef
        Local datasets (``path`` set).
    detectors : sequence of str
        Canonical detector names or import paths.
    seeds : sequence of int
    out_dir : path-like
        Output folder (created).
    protocol : ProtocolConfig, optional
        Defaults to the official inductive ADBench protocol.
    overwrite : bool
        Discard existing results instead of resuming.
    n_jobs : int, optional
        Passed to detectors accepting ``n_jobs``.
    progress : bool
        Show a tqdm bar over cells.
    extra_config : dict, optional
        More entries for ``run.json`` (e.g. the reference detector).
    scheduler : distributed.Client or str, optional
        Run the cells as Dask tasks: a client, a scheduler address, or
        ``"local-cluster:N"`` (see :mod:`imod.bench.dask_cells`). Rows are still appended
        here as cells finish (in completion order), so resuming works the same. Default:
        the in-process loop.

    Returns
    -------
    DataFrame
        The results rows of the requested cells (latest row per cell).

    Raises
    ------
    ConfigMismatchError
        If ``out_dir`` holds results under another protocol, from other dataset files or
        other versions of imod or its libraries, and ``overwrite`` is False.
    FolderInUseError
        If another run holds ``out_dir``.
    ValueError
        If ``out_dir`` is a file or cannot be written.

    Examples
    --------
    Two bundled datasets, two fast detectors, one seed:

    >>> import tempfile
    >>> from imod.bench.catalogue import resolve_datasets
    >>> empty, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> refs, missing = resolve_datasets(["wine", "vertebral"], empty, empty)
    >>> res = run_benchmark(refs, ["PCA", "KNN"], seeds=[1], out_dir=out, progress=False)
    >>> print(res[["dataset", "detector", "seed", "n_train", "status"]].to_string(index=False))
    ... # doctest: +NORMALIZE_WHITESPACE
         dataset detector  seed  n_train status
         45_wine      PCA     1      700     ok
         45_wine      KNN     1      700     ok
    39_vertebral      PCA     1      700     ok
    39_vertebral      KNN     1      700     ok
    >>> sorted(p.name for p in Path(out).iterdir())  # the lock file stays, unlocked
    ['.imod.lock', 'results.csv', 'run.json']

    Running again resumes: finished cells are skipped, new ones (a seed here) are added.

    >>> res = run_benchmark(refs, ["PCA", "KNN"], seeds=[1, 2], out_dir=out, progress=False)
    >>> len(res), len(read_results(Path(out) / "results.csv"))
    (8, 8)
    """
    protocol = protocol or ProtocolConfig()
    missing = [d.name for d in datasets if d.path is None]
    if missing:
        raise FileNotFoundError(f"datasets without a local file: {', '.join(missing)}")
    out = output_folder(out_dir)
    with folder_lock(out):
        return _run_locked(datasets, detectors, seeds, out, protocol, overwrite, n_jobs,
                           progress, extra_config, scheduler)


def _run_locked(datasets: Sequence[DatasetRef], detectors: Sequence[str], seeds: Sequence[int],
                out: Path, protocol: ProtocolConfig, overwrite: bool, n_jobs: int | None,
                progress: bool, extra_config: dict[str, Any] | None,
                scheduler: Any) -> pd.DataFrame:
    results_csv, run_json = out / "results.csv", out / "run.json"
    config: dict[str, Any] = {
        "format_version": _FORMAT_VERSION,
        "protocol": protocol.to_dict(),
        "datasets": [d.name for d in datasets],
        "detectors": list(detectors),
        "seeds": [int(s) for s in seeds],
        "dataset_sha256": {d.name: sha256_file(d.path) for d in datasets if d.path},
        "dataset_files": {d.name: str(d.path) for d in datasets},
        "versions": _versions(),
        "detector_params": _detector_params(detectors, n_jobs),
        **(extra_config or {}),
    }
    if overwrite:
        results_csv.unlink(missing_ok=True)
    elif run_json.is_file():
        _check_run_json(run_json, config)
    elif results_csv.is_file():
        raise ConfigMismatchError(out, "results.csv exists without run.json")
    config["updated_at"] = _dt.datetime.now().isoformat(timespec="seconds")
    text = (json.dumps(config, indent=2) + "\n").encode()
    atomic_write(run_json, lambda fh: fh.write(text))

    previous = read_results(results_csv)
    done = previous[previous["status"] == "ok"]
    done_keys = {(r.dataset, r.detector, int(r.seed)) for r in done.itertuples()}
    wanted = {(d.name, det, int(s)) for d in datasets for det in detectors for s in seeds}
    todo = [(d, det, int(s)) for d in datasets for s in seeds for det in detectors
            if (d.name, det, int(s)) not in done_keys]
    bar = tqdm(total=len(todo), disable=not progress, unit="cell", dynamic_ncols=True,
               desc="imod bench")
    fh = _open_rows(results_csv)
    try:
        def write_row(row: dict[str, Any]) -> None:
            fh.write(_row_bytes(row))  # one write of a whole line: a kill keeps it or cuts it
            bar.update(1)

        if scheduler is not None:  # cells as Dask tasks; rows are written here as they end
            from imod.bench.dask_cells import run_cells

            run_cells(todo, protocol, scheduler, write_row, n_jobs=n_jobs)
        else:
            cache: dict[str, Any] = {}
            for ref, det, seed in todo:
                bar.set_postfix_str(f"{ref.name} | {det} | seed {seed}", refresh=True)
                write_row(run_cell(ref.path, ref.name, det, seed, protocol,  # type: ignore[arg-type]
                                   n_jobs=n_jobs, cache=cache))
    finally:
        fh.close()
        bar.close()

    final = read_results(results_csv)
    keys = list(zip(final["dataset"], final["detector"], final["seed"].astype(int), strict=True))
    mask = [k in wanted for k in keys]
    return final[mask].drop_duplicates(["dataset", "detector", "seed"], keep="last")


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"  # NaN -> empty cell
    if isinstance(value, str):
        return " ".join(value.split())  # one physical line per row
    return value
