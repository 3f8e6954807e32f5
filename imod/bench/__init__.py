"""ADBench benchmark layer: datasets, download, protocol, runner, summary and plots.

Typical use is the command line (``imod bench``, ``imod list``); the same pieces are usable
from Python::

    from imod.bench import ProtocolConfig, resolve_datasets, run_benchmark, summarize
    refs, missing = resolve_datasets(["mini"])
    results = run_benchmark(refs, ["IForest", "ECOD"], seeds=[1, 2, 3], out_dir="out")
    print(summarize(results))
"""

from imod.bench.datasets import Dataset, DatasetRef, load_npz, resolve_datasets, resolve_name
from imod.bench.download import download
from imod.bench.protocol import ProtocolConfig, evaluate, prepare_split
from imod.bench.runner import read_results, run_benchmark
from imod.bench.summary import summarize, write_summary

__all__ = [
    "Dataset",
    "DatasetRef",
    "ProtocolConfig",
    "download",
    "evaluate",
    "load_npz",
    "prepare_split",
    "read_results",
    "resolve_datasets",
    "resolve_name",
    "run_benchmark",
    "summarize",
    "write_summary",
]
