"""ADBench benchmark layer: datasets, download, protocol, cells, runner, summary and plots.

Typical use is the command line (``imod bench``, ``imod list``; see :mod:`imod.bench.cli`);
the same pieces are usable from Python::

    from imod.bench import ProtocolConfig, resolve_datasets, run_benchmark, summarize
    refs, missing = resolve_datasets(["mini"])
    results = run_benchmark(refs, ["IForest", "ECOD"], seeds=[1, 2, 3], out_dir="out")
    print(summarize(results))

The names below are imported on first use, so the command line starts fast. The bench
builds ``IMDetector`` through an import string (:mod:`imod.bench.detectors`): it depends
on :mod:`imod.detector`, and runs cells on Dask through :mod:`imod.distributed.backend`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Dataset": "imod._dataset",
    "DatasetRef": "imod.bench.catalogue",
    "load_npz": "imod.bench.datasets",
    "resolve_datasets": "imod.bench.catalogue",
    "resolve_name": "imod.bench.catalogue",
    "download": "imod.bench.download",
    "ProtocolConfig": "imod.bench.protocol",
    "evaluate": "imod.bench.protocol",
    "prepare_split": "imod.bench.protocol",
    "run_cell": "imod.bench.cells",
    "read_results": "imod.bench.runner",
    "run_benchmark": "imod.bench.runner",
    "summarize": "imod.bench.summary",
    "write_summary": "imod.bench.summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imod.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
