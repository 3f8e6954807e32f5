"""Run independent tasks in-process or on a Dask cluster, handing results back as they finish.

Everything here imports :mod:`distributed` lazily, so ``imod`` works without Dask; only the
``"dask"`` backend needs ``pip install "imod[distributed]"``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["BACKENDS", "check_scheduler", "open_client", "run_tasks"]

BACKENDS = ("local", "dask")
_LOCAL_CLUSTER = re.compile(r"^local-cluster(?::(\d+))?$")
# A scheduler address: [protocol://]host:port (Dask's own form).
_ADDRESS = re.compile(r"^(?:[a-z]+://)?(?:\[[0-9a-fA-F:]+\]|[^\s:/\[\]]+):\d{1,5}$")


def check_scheduler(scheduler: str) -> None:
    """Refuse a scheduler string that names no cluster, before any work.

    Raises
    ------
    ValueError
        In words a command line can show after its flag.

    Examples
    --------
    >>> check_scheduler("local-cluster:2"), check_scheduler("tcp://10.0.0.5:8786")
    (None, None)
    >>> check_scheduler("bogus")
    Traceback (most recent call last):
    ...
    ValueError: 'bogus' is neither local-cluster:N nor a scheduler address such as tcp://10.0.0.5:8786
    """
    if scheduler == "local":
        return
    m = _LOCAL_CLUSTER.match(scheduler)
    if m:
        if m.group(1) is not None and int(m.group(1)) < 1:
            raise ValueError(f"{scheduler!r} asks for no worker; use local-cluster:N with N >= 1")
        return
    if not _ADDRESS.match(scheduler):
        raise ValueError(f"{scheduler!r} is neither local-cluster:N nor a scheduler address "
                         "such as tcp://10.0.0.5:8786")


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - exercised only without dask
        raise ImportError(
            "the 'dask' backend needs Dask's distributed scheduler: "
            'pip install "imod[distributed]" (or "dask[distributed]")'
        ) from exc
    return distributed


@contextlib.contextmanager
def open_client(scheduler: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler``, closed on exit if it was made here.

    Parameters
    ----------
    scheduler : distributed.Client, str, or None
        ``None`` or ``"local"`` yields ``None`` (run in-process). A ``Client`` is used as
        is and left open. ``"local-cluster:N"`` starts a
        ``LocalCluster(n_workers=N, threads_per_worker=1, processes=True)`` for the
        duration (``N`` defaults to the number of CPUs). Any other string is a scheduler
        address such as ``"tcp://10.0.0.5:8786"``.

    Examples
    --------
    >>> with open_client(None) as client:
    ...     client is None
    True
    """
    if scheduler is None or scheduler == "local":
        yield None
        return
    if not isinstance(scheduler, str):
        yield scheduler  # a Client (or anything with submit/cancel) owned by the caller
        return
    check_scheduler(scheduler)
    distributed = _require_distributed()
    m = _LOCAL_CLUSTER.match(scheduler)
    if m:
        n = int(m.group(1) or (os.cpu_count() or 1))
        if n < 1:
            raise ValueError(f"local-cluster needs at least one worker, got {scheduler!r}")
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    with distributed.Client(scheduler) as client:
        yield client


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, tuple[Any, ...]]],
    on_result: Callable[[Any, Any], None],
    *,
    client: Any = None,
    retries: int = 3,
    key_prefix: str = "imod-task",
) -> None:
    """Call ``fn(*args)`` for every ``(key, args)`` and ``on_result(key, value)`` as each ends.

    With ``client=None`` the tasks run one after the other in this process. With a Dask
    client they are submitted at once (``client.submit(..., retries=retries)``) and
    ``on_result`` runs in this process in completion order (``as_completed``). A task
    whose worker dies is rescheduled by the Dask scheduler (up to its
    ``distributed.scheduler.allowed-failures``); a task that raises is retried
    ``retries`` times. When ``on_result`` or a task finally raises, the remaining tasks
    are cancelled and the exception propagates; results already handed to ``on_result``
    are kept by the caller.

    Examples
    --------
    >>> out = {}
    >>> run_tasks(pow, [("a", (2, 3)), ("b", (3, 2))], out.__setitem__)
    >>> out
    {'a': 8, 'b': 9}
    """
    if client is None:
        for key, args in tasks:
            on_result(key, fn(*args))
        return
    distributed = _require_distributed()
    futures: dict[Any, Any] = {}
    try:
        for i, (key, args) in enumerate(tasks):
            fut = client.submit(fn, *args, retries=retries, pure=False,
                                key=f"{key_prefix}-{i}-{os.urandom(4).hex()}")
            futures[fut] = key
        for fut in distributed.as_completed(list(futures)):
            value = fut.result()
            on_result(futures[fut], value)
            fut.release()
    except BaseException:
        client.cancel(list(futures))
        raise
