"""Optimizers over stacked member parameters.

Each update takes an ``active`` vector of shape ``(K,)``: a member whose
mini-batch held none of its examples takes no step at all (its moments and step
count stay as they were), exactly as a model trained alone would skip that
batch. The formulas are those of ``torch.optim.SGD``, ``Adam`` and ``AdamW``.

With ``OptimizerSpec(state_precision="bf16")`` Adam keeps its two moments in
bfloat16 (2 bytes each instead of 4) next to float32 weights: on a GPU the step
is memory-bound, and the fused step (:func:`adam_masked_step`, compiled with
``torch.compile`` into one kernel per parameter tensor) moves 20 bytes per parameter
instead of 28. The arithmetic runs in float32: the moments are widened, updated,
used, then stored back, rounded stochastically (unbiased; :func:`round_to_bf16`).
Rounded to nearest, ``v`` could never decrease: its
per-step change ``1 - beta2 = 0.001`` is below half a bfloat16 ulp. Measured on
one weight fed gradient 1 for 500 steps then 0.01 for 2,500: ``v`` ends at
0.0324 in float32, 0.0323 stochastically rounded, stuck at 0.25 rounded to
nearest; the weight ends at -0.5809 in float32, -0.5810 with both moments
stochastically rounded, -0.5765 with ``m`` rounded to nearest (``m`` stalls
within bfloat16 resolution of its target).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.optim.adam import adam as torch_adam
from torch.optim.sgd import sgd as torch_sgd

from .runtime import maybe_compile

__all__ = ["OptimizerSpec", "StackedOptimizer", "OPTIMIZERS", "STATE_PRECISIONS",
           "adam_masked_step", "round_to_bf16"]

OPTIMIZERS = ("adam", "adamw", "sgd")
STATE_PRECISIONS = ("fp32", "bf16")

_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer, with its hyper-parameters.

    Parameters
    ----------
    name : {"adam", "adamw", "sgd"}
    lr : float
        Learning rate.
    weight_decay : float
        L2 penalty (added to the gradient for ``adam``/``sgd``, decoupled for ``adamw``).
    betas : tuple of float
        Adam moment decay rates.
    eps : float
        Adam denominator guard.
    momentum : float
        SGD momentum (0 = plain SGD).
    state_precision : {"fp32", "bf16"}
        Storage of Adam's two moments. ``"bf16"`` halves the optimizer state
        (with float32 weights, stochastically rounded moments; ``adam`` and
        ``adamw`` only). Together with ``precision="bf16"`` in
        :func:`~imod.engine.train_ensemble` this is the engine's low-memory
        path. ``"fp32"`` (default) is torch's fused Adam, bit for bit.

    Examples
    --------
    >>> OptimizerSpec("adam", lr=1e-3).name
    'adam'
    >>> OptimizerSpec("adam", state_precision="bf16").state_precision
    'bf16'
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = field(default=(0.9, 0.999))
    eps: float = 1e-8
    momentum: float = 0.0
    state_precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of {OPTIMIZERS}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.state_precision not in STATE_PRECISIONS:
            raise ValueError(
                f"unknown state_precision {self.state_precision!r}; "
                f"choose one of {STATE_PRECISIONS}"
            )
        if self.state_precision != "fp32" and self.name == "sgd":
            raise ValueError(
                f"state_precision={self.state_precision!r} is for adam and adamw; "
                "sgd keeps its momentum in float32"
            )

    @classmethod
    def coerce(cls, spec: OptimizerSpec | str | dict) -> OptimizerSpec:
        """Accept a spec, an optimizer name, or a dict of its fields."""
        if isinstance(spec, OptimizerSpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, dict):
            return cls(**spec)
        raise TypeError(f"optimizer must be an OptimizerSpec, a name or a dict, got {spec!r}")


class StackedOptimizer:
    """Applies one optimizer step to every member at once.

    While every member has stepped at every update (the usual case), the step
    is torch's own fused (CUDA) or multi-tensor (CPU) implementation: one pass
    over memory, which matters when K members hold hundreds of millions of
    weights. Once some member skips a batch, members' step counts differ and the
    per-member formula of :meth:`_masked_step` takes over for good: on the CPU,
    torch's fused step over each active member's slices (:meth:`_member_steps`);
    on CUDA, and with bfloat16 moments always (torch's fused Adam wants its state
    in the parameters' dtype), :func:`adam_masked_step` compiled by
    ``torch.compile`` into one loop per parameter tensor (a warning, then eager,
    where compiling fails). Eager, that formula is about ten passes over memory:
    on a GPU it took a third of a K = 4,000 memorization run.
    Measured on one CPU thread, 5.0M parameters (64 MLPs 40-256-256-10;
    ``benchmarks/speed/optimizer_step.py --threads 1``): 7.9 ms per step compiled,
    331 ms eagerly (the rounding's integer hash is a dozen passes over memory), 2.1 ms
    for torch's fused float32 step. On an H200 (4,000 such MLPs, 316M parameters,
    float32 moments, profiled) the compiled step is one kernel per tensor and took
    2.0 ms: 28 bytes per parameter at 4.3 TB/s, the card's copy bandwidth.

    Examples
    --------
    >>> import torch
    >>> params = {"w": torch.ones(2, 3)}  # K=2 members
    >>> opt = StackedOptimizer(OptimizerSpec("sgd", lr=0.5), params)
    >>> opt.step(params, {"w": torch.ones(2, 3)}, active=torch.tensor([True, False]))
    >>> params["w"]  # member 1 had no example in the batch: no step
    tensor([[0.5000, 0.5000, 0.5000],
            [1.0000, 1.0000, 1.0000]])
    >>> opt.steps
    tensor([1., 0.])
    """

    def __init__(self, spec: OptimizerSpec, params: dict[str, torch.Tensor]) -> None:
        self.spec = spec
        self.names = list(params)
        first = next(iter(params.values()))
        self.steps = torch.zeros(first.shape[0], device=first.device)
        self.uniform = True
        self.scalar_steps = [torch.zeros((), device=first.device) for _ in params]
        low = spec.state_precision == "bf16"
        dtype = torch.bfloat16 if low else None
        self.exp_avg = [torch.zeros_like(p, dtype=dtype) for p in params.values()]
        self.exp_avg_sq = [torch.zeros_like(p, dtype=dtype) for p in params.values()]
        self.low_precision = low
        # Salt of the stochastic rounding: a device counter (no host value enters the
        # compiled step, so it compiles once); runs stay reproducible.
        self.salt = torch.zeros((), dtype=torch.int64, device=first.device)
        self._adam_step = maybe_compile(adam_masked_step, low or first.is_cuda, dynamic=None)
        # SGD momentum buffers; torch creates them from the first gradient.
        self.momentum: list[torch.Tensor | None] = [None] * len(params)
        # Per-member views of parameters, moments and step counts (:meth:`_member_steps`).
        self._slices: list[tuple[list[torch.Tensor], ...]] | None = None

    def idle(self) -> None:
        """A step at which none of these members has a row (other chunks' members may):
        nothing moves, and the optimizer leaves its all-members-in-step path, as the
        optimizer of a run with every member in one chunk does at this step, so that
        chunking does not change the arithmetic."""
        self.uniform = False

    @torch.no_grad()
    def step(
        self,
        params: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor],
        active: torch.Tensor,
        all_active: bool | None = None,
        members: np.ndarray | None = None,
    ) -> None:
        """One update; ``all_active``, when known on the host, spares a device sync.

        ``members`` (optional) is ``active`` known on the host, a bool array: then,
        once members' step counts differ, CPU Adam steps each active member's slices
        with torch's fused kernel (its own step count) instead of the per-member
        formula over all members.
        """
        if all_active is None:
            all_active = bool(active.all())
        self.uniform = self.uniform and all_active
        ps = [params[n] for n in self.names]
        gs = [grads[n] for n in self.names]
        if self.uniform and not self.low_precision:
            self.steps += 1
            # torch's fused kernels want gradients laid out like their
            # parameters; a transposed weight's gradient is a strided view.
            self._torch_step(ps, [g.contiguous() for g in gs])
        elif (members is not None and not ps[0].is_cuda and not self.low_precision
              and self.spec.name != "sgd"):
            self._member_steps(ps, gs, active, np.flatnonzero(members))
        else:
            self._masked_step(ps, gs, active)

    def _member_steps(self, ps: list[torch.Tensor], gs: list[torch.Tensor],
                      active: torch.Tensor, which: np.ndarray) -> None:
        """torch's fused Adam over the active members' slices, each with its own step.

        On the CPU this is one pass over memory, where :meth:`_masked_step`'s
        formula makes about ten (measured, 64 MLPs 40-256-256-10, one thread:
        4.7-5.8 ms against 36-41 ms a step).
        """
        if self._slices is None:  # per-member views, made once (updated in place)
            self._slices = [(list(p.unbind(0)), list(m.unbind(0)), list(v.unbind(0)),
                             list(self.steps.clone().unbind(0)))
                            for p, m, v in zip(ps, self.exp_avg, self.exp_avg_sq)]
        self.steps += active.to(self.steps.dtype)
        lists: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])
        for (p, m, v, t), g in zip(self._slices, gs):
            rows = g.contiguous().unbind(0)  # fused kernels want dense gradients
            for k in which:
                for out, item in zip(lists, (p[k], rows[k], m[k], v[k], t[k])):
                    out.append(item)
        self._torch_step(*lists)

    def _torch_step(self, ps: list[torch.Tensor], gs: list[torch.Tensor],
                    exp_avg: list[torch.Tensor] | None = None,
                    exp_avg_sq: list[torch.Tensor] | None = None,
                    steps: list[torch.Tensor] | None = None) -> None:
        """torch's own step over ``ps`` (the stacked tensors, or member slices with their
        moments and step counts)."""
        s = self.spec
        fused = ps[0].is_cuda
        if s.name == "sgd":
            torch_sgd(
                ps,
                gs,
                self.momentum,
                foreach=not fused,
                fused=fused,
                weight_decay=s.weight_decay,
                momentum=s.momentum,
                lr=s.lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
            )
            return
        b1, b2 = s.betas
        # torch's fused Adam also runs on the CPU: one kernel for all tensors,
        # measured 4x faster than the multi-tensor path for these small members.
        torch_adam(
            ps,
            gs,
            self.exp_avg if exp_avg is None else exp_avg,
            self.exp_avg_sq if exp_avg_sq is None else exp_avg_sq,
            [],
            self.scalar_steps if steps is None else steps,
            foreach=False,
            fused=True,
            decoupled_weight_decay=s.name == "adamw",
            amsgrad=False,
            beta1=b1,
            beta2=b2,
            lr=s.lr,
            weight_decay=s.weight_decay,
            eps=s.eps,
            maximize=False,
        )

    def _masked_step(
        self, ps: list[torch.Tensor], gs: list[torch.Tensor], active: torch.Tensor
    ) -> None:
        s = self.spec
        act = active.to(self.steps.dtype)
        self.steps += act
        if s.name in ("adam", "adamw"):
            b1, b2 = s.betas
            t = self.steps.clamp_min(1.0)
            corr1 = 1.0 - b1**t
            corr2 = 1.0 - b2**t
        for i, (p, g) in enumerate(zip(ps, gs)):
            shape = (-1,) + (1,) * (p.ndim - 1)
            a = act.view(shape)
            if s.name == "sgd":
                if s.weight_decay:
                    g = g + s.weight_decay * p
                if s.momentum:
                    buf = self.momentum[i]
                    if buf is None:
                        buf = self.momentum[i] = torch.zeros_like(p)
                    # A member's first step starts its buffer at its gradient.
                    first = (self.steps == 1).to(p.dtype).view(shape)
                    new = first * g + (1 - first) * (s.momentum * buf + g)
                    buf.copy_(a * new + (1 - a) * buf)
                    g = buf
                p.sub_(a * s.lr * g)
                continue
            self.salt += 1
            self._adam_step(p, g, self.exp_avg[i], self.exp_avg_sq[i], a,
                            s.lr / corr1.view(shape), corr2.view(shape), self.salt,
                            lr=s.lr, beta1=b1, beta2=b2, eps=s.eps, weight_decay=s.weight_decay,
                            decoupled=s.name == "adamw")


def adam_masked_step(
    p: torch.Tensor, g: torch.Tensor, m_state: torch.Tensor, v_state: torch.Tensor,
    active: torch.Tensor, step_size: torch.Tensor, corr2: torch.Tensor, salt: torch.Tensor,
    *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
    decoupled: bool,
) -> None:
    """One Adam(W) step of float32 weights ``p``, each member with its own step count,
    moments ``m_state``, ``v_state`` in float32 or bfloat16.

    Every tensor op of the step, in one function so that ``torch.compile`` fuses it
    into one loop (a GPU kernel): it reads ``p``, ``g`` and the two moments and writes
    ``p`` and the moments, 28 bytes per parameter (20 with bfloat16 moments).
    ``active`` (a member axis view of 0/1) freezes members without an example in the
    batch, moments included (bfloat16 values are stored back exactly); ``step_size``
    is ``lr / (1 - beta1**t)`` and ``corr2`` is ``1 - beta2**t`` per member; ``salt``
    varies the rounding noise of bfloat16 moments. Float32 moments are updated in
    place (``.float()`` is the tensor itself).
    """
    if decoupled and weight_decay:
        p.mul_(1 - active * (lr * weight_decay))
    elif weight_decay:
        g = g + weight_decay * p
    m = m_state.float().lerp_(g, active * (1 - beta1))
    v = v_state.float().lerp_(g * g, active * (1 - beta2))
    p.sub_(active * step_size * m / ((v / corr2).sqrt() + eps))
    if m_state.dtype == torch.bfloat16:
        m_state.copy_(round_to_bf16(m, 2 * salt))
        v_state.copy_(round_to_bf16(v, 2 * salt + 1))


def round_to_bf16(x: torch.Tensor, salt: torch.Tensor) -> torch.Tensor:
    """``x`` (float32) in bfloat16, rounded up with probability equal to the remainder
    (unbiased: the expected value is ``x``).

    Sixteen pseudo-random bits are added to the float32 bit pattern, then cut off (a
    bfloat16 is the top half of a float32): values already in bfloat16 are kept. The bits
    are a hash of the element's index and ``salt`` (an int64 tensor), not draws from a
    generator, so a compiled step computes them in its own loop, and runs repeat.

    Examples
    --------
    >>> import torch
    >>> x = torch.full((20000,), 1.0 + 2**-10)  # a quarter of a bfloat16 ulp above 1
    >>> out = round_to_bf16(x, torch.tensor(7))
    >>> out.unique().tolist(), abs(out.float().mean().item() - (1.0 + 2**-10)) < 1e-4
    ([1.0, 1.0078125], True)
    """
    # a 32-bit mix of (index, salt) (the murmur3 finalizer's shifts with multipliers
    # below 2**31, so int64 products never overflow); its low 16 bits are the noise
    h = (torch.arange(x.numel(), device=x.device) ^ (salt * 0x9E3779B1)) & _M32
    h = ((h ^ (h >> 16)) * 0x5BD1E995) & _M32
    h = ((h ^ (h >> 15)) * 0x27D4EB2D) & _M32
    noise = ((h ^ (h >> 16)) & 0xFFFF).to(torch.int32).view(x.shape)
    bits = (x.view(torch.int32) + noise) & -65536
    return bits.view(torch.float32).to(torch.bfloat16)
