"""Run (dataset x detector x seed) cells, appending one CSV row per finished cell.

``<out>/results.csv`` gets a row (flushed at once) when each cell finishes, so an interrupted
run loses at most the cell in progress. ``<out>/run.json`` records the protocol, the
selection and the dataset checksums. Re-running with the same ``out`` skips cells that already
have an ``ok`` row (error rows are retried); a different protocol, or a dataset whose file
changed, is refused unless ``overwrite=True``, which starts the results afresh. The dataset,
detector and seed selection may change between runs: cells are keyed by
(dataset, detector, seed), so a run can be extended with more detectors or seeds.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from imod.bench.datasets import Dataset, DatasetRef, load_npz
from imod.bench.download import sha256_file
from imod.bench.protocol import CellResult, ProtocolConfig, Split, evaluate, prepare_split

__all__ = ["RESULT_COLUMNS", "ConfigMismatchError", "read_results", "run_benchmark"]

RESULT_COLUMNS = [
    "dataset",
    "detector",
    "seed",
    "mode",
    "n_train",
    "n_test",
    "n_features",
    "auroc",
    "aupr",
    "fit_seconds",
    "score_seconds",
    "seconds",
    "status",
    "error",
    "finished_at",
]
_FORMAT_VERSION = 1


class ConfigMismatchError(RuntimeError):
    """The output folder holds results made under another protocol or other data.

    Examples
    --------
    >>> import tempfile
    >>> from imod.bench.datasets import resolve_datasets
    >>> empty, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> refs, _ = resolve_datasets(["wine"], empty, empty)
    >>> _ = run_benchmark(refs, ["PCA"], seeds=[1], out_dir=out, progress=False)
    >>> run_benchmark(refs, ["PCA"], seeds=[1], out_dir=out, progress=False,
    ...               protocol=ProtocolConfig(mode="transductive"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    imod.bench.runner.ConfigMismatchError: ... holds results from a different configuration: ...
    """


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``results.csv``, skipping malformed lines (e.g. a row cut by a kill).

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
    >>> lines = [",".join(RESULT_COLUMNS), row, row[:20]]
    >>> _ = path.write_text("\\n".join(lines) + "\\n")
    >>> df = read_results(path)  # the last line was cut (a killed run): skipped
    >>> len(df), df.loc[0, "detector"], float(df.loc[0, "auroc"]), int(df.loc[0, "seed"])
    (1, 'PCA', 0.8, 1)
    """
    path = Path(path)
    rows: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header == RESULT_COLUMNS:
                for rec in reader:
                    if len(rec) == len(RESULT_COLUMNS) and rec[-1]:
                        rows.append(dict(zip(RESULT_COLUMNS, rec, strict=True)))
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for col in ("seed", "n_train", "n_test", "n_features"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in ("auroc", "aupr", "fit_seconds", "score_seconds", "seconds"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["error"] = df["error"].fillna("")
    return df


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("numpy", "scipy", "sklearn", "pandas", "pyod", "torch"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        out[mod] = str(getattr(m, "__version__", "?"))
    return out


def _check_run_json(run_json: Path, config: dict[str, Any]) -> None:
    """Refuse to mix results made under another protocol or from other dataset files."""
    try:
        old = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigMismatchError(
            f"{run_json} is unreadable ({exc}); use --overwrite to start afresh"
        ) from exc
    problems = []
    if old.get("protocol") != config["protocol"]:
        problems.append(f"protocol {old.get('protocol')} != now {config['protocol']}")
    old_files = old.get("dataset_sha256", {})
    for name, sha in config["dataset_sha256"].items():
        if name in old_files and old_files[name] != sha:
            problems.append(f"dataset {name} file changed (sha256 {old_files[name][:12]}... -> "
                            f"{sha[:12]}...)")
    if problems:
        raise ConfigMismatchError(
            f"{run_json.parent} holds results from a different configuration: "
            + "; ".join(problems)
            + ". Use another --out, or --overwrite (alias --force) to discard them."
        )


def _rewrite_clean(path: Path, keep: pd.DataFrame) -> None:
    """Rewrite results.csv with only the rows kept (drops cut lines and retried errors)."""
    tmp = path.with_suffix(".csv.tmp")
    keep.to_csv(tmp, index=False, columns=RESULT_COLUMNS)
    os.replace(tmp, path)


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
        ``"local-cluster:N"`` (see :mod:`imod.distributed.bench`). Rows are still appended
        here as cells finish (in completion order), so resuming works the same. Default:
        the in-process loop.

    Returns
    -------
    DataFrame
        The results rows of the requested cells (latest row per cell).

    Raises
    ------
    ConfigMismatchError
        If ``out_dir`` holds results under another protocol and ``overwrite`` is False.

    Examples
    --------
    Two bundled datasets, two fast detectors, one seed:

    >>> import tempfile
    >>> from imod.bench.datasets import resolve_datasets
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
    >>> sorted(p.name for p in Path(out).iterdir())
    ['results.csv', 'run.json']

    Running again resumes: finished cells are skipped, new ones (a seed here) are added.

    >>> res = run_benchmark(refs, ["PCA", "KNN"], seeds=[1, 2], out_dir=out, progress=False)
    >>> len(res), len(read_results(Path(out) / "results.csv"))
    (8, 8)
    """
    protocol = protocol or ProtocolConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_csv, run_json = out / "results.csv", out / "run.json"
    missing = [d.name for d in datasets if d.path is None]
    if missing:
        raise FileNotFoundError(f"datasets without a local file: {', '.join(missing)}")
    config: dict[str, Any] = {
        "format_version": _FORMAT_VERSION,
        "protocol": protocol.to_dict(),
        "datasets": [d.name for d in datasets],
        "detectors": list(detectors),
        "seeds": [int(s) for s in seeds],
        "dataset_sha256": {d.name: sha256_file(d.path) for d in datasets if d.path},
        "dataset_files": {d.name: str(d.path) for d in datasets},
        **(extra_config or {}),
    }
    if overwrite:
        results_csv.unlink(missing_ok=True)
    elif run_json.is_file():
        _check_run_json(run_json, config)
    elif results_csv.is_file():
        raise ConfigMismatchError(
            f"{results_csv} exists without run.json; use --overwrite to discard it"
        )
    config["versions"] = _versions()
    config["updated_at"] = _dt.datetime.now().isoformat(timespec="seconds")
    run_json.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    previous = read_results(results_csv)
    done = previous[previous["status"] == "ok"]
    done_keys = {(r.dataset, r.detector, int(r.seed)) for r in done.itertuples()}
    # Keep ok rows (and error rows of cells outside this selection); retried errors are dropped.
    wanted = {(d.name, det, int(s)) for d in datasets for det in detectors for s in seeds}
    prev_keys = [(r.dataset, r.detector, int(r.seed)) for r in previous.itertuples()]
    keep_mask = [(st == "ok") or (k not in wanted) for st, k in
                 zip(previous["status"], prev_keys, strict=True)]
    if len(previous):
        _rewrite_clean(results_csv, previous[keep_mask])
    if not results_csv.is_file() or results_csv.stat().st_size == 0:
        with open(results_csv, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(RESULT_COLUMNS)

    todo = [(d, det, int(s)) for d in datasets for s in seeds for det in detectors
            if (d.name, det, int(s)) not in done_keys]
    bar = tqdm(total=len(todo), disable=not progress, unit="cell", dynamic_ncols=True,
               desc="imod bench")
    with open(results_csv, "a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if scheduler is not None:  # cells as Dask tasks; rows are written here as they end
            from imod.distributed.bench import run_cells

            def write_row(row: dict[str, Any]) -> None:
                writer.writerow([_fmt(row[c]) for c in RESULT_COLUMNS])
                fh.flush()
                bar.update(1)

            run_cells(todo, protocol, scheduler, write_row, n_jobs=n_jobs)
            todo = []
        current: tuple[str, int] | None = None
        split: Split | None = None
        prep_error = ""
        data: Dataset | None = None
        for ref, det, seed in todo:
            bar.set_postfix_str(f"{ref.name} | {det} | seed {seed}", refresh=True)
            if current != (ref.name, seed):
                current, split, prep_error = (ref.name, seed), None, ""
                try:
                    if data is None or data.name != ref.name:
                        data = None
                        data = load_npz(ref.path, name=ref.name)  # type: ignore[arg-type]
                    split = prepare_split(data.X, data.y, seed, protocol)
                except Exception as exc:  # noqa: BLE001 - a bad dataset fails its cells only
                    prep_error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            t0 = time.perf_counter()
            if split is None:
                n_feat = data.X.shape[1] if data is not None else 0
                res = CellResult(0, 0, n_feat, status="error", error=prep_error)
            else:
                with warnings.catch_warnings():
                    # Detectors' library warnings would drown the progress bar.
                    warnings.simplefilter("ignore")
                    res = evaluate(det, split, seed, n_jobs=n_jobs)
            row = {"dataset": ref.name, "detector": det, "seed": seed, "mode": protocol.mode,
                   **asdict(res), "seconds": time.perf_counter() - t0,
                   "finished_at": _dt.datetime.now().isoformat(timespec="seconds")}
            writer.writerow([_fmt(row[c]) for c in RESULT_COLUMNS])
            fh.flush()  # one durable row per cell: a killed run resumes from here
            bar.update(1)
    bar.close()

    final = read_results(results_csv)
    keys = list(zip(final["dataset"], final["detector"], final["seed"].astype(int), strict=True))
    mask = [k in wanted for k in keys]
    return final[mask].drop_duplicates(["dataset", "detector", "seed"], keep="last")


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"  # NaN -> empty cell
    return value
