"""Initialization schemes for ensemble members.

Every scheme works one member at a time from that member's own generator, so
a member's initial weights depend only on ``(random_state, member index)`` and
not on how members are chunked.

Schemes
-------
``"default"``
    The framework default (``torch.nn.Linear``: weights and biases uniform in
    ``+-1/sqrt(fan_in)``; a module's own ``reset_parameters`` for the general path).
``"orthogonal"``
    Orthogonal weight matrices (``torch.nn.init.orthogonal_``), zero biases.
``"normal"``
    Weights ``N(0, 1/fan_in)`` (LeCun normal), zero biases.
callable
    ``hook(name, tensor, generator)`` called on every parameter of every member
    after the default init; it must modify ``tensor`` in place.

``init_scale`` multiplies every weight tensor (parameters with two or more
dimensions) after the scheme ran; biases are left alone. It is the knob the IM
theory (Kim & Kim, 2026) studies: small scales keep the network close to linear
early in training.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["INIT_SCHEMES", "InitHook", "apply_init", "block_seed", "check_init", "member_seed"]

InitHook = Callable[[str, torch.Tensor, torch.Generator], None]
INIT_SCHEMES = ("default", "orthogonal", "normal")


def check_init(init: str | InitHook, init_scale: float) -> None:
    """Raise a clear error for an unknown scheme or a bad scale.

    Examples
    --------
    >>> check_init("orthogonal", 0.5)  # valid: returns None
    >>> check_init("xavier", 1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown init 'xavier'; choose one of ('default', 'orthogonal', 'normal') ...
    >>> check_init("default", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: init_scale must be a positive finite number, got 0.0
    """
    if not callable(init) and init not in INIT_SCHEMES:
        raise ValueError(f"unknown init {init!r}; choose one of {INIT_SCHEMES} or pass a callable")
    if not (np.isfinite(init_scale) and init_scale > 0):
        raise ValueError(f"init_scale must be a positive finite number, got {init_scale!r}")


def member_seed(random_state: int | None, member: int) -> int:
    """A 63-bit seed for one member, derived from the ensemble seed.

    Examples
    --------
    >>> member_seed(0, 3) == member_seed(0, 3), member_seed(0, 3) == member_seed(0, 4)
    (True, False)
    >>> 0 <= member_seed(0, 3) < 2**63
    True
    """
    entropy = 0 if random_state is None else int(random_state)
    seq = np.random.SeedSequence(entropy=entropy, spawn_key=(int(member),))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def block_seed(random_state: int | None, block: int) -> int:
    """A 63-bit seed for a block of members (see ``StackedMLP.init``).

    Examples
    --------
    >>> block_seed(0, 1) == block_seed(0, 1), block_seed(0, 1) == block_seed(0, 2)
    (True, False)
    >>> block_seed(0, 0) != member_seed(0, 0)  # its own stream, apart from the member seeds
    True
    """
    entropy = 0 if random_state is None else int(random_state)
    seq = np.random.SeedSequence(entropy=entropy, spawn_key=(int(block), 1))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def apply_init(
    name: str,
    tensor: torch.Tensor,
    generator: torch.Generator,
    init: str | InitHook,
    init_scale: float,
) -> None:
    """Re-initialize one member's parameter ``tensor`` in place.

    ``tensor`` already holds the framework-default values; weights are tensors
    with ``ndim >= 2`` whose fan-in is the product of all but the first dimension
    (PyTorch's convention: ``(out, in, ...)``).

    Examples
    --------
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> w, b = torch.empty(4, 3), torch.ones(4)
    >>> apply_init("0.weight", w, gen, "orthogonal", init_scale=2.0)
    >>> apply_init("0.bias", b, gen, "orthogonal", init_scale=2.0)
    >>> torch.allclose(w.T @ w, 4 * torch.eye(3), atol=1e-5)  # orthogonal columns, scaled by 2
    True
    >>> b.tolist()  # biases are zeroed and never scaled
    [0.0, 0.0, 0.0, 0.0]
    """
    is_weight = tensor.ndim >= 2
    with torch.no_grad():
        if callable(init):
            init(name, tensor, generator)
        elif init == "orthogonal":
            if is_weight:
                torch.nn.init.orthogonal_(tensor, generator=generator)
            else:
                tensor.zero_()
        elif init == "normal":
            if is_weight:
                fan_in = math.prod(tensor.shape[1:])
                tensor.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
            else:
                tensor.zero_()
        if is_weight and init_scale != 1.0:
            tensor.mul_(init_scale)
