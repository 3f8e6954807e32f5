"""The plain loop the engine must agree with: one model at a time.

:func:`train_one_by_one` trains each member alone as an ordinary
``torch.nn.Module`` with a stock ``torch.optim`` optimizer, from the engine's own
initial weights: every epoch it takes the epoch's permutation of all rows, keeps
the member's own rows in that order, and cuts them into batches of
``batch_size`` (the last one shorter) -- a proper epoch over the member's rows. The tests check that
:func:`~imod.engine.train_ensemble` gives the same numbers, and
``benchmarks/speed/engine_speed.py`` times it as the baseline.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .losses import get_loss
from .members import Members, member_state_dict
from .optim import OptimizerSpec
from .schedule import batch_order

__all__ = ["train_one_by_one"]


def _torch_optimizer(spec: OptimizerSpec, params) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    cls = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)


def train_one_by_one(
    members: Members,
    init_params: dict[str, torch.Tensor],
    X,
    y=None,
    *,
    mask: np.ndarray | None = None,
    loss: str = "mse",
    optimizer: OptimizerSpec | str | dict = "adam",
    epochs: int = 10,
    batch_size: int = 64,
    random_state: int | None = 0,
    trim: float = 0.0,
    device: str | torch.device = "cpu",
) -> list[torch.nn.Module]:
    """Train every member separately; returns the trained modules.

    With ``trim``, each step averages the member's losses after dropping the
    ``floor(trim * rows)`` largest (the engine's trimmed loss).

    Examples
    --------
    >>> import numpy as np
    >>> from imod.engine import StackedMLP
    >>> mlp = StackedMLP((3, 2, 3))
    >>> X = np.random.default_rng(0).normal(size=(20, 3))
    >>> models = train_one_by_one(mlp, mlp.init(0, range(2)), X, epochs=1)
    >>> len(models)
    2
    """
    spec = OptimizerSpec.coerce(optimizer)
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32, device=device)
    classify = loss == "cross_entropy"
    dtype = torch.long if classify else torch.float32
    targets = x if y is None else torch.as_tensor(np.asarray(y), dtype=dtype, device=device)
    n = x.shape[0]
    n_members = next(iter(init_params.values())).shape[0]
    mask = np.ones((n_members, n), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    loss_fn = get_loss(loss)
    models = []
    for k in range(n_members):
        model = members.module().to(device)
        model.load_state_dict(member_state_dict(init_params, k))
        opt = _torch_optimizer(spec, model.parameters())
        for epoch in range(epochs):
            order = batch_order(random_state, epoch, n)
            own = order[mask[k, order]]  # the member's rows, in the epoch's order
            for s in range(math.ceil(own.size / batch_size)):
                idx = own[s * batch_size : (s + 1) * batch_size]
                idx_t = torch.as_tensor(idx, device=device)
                opt.zero_grad(set_to_none=True)
                out = model(x[idx_t]).unsqueeze(0)
                per_example = loss_fn(out, targets[idx_t])[0]
                if trim > 0:
                    keep = idx.size - math.floor(trim * idx.size)
                    per_example = per_example.topk(keep, largest=False).values
                per_example.mean().backward()
                opt.step()
        models.append(model)
    return models
