"""Member architectures with stacked parameters.

A *members* object knows how to create the stacked parameters of K members and
how to run all K of them on one shared batch of inputs::

    params = members.init(random_state, range(k0, k1), init, init_scale)
    outputs = members.forward(params, x)          # x: (B, ...) -> (K, B, ...)
    outputs = members.forward(params, xk, own=True)  # xk: (K, B, ...), own rows

Two implementations share that interface:

* :class:`StackedMLP`, the fast path. The first layer of all members is one
  wide matrix product ``x @ [W_1; ...; W_K]^T`` (the input batch is shared, so
  its rows are read once); deeper layers are batched matrix products.
* :class:`ModuleMembers`, the general path for any ``torch.nn.Module``, through
  ``torch.func.functional_call`` under ``torch.vmap``.

Parameter names follow ``torch.nn.Sequential`` (``"0.weight"``, ``"0.bias"``,
``"2.weight"`` ...) so one member can be exported as a plain module.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .init import InitHook, apply_init, block_seed, member_seed

__all__ = ["ACTIVATIONS", "Activation", "StackedMLP", "ModuleMembers", "Members", "make_members",
           "params_per_member"]

Params = dict[str, torch.Tensor]

#: Members initialized together from one generator by :meth:`StackedMLP.init`.
INIT_BLOCK = 32


class Activation(NamedTuple):
    """One activation: the module a standalone member uses, the same function, the
    function applied in place, and whether autograd allows the in-place one in training
    (its backward needs only its output, not its input)."""

    module: Callable[[], nn.Module]
    fn: Callable[[torch.Tensor], torch.Tensor]
    inplace: Callable[[torch.Tensor], torch.Tensor]
    grad_inplace: bool = True


#: The one activation table: name -> (module factory, function, in-place function,
#: whether training may use the in-place one).
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(nn.ReLU, torch.relu, torch.relu_),
    "leaky_relu": Activation(
        lambda: nn.LeakyReLU(0.01), lambda h: nn.functional.leaky_relu(h, 0.01),
        lambda h: nn.functional.leaky_relu_(h, 0.01),
    ),
    "tanh": Activation(nn.Tanh, torch.tanh, torch.tanh_),
    "gelu": Activation(nn.GELU, nn.functional.gelu,
                       lambda h: h.copy_(nn.functional.gelu(h)), grad_inplace=False),
    "sigmoid": Activation(nn.Sigmoid, torch.sigmoid, torch.sigmoid_),
    "identity": Activation(nn.Identity, lambda h: h, lambda h: h),
}

# Per-example reconstruction residuals applied in place (``reconstruction_losses``).
_RESIDUALS = {"l1": torch.abs_, "mse": torch.square_}


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")


@dataclass(frozen=True)
class StackedMLP:
    """K fully connected networks of the same shape, trained together.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(n_inputs, hidden_1, ..., n_outputs)``.
    activation : str, default="relu"
        Hidden activation: one of ``ACTIVATIONS``.
    output_activation : str, default="identity"
        Activation on the last layer (``"sigmoid"`` for [0, 1] reconstructions).
    bias : bool, default=True
        Whether layers have biases.

    Examples
    --------
    >>> import torch
    >>> mlp = StackedMLP((4, 8, 4))
    >>> params = mlp.init(0, range(3))
    >>> mlp.forward(params, torch.zeros(5, 4)).shape
    torch.Size([3, 5, 4])
    """

    sizes: tuple[int, ...]
    activation: str = "relu"
    output_activation: str = "identity"
    bias: bool = True

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least two positive widths, got {self.sizes!r}")
        object.__setattr__(self, "sizes", sizes)
        _check_activation(self.activation)
        _check_activation(self.output_activation)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def module(self) -> nn.Sequential:
        """One member as a plain ``nn.Sequential`` (parameter names match)."""
        layers: list[nn.Module] = []
        for i in range(self.n_layers):
            layers.append(nn.Linear(self.sizes[i], self.sizes[i + 1], bias=self.bias))
            last = i == self.n_layers - 1
            layers.append(ACTIVATIONS[self.output_activation if last else self.activation].module())
        return nn.Sequential(*layers)

    def init(
        self,
        random_state: int | None,
        members: range,
        init: str | InitHook = "default",
        init_scale: float = 1.0,
    ) -> Params:
        """Stacked initial parameters of ``members`` (weights ``(K, out, in)``).

        Weights are drawn for blocks of ``INIT_BLOCK`` consecutive members from
        one generator per block (one call per layer rather than one per member)
        and sliced, so a member's values still depend only on ``random_state`` and
        its index. Blocks are drawn on torch's threads at once (a CPU generator
        draws on one thread): 4,000 MLPs 40-256-256-10, 316M weights, took 2.0 s
        of a 30-epoch GPU run drawn one block after another.
        """
        first_block = members.start // INIT_BLOCK
        last_block = (members.stop - 1) // INIT_BLOCK
        scheme = "normal" if init == "normal" else "default"
        params = {name: torch.empty(len(members), *shape) for name, shape in self._shapes()}

        def fill(block: int) -> None:
            # the block's members that are in ``members``, copied into their rows
            lo = max(members.start, block * INIT_BLOCK)
            hi = min(members.stop, (block + 1) * INIT_BLOCK)
            skip = lo - block * INIT_BLOCK
            for name, t in self._init_block(random_state, block, scheme).items():
                params[name][lo - members.start : hi - members.start] = t[skip : skip + hi - lo]

        numbers = range(first_block, last_block + 1)
        with ThreadPoolExecutor(max(1, min(len(numbers), torch.get_num_threads()))) as pool:
            list(pool.map(fill, numbers))
        if callable(init) or init == "orthogonal":
            # Per-member schemes: each member from its own generator.
            for j, k in enumerate(members):
                gen = torch.Generator().manual_seed(member_seed(random_state, k))
                for name, t in params.items():
                    apply_init(name, t[j], gen, init, init_scale)
            return params
        if init_scale != 1.0:
            for t in params.values():
                if t.ndim == 3:
                    t.mul_(init_scale)
        return params

    def _shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Each parameter's name and shape for one member, in the order they are drawn."""
        out = []
        for i in range(self.n_layers):
            out.append((f"{2 * i}.weight", (self.sizes[i + 1], self.sizes[i])))
            if self.bias:
                out.append((f"{2 * i}.bias", (self.sizes[i + 1],)))
        return out

    def _init_block(self, random_state: int | None, block: int, scheme: str) -> Params:
        """One block's weights: nn.Linear's default (uniform in +-1/sqrt(fan_in))
        or, for ``scheme="normal"``, N(0, 1/fan_in) weights and zero biases."""
        gen = torch.Generator().manual_seed(block_seed(random_state, block))
        params, bound = {}, 1.0
        for name, shape in self._shapes():  # each layer's weight, then its bias
            t = params[name] = torch.empty(INIT_BLOCK, *shape)
            if len(shape) == 2:
                bound = shape[1] ** -0.5  # kaiming_uniform(a=sqrt(5)), as nn.Linear
                if scheme == "normal":
                    t.normal_(0.0, bound, generator=gen)
                else:
                    t.uniform_(-bound, bound, generator=gen)
            elif scheme == "normal":
                t.zero_()
            else:
                t.uniform_(-bound, bound, generator=gen)  # the bias, with its weight's bound
        return params

    def forward(self, params: Params, x: torch.Tensor, own: bool = False) -> torch.Tensor:
        """Run every member on the shared batch ``x`` of shape ``(B, n_inputs)``,
        or member ``k`` on its own batch ``x[k]`` when ``x`` is ``(K, B, n_inputs)``
        (``own`` is implied by the shape).

        Returns ``(K, B, n_outputs)``.

        Activations are kept feature-major, ``(K, width, B)``: every product is
        then ``W @ h`` with both operands contiguous, and so are the weight
        gradients autograd returns (no transposed copies per update).
        """
        w0 = params["0.weight"]
        n_members, width, n_in = w0.shape
        if x.ndim == 3:
            # Own inputs per member: one batched product, (K, h, d) @ (K, d, B).
            xt = x.transpose(1, 2)
            if self.bias:
                h = torch.baddbmm(params["0.bias"].unsqueeze(-1), w0, xt)
            else:
                h = torch.bmm(w0, xt)
            return self._hidden_layers(params, h)
        w0 = w0.reshape(n_members * width, n_in)
        # One wide product for all members' first layers, (K*h, d) @ (d, B),
        # with the bias added inside the matrix product (addmm/baddbmm).
        if self.bias:
            h = torch.addmm(params["0.bias"].reshape(-1, 1), w0, x.T)
        else:
            h = torch.matmul(w0, x.T)
        return self._hidden_layers(params, h)

    def folded_weights(self, params: Params) -> list[torch.Tensor]:
        """Each layer's weight with its bias folded in, for :meth:`reconstruction_losses`.

        Layer ``i`` becomes ``(K, out + 1, in + 1)``: the bias is the weight of a constant
        input 1, and one more output row carries that 1 on to the next layer (the last
        layer has no such row: ``(K, out, in + 1)``). Build them once per scoring pass.
        """
        k = params["0.weight"].shape[0]
        folded = []
        for i in range(self.n_layers):
            w = params[f"{2 * i}.weight"]
            n_out, n_in = w.shape[1:]
            last = i == self.n_layers - 1
            f = w.new_zeros(k, n_out + (not last), n_in + 1)
            f[:, :n_out, :n_in] = w
            if self.bias:
                f[:, :n_out, n_in] = params[f"{2 * i}.bias"]
            if not last:
                f[:, n_out, n_in] = 1.0
            folded.append(f)
        return folded

    def reconstruction_losses(self, folded: list[torch.Tensor], xt: torch.Tensor,
                              loss: str = "l1") -> torch.Tensor:
        """Per-member reconstruction losses ``(K, B)`` of feature-major rows ``xt`` ``(d, B)``,
        for inference (call under ``torch.no_grad()``), from :meth:`folded_weights`.

        The same numbers as ``get_loss(loss)(self.forward(params, xt.T), xt.T)`` for
        ``loss`` ``"l1"`` or ``"mse"`` (up to float rounding), with one matrix product
        and one in-place activation a layer and nothing else: the biases ride in the
        products (as a separate pass, adding them cost a quarter of the time, and
        baddbmm's copy of the bias into its output as much), and the residual is taken
        on the feature-major ``(K, d, B)`` outputs, so nothing is transposed. On one CPU
        thread this was 2.2x faster than ``forward`` plus the loss (65,536 rows of 20
        features in batches of 448, 30 members 20-32-16-8-16-32-20).

        Examples
        --------
        >>> import torch
        >>> from imod.engine.losses import l1
        >>> ae = StackedMLP((4, 3, 4))
        >>> params, x = ae.init(0, range(2)), torch.randn(5, 4)
        >>> with torch.no_grad():
        ...     fast = ae.reconstruction_losses(ae.folded_weights(params), x.T.contiguous())
        >>> torch.allclose(fast, l1(ae.forward(params, x), x), atol=1e-6)
        True
        """
        if loss not in _RESIDUALS:
            raise ValueError(f"unknown reconstruction loss {loss!r}; choose one of "
                             f"{sorted(_RESIDUALS)}")
        (k, width, _), d = folded[0].shape, xt.shape[0]
        h = torch.mm(folded[0].reshape(k * width, d + 1),
                     torch.cat([xt, xt.new_ones(1, xt.shape[1])])).view(k, width, -1)
        hidden = ACTIVATIONS[self.activation].inplace
        for w in folded[1:]:
            hidden(h[:, :-1])  # not the row of ones
            h = torch.bmm(w, h)
        ACTIVATIONS[self.output_activation].inplace(h)
        return _RESIDUALS[loss](h.sub_(xt)).sum(dim=1).div_(d)

    def _hidden_layers(self, params: Params, h: torch.Tensor) -> torch.Tensor:
        """From the first layer's pre-activation ``(K, h_1, B)`` (or ``(K * h_1, B)``, one
        shared batch's product) to the outputs ``(K, B, out)``."""
        n_members, width = params["0.weight"].shape[:2]
        for i in range(self.n_layers):
            if i > 0:
                w = params[f"{2 * i}.weight"]
                if self.bias:
                    h = torch.baddbmm(params[f"{2 * i}.bias"].unsqueeze(-1), w, h)
                else:
                    h = torch.bmm(w, h)
            act = ACTIVATIONS[self.output_activation if i == self.n_layers - 1 else self.activation]
            # In place where autograd allows it: the products above do not keep their
            # outputs, so this saves one (K, width, B) buffer a layer; fresh buffers
            # each update cost page faults (10 epochs of memorization_speed: 16.8 -> 14.6 s).
            h = act.inplace(h) if act.grad_inplace else act.fn(h)
            if i == 0:
                # Shaped per member after the activation: applied in place to a view,
                # autograd's backward would rebuild the product's whole buffer (a zero
                # fill and two copies an update: a third of 64 members' width-32 update).
                h = h.view(n_members, width, -1)
        return h.transpose(1, 2)


class ModuleMembers:
    """K copies of any ``torch.nn.Module``, vectorized with ``torch.func``.

    Parameters
    ----------
    factory : callable
        Builds one member, e.g. ``lambda: MyCNN()``. It is called once per
        member under that member's seed, so the module's own default
        initialization is the ``"default"`` scheme.

    Notes
    -----
    Modules whose forward pass updates buffers (BatchNorm running statistics)
    cannot run under ``vmap``; use GroupNorm/LayerNorm or no normalization.

    Examples
    --------
    >>> import torch
    >>> members = ModuleMembers(lambda: torch.nn.Linear(4, 2))
    >>> params = members.init(0, range(3))
    >>> members.forward(params, torch.zeros(5, 4)).shape
    torch.Size([3, 5, 2])
    """

    def __init__(self, factory: Callable[[], nn.Module]) -> None:
        if not callable(factory):
            raise TypeError("factory must be a callable returning a torch.nn.Module")
        self.factory = factory
        with torch.random.fork_rng(devices=[]):
            template = factory()
        if not isinstance(template, nn.Module):
            raise TypeError(f"factory returned {type(template).__name__}, not a torch.nn.Module")
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in template.modules()):
            raise ValueError(
                "BatchNorm layers keep running statistics, which torch.vmap cannot update; "
                "use GroupNorm, LayerNorm or no normalization in ensemble members"
            )
        self._template = template.to("meta")
        self._buffers = {n: b for n, b in template.named_buffers()}

    def module(self) -> nn.Module:
        """One member as a fresh module (load a member's state dict into it)."""
        return self.factory()

    def init(
        self,
        random_state: int | None,
        members: range,
        init: str | InitHook = "default",
        init_scale: float = 1.0,
    ) -> Params:
        stacks: dict[str, list[torch.Tensor]] = {}
        for k in members:
            seed = member_seed(random_state, k)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                module = self.factory()
            gen = torch.Generator().manual_seed(seed)
            for name, p in module.named_parameters():
                t = p.detach().clone()
                apply_init(name, t, gen, init, init_scale)
                stacks.setdefault(name, []).append(t)
        return {name: torch.stack(ts) for name, ts in stacks.items()}

    def forward(self, params: Params, x: torch.Tensor, own: bool = False) -> torch.Tensor:
        """Every member on the shared batch ``x`` ``(B, ...)``, or with ``own=True``
        member ``k`` on its own batch ``x[k]`` (``x`` is ``(K, B, ...)``)."""
        buffers = {n: b.to(x.device) for n, b in self._buffers.items()}

        def one(p: Params, xb: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self._template, (p, buffers), (xb,))

        return torch.vmap(one, in_dims=(0, 0 if own else None))(params, x)


Members = StackedMLP | ModuleMembers


def make_members(model: StackedMLP | ModuleMembers | Callable[[], nn.Module]) -> Members:
    """Accept a :class:`StackedMLP`, a :class:`ModuleMembers`, or a module factory.

    Examples
    --------
    >>> import torch
    >>> mlp = StackedMLP((4, 8, 4))
    >>> make_members(mlp) is mlp
    True
    >>> type(make_members(lambda: torch.nn.Linear(4, 2))).__name__
    'ModuleMembers'
    >>> make_members(torch.nn.Linear(4, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: pass a factory (e.g. `lambda: MyNet()`) rather than a module instance, ...
    """
    if isinstance(model, (StackedMLP, ModuleMembers)):
        return model
    if isinstance(model, nn.Module):
        raise TypeError(
            "pass a factory (e.g. `lambda: MyNet()`) rather than a module instance, "
            "so every member gets its own initialization"
        )
    if callable(model):
        return ModuleMembers(model)
    raise TypeError(f"model must be a StackedMLP or a module factory, got {type(model).__name__}")


def params_per_member(members: Members) -> int:
    """Numbers in one member's parameters (weights and biases).

    Examples
    --------
    >>> params_per_member(StackedMLP((40, 256, 256, 10)))
    78858
    """
    return sum(t[0].numel() for t in members.init(0, range(1)).values())


def member_state_dict(params: Params, k: int) -> dict[str, torch.Tensor]:
    """Member ``k``'s parameters as a plain state dict.

    Examples
    --------
    >>> mlp = StackedMLP((4, 8, 4))
    >>> params = mlp.init(0, range(3))
    >>> sd = member_state_dict(params, 1)
    >>> sorted(sd), tuple(sd["0.weight"].shape)
    (['0.bias', '0.weight', '2.bias', '2.weight'], (8, 4))
    >>> mlp.module().load_state_dict(sd)
    <All keys matched successfully>
    """
    return {name: t[k].detach().clone() for name, t in params.items()}
