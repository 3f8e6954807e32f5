"""Scale-out: train an ensemble in blocks of members, in-process or on a Dask cluster.

The default everywhere is in-process; Dask is optional (``pip install "imod[distributed]"``)
and imported only when the ``"dask"`` backend is used. See ``docs/distributed.md``.

* :func:`train_blocks` / :class:`EnsembleJob` -- K members cut into blocks, one task per
  block, results saved to a :class:`BlockStore` as they finish; resume and extend.
* :func:`run_tasks`, :func:`open_client` -- the generic task runner (also used by
  ``imod bench --scheduler``, whose cells live in :mod:`imod.bench.dask_cells`).
"""

from .backend import BACKENDS, open_client, run_tasks
from .jobs import BlockRunResult, EnsembleJob, train_block, train_blocks
from .store import BlockData, BlockStore, config_hash, missing_ranges

__all__ = [
    "BACKENDS",
    "BlockData",
    "BlockRunResult",
    "BlockStore",
    "EnsembleJob",
    "config_hash",
    "missing_ranges",
    "open_client",
    "run_tasks",
    "train_block",
    "train_blocks",
]
