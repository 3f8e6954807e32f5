"""Where and how a run executes: device, precision, memory budget, host copies, compilation.

Precision (``train_ensemble(..., precision=...)``)
--------------------------------------------------
``"fp32"`` (default)
    float32 parameters, gradients and optimizer state. On CUDA the matrix
    products run in TensorFloat-32 (tensor cores, 10-bit mantissa inputs,
    float32 accumulation): several times faster than float32 SIMT kernels, and
    for these small networks no measurable change in what they learn. On the
    CPU products are exact float32.
``"ieee"``
    The switch that turns TF32 off: float32 products on CUDA too.
``"tf32"``
    The same as ``"fp32"`` (kept as a name for the CUDA default).
``"bf16"``
    The forward pass (and so the backward products) under bfloat16 autocast;
    parameters, gradients and optimizer state stay float32 (master weights).

Recordings always run in exact float32, whatever the training precision.

The optimizer state is the optimizer's to choose: ``OptimizerSpec(state_precision="bf16")``
keeps Adam's moments in bfloat16 in any of these modes (with ``"bf16"``, the
low-memory path: bfloat16 products, float32 master weights, bfloat16 moments).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch

from .._runtime import resolve_device
from .members import Members, StackedMLP

__all__ = [
    "MEMORY_BUDGETS",
    "PRECISIONS",
    "auto_chunk",
    "auto_eval_rows",
    "maybe_compile",
    "memory_budget",
    "precision_context",
    "resolve_device",
    "sync",
    "to_device",
    "to_host",
]

PRECISIONS = ("fp32", "ieee", "tf32", "bf16")


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device,
                      autocast: bool = True) -> Iterator[None]:
    """Matrix-product precision for the training forward and backward pass.

    See the module docstring for the modes. The previous global TF32 settings
    are restored on exit. ``autocast=False`` sets the TF32 switch alone: the
    update loop holds that around the backward pass too (autograd runs outside
    the forward's context, and its products read the global switch), while
    bfloat16 autocast wraps only the forward pass, as torch advises.

    Examples
    --------
    >>> import torch
    >>> cpu = torch.device("cpu")
    >>> with precision_context("fp32", cpu):
    ...     a = torch.ones(2, 2) @ torch.ones(2, 2)
    >>> with precision_context("bf16", cpu):
    ...     b = torch.ones(2, 2) @ torch.ones(2, 2)
    >>> a.dtype, b.dtype
    (torch.float32, torch.bfloat16)
    >>> with precision_context("fp16", cpu):
    ...     pass
    Traceback (most recent call last):
    ...
    ValueError: unknown precision 'fp16'; choose one of ('fp32', 'ieee', 'tf32', 'bf16')
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    # No autocast context at all unless it casts: an enclosing one, even disabled, keeps
    # torch's cache of bfloat16 weight copies alive across updates (stale weights).
    cast = autocast and precision == "bf16"
    if device.type != "cuda":
        with torch.autocast("cpu", dtype=torch.bfloat16) if cast else contextlib.nullcontext():
            yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = precision != "ieee"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16) if cast else contextlib.nullcontext():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def sync(device: torch.device) -> None:
    """Wait for the device (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(array, device: torch.device) -> torch.Tensor:
    """``array`` on ``device`` without waiting: on CUDA an asynchronous copy from pinned
    memory (a plain copy from pageable memory makes the host wait for the device).

    Examples
    --------
    >>> import numpy as np, torch
    >>> to_device(np.arange(3), torch.device("cpu"))
    tensor([0, 1, 2])
    """
    if device.type != "cuda":
        return torch.as_tensor(array, device=device)
    return torch.as_tensor(array).pin_memory().to(device, non_blocking=True)


def to_host(t: torch.Tensor, copy: bool = False) -> torch.Tensor:
    """Start moving ``t`` to host memory without waiting for it.

    On CUDA: a pinned buffer filled by an asynchronous copy, valid after the next
    :func:`sync`. On the CPU: ``t`` itself, or a clone with ``copy=True`` (for a
    tensor that is later updated in place).

    Examples
    --------
    >>> import torch
    >>> t = torch.ones(3)
    >>> same = to_host(t).data_ptr() == t.data_ptr()
    >>> copied = to_host(t, copy=True).data_ptr() == t.data_ptr()
    >>> same, copied
    (True, False)
    """
    t = t.detach()
    if t.device.type == "cpu":
        return t.clone() if copy else t
    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return out.copy_(t, non_blocking=True)


#: Bytes a piece of work may use, by use: (on the CPU, share of the free GPU memory).
#: Training chunks get 2 GiB on the CPU. Scoring batches get 16 MiB there: measured on
#: one thread (1M x 20, the default detector's 30 member-snapshots per view), batches
#: whose activations stay in the cache were 1.3-1.5x faster than 65,536-row batches,
#: since the element-wise layers are memory-bound.
MEMORY_BUDGETS = {"train": (2 * 1024**3, 0.5), "score": (16 * 1024**2, 0.25)}


def memory_budget(device: torch.device, use: str = "train") -> int:
    """Bytes one chunk of work may use: the one budget for training and scoring.

    Examples
    --------
    >>> import torch
    >>> memory_budget(torch.device("cpu")) // 1024**2, memory_budget(torch.device("cpu"), "score")
    (2048, 16777216)
    """
    cpu_bytes, gpu_share = MEMORY_BUDGETS[use]
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(gpu_share * free)
    return cpu_bytes


def activation_width(members: Members, params_per_member: int) -> int:
    """Floats of activation per example and member (a bound for unknown modules)."""
    if isinstance(members, StackedMLP):
        return sum(members.sizes[1:])
    return 4 * params_per_member


#: On the CPU, when members read their own rows, a chunk's activations of one layer
#: (members x width x batch rows, float32) are kept to about this size: larger buffers are
#: fresh memory every update (page faults, cache misses). 64 MLPs 40-256-256-10 with
#: batches of 128 on one thread of an Intel Xeon: chunks of 8 (1 MiB a layer) trained
#: 1.14x faster than one chunk of 64, chunks of 2, 4, 16 and 32 in between; the same
#: numbers, as each member's products keep their shapes in any chunk. (With shared
#: batches the first layer is one product per chunk, whose rounding can follow its shape,
#: so those chunks stay as large as the budget allows.)
CPU_LAYER_BYTES = 1 << 20


def auto_chunk(
    members: Members, params_per_member: int, batch_rows: int, device: torch.device,
    own_rows: bool = False,
) -> int:
    """Members per chunk so that training one chunk stays within the budget (and, on
    the CPU when members read their own rows, its layers' activations near
    :data:`CPU_LAYER_BYTES`).

    Examples
    --------
    >>> import torch
    >>> mlp = StackedMLP((40, 256, 256, 10))
    >>> auto_chunk(mlp, 78_858, 183, torch.device("cpu")), auto_chunk(mlp, 78_858, 128, "cpu", True)
    (706, 8)
    """
    device = torch.device(device)
    width = activation_width(members, params_per_member)
    # Parameters, gradients, two optimizer moments and a contiguous gradient
    # copy; activations kept for backward (pre/post activation and gradient).
    per_member = 4 * (6 * params_per_member + 3 * width * batch_rows)
    chunk = max(1, memory_budget(device) // per_member)
    if own_rows and device.type == "cpu" and isinstance(members, StackedMLP):
        layer = 4 * max(members.sizes[1:]) * batch_rows
        chunk = min(chunk, max(1, CPU_LAYER_BYTES // layer))
    return chunk


def auto_eval_rows(
    members: Members, params_per_member: int, n_members: int, device: torch.device, cap: int
) -> int:
    """Rows per recording pass so that K members' activations fit a quarter budget."""
    width = activation_width(members, params_per_member)
    rows = memory_budget(device) // (4 * 4 * 2 * width * n_members)
    return int(min(cap, max(16, rows)))


def maybe_compile(fn: Callable, enabled: bool, dynamic: bool | None = False) -> Callable:
    """``torch.compile(fn)`` when ``enabled``, falling back to ``fn`` where it fails.

    Compilation happens at the first call (and again for a new input shape or
    flag); if torch has no ``compile`` or it raises (no C++ compiler, an
    unsupported platform, an old torch), a warning says so and ``fn`` runs
    eagerly from then on. A genuine error in ``fn`` is raised again by the
    eager call. ``dynamic`` is ``torch.compile``'s: ``False`` compiles one graph
    per input shape, ``None`` a shape-generic one once a second shape comes.

    Examples
    --------
    >>> def double(t):
    ...     return 2 * t
    >>> maybe_compile(double, enabled=False) is double
    True
    """
    if not enabled:
        return fn
    if not hasattr(torch, "compile"):
        warnings.warn("torch.compile is not available; training eagerly", stacklevel=2)
        return fn
    try:
        compiled = torch.compile(fn, dynamic=dynamic)
    except Exception as exc:  # any failure means: run eagerly
        warnings.warn(f"torch.compile failed ({exc}); training eagerly", stacklevel=2)
        return fn
    current = [compiled]

    def call(*args, **kwargs):
        if current[0] is fn:
            return fn(*args, **kwargs)
        try:
            return current[0](*args, **kwargs)
        except Exception as exc:
            warnings.warn(
                f"torch.compile failed ({type(exc).__name__}: {exc}); training eagerly",
                stacklevel=2,
            )
            current[0] = fn
            return fn(*args, **kwargs)

    return call
