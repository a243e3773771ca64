"""Multi-exit networks: a 5-block ResNet for images and a 3-layer LSTM for time series.

Both models return a tuple of exit logits, **shallow to deep**, and can be *truncated*: with
``active_exits = k`` the forward pass stops after the block that feeds exit ``k`` and returns
only the first ``k`` exits, so a client limited to exit ``k`` really pays only for the layers
up to that exit. :meth:`exit_of_parameters` tells which exit each parameter belongs to (the
first exit whose output depends on it); :func:`exit_parameter_mask` turns that into the set
of parameters a client limited to exit ``k`` trains and uploads.

Design choices (kept here so that reviewers find them next to the code):

- **Normalisation: GroupNorm.** GroupNorm normalises each sample over groups of channels, so
  (1) it has no running statistics (nothing is written in ``forward``; ``functional_call`` +
  ``vmap`` work); (2) a sample's output does not depend on the other samples of its batch,
  so the batched engine (which pads clients whose epoch has ended and masks them out) gives
  the same numbers as a per-client loop, and evaluation does not depend on the evaluation
  batch; (3) under non-IID FedAvg, batch statistics differ between clients and BatchNorm is
  known to hurt (Hsieh et al., "The non-IID data quagmire of decentralized machine learning",
  ICML 2020), which recommends GroupNorm. BatchNorm without running statistics would fail
  (2): its output for a sample changes with the batch it is in, also at test time.
- **LSTM in plain tensor ops.** ``nn.LSTM`` calls a fused kernel that ``torch.func.vmap``
  cannot batch, so :class:`MultiExitLSTM` unrolls the standard LSTM cell (gate order
  i, f, g, o, exactly as ``nn.LSTM``) with matrix products; its parameters have the same names
  and layout as ``nn.LSTM``'s (``weight_ih_l0`` ...), so weights copy across one to one.
- **LSTM exits read the last time step**: exit ``k`` is ``dropout -> linear`` applied to the
  hidden state of layer ``k`` at the final time step (the usual many-to-one HAR classifier).
- Dropout (``p = 0.5`` by default) sits in the exits only, before the linear layer, as the
  issue specifies; it is configurable so that exact batched-vs-sequential checks can turn it
  off.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from qkd.errors import ParameterError

__all__ = [
    "MultiExitLSTM",
    "MultiExitModel",
    "MultiExitResNet",
    "deepest_affordable_exit",
    "exit_flops",
    "exit_parameter_mask",
    "reinitialize",
    "truncated",
]


M = TypeVar("M", bound=nn.Module)


def _group_count(channels: int, max_groups: int = 8) -> int:
    """Largest divisor of ``channels`` that is ``<= max_groups``."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def _check_exits(name: str, active: int, n_exits: int) -> int:
    if isinstance(active, bool) or int(active) != active or not 1 <= active <= n_exits:
        raise ParameterError(name, active, f"an integer in [1, {n_exits}]")
    return int(active)


class MultiExitModel(nn.Module):
    """Base of the multi-exit models: ``n_exits``, truncation, parameter-to-exit map.

    Subclasses set ``n_exits`` and ``_active_exits`` and implement ``exit_of_parameters``;
    their forward returns ``active_exits`` exit logits, shallow to deep.
    """

    n_exits: int
    _active_exits: int

    @property
    def active_exits(self) -> int:
        """How many exits the forward pass computes (``1 .. n_exits``)."""
        return self._active_exits

    @active_exits.setter
    def active_exits(self, value: int) -> None:
        self._active_exits = _check_exits("active_exits", value, self.n_exits)

    def exit_of_parameters(self) -> dict[str, int]:  # pragma: no cover - abstract
        """Map each parameter name to the (1-based) first exit that depends on it."""
        raise NotImplementedError


class _AdaptiveAvgPool(nn.Module):
    """``F.adaptive_avg_pool2d(x, bins)``, skipping the kernel where it is not needed.

    The identity when the map already has ``bins x bins`` cells (the deepest exit at stem
    stride 2), a plain mean over the last two axes for ``bins = 1``; otherwise the kernel.
    Values equal ``adaptive_avg_pool2d``'s (to float rounding). A version with two constant
    matrix products was tried for ``vmap``: faster for 14x14 -> 4x4 but slower for 7x7 -> 4x4
    (per-op micro-benchmark, 24 clients), so it was not kept.

    Examples
    --------
    >>> x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(_AdaptiveAvgPool(2)(x), F.adaptive_avg_pool2d(x, 2), atol=1e-6)
    True
    """

    def __init__(self, bins: int) -> None:
        super().__init__()
        if isinstance(bins, bool) or int(bins) != bins or bins < 1:
            raise ParameterError("bins", bins, "an integer >= 1")
        self.bins = int(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool the last two axes of ``x`` to ``bins x bins``."""
        if x.shape[-2] == x.shape[-1] == self.bins:
            return x
        if self.bins == 1:
            return x.mean(dim=(-2, -1), keepdim=True)
        return F.adaptive_avg_pool2d(x, self.bins)


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and a residual connection."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(_group_count(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(_group_count(c_out), c_out)
        self.shortcut: nn.Module
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                nn.GroupNorm(_group_count(c_out), c_out),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class _Exit(nn.Module):
    """Average pooling to a ``pool x pool`` grid -> dropout -> linear (for [N, C, H, W]), or
    dropout -> linear (``pool = 0``, for [N, F])."""

    def __init__(self, features: int, num_classes: int, dropout: float, pool: int) -> None:
        super().__init__()
        self.pool = _AdaptiveAvgPool(pool) if pool else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features * max(pool, 1) ** 2, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            h = self.pool(h).flatten(1)
        return self.fc(self.dropout(h))


class MultiExitResNet(MultiExitModel):
    """A ResNet of five residual blocks with exits after blocks 1, 3 and 5.

    Stem: 3x3 convolution -> GroupNorm -> ReLU. Blocks: basic residual blocks (two 3x3
    convolutions, GroupNorm, 1x1 projection shortcut where the shape changes). Each exit:
    average pooling to an ``exit_pool x exit_pool`` grid -> dropout -> linear. See the module
    docstring for why GroupNorm and why a pooling grid.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for Fashion-MNIST).
    num_classes : int
        Output classes of every exit.
    width : int
        Base width ``w``; the blocks have ``channels = (w, 2w, 2w, 4w, 4w)`` unless
        ``channels`` is given. ``w = 16`` is the default; ``w = 8`` is a CPU-friendly choice.
    channels : sequence of 5 ints, optional
        Explicit channels per block (overrides ``width``).
    strides : sequence of 5 ints
        Stride of each block's first convolution (default ``(1, 2, 1, 2, 1)``: 28 -> 14 -> 7).
    stem_stride : int
        Stride of the stem convolution (default 1; 2 halves the resolution of every block
        and cuts the FLOPs about fourfold, a CPU-friendly choice).
    exit_after : sequence of ints
        1-based blocks followed by an exit, increasing, the last one must be 5
        (default ``(1, 3, 5)``; ``(5,)`` gives the single-exit baseline).
    dropout : float
        Dropout probability in the exits (default 0.5).
    exit_pool : int
        Each exit average-pools its block's output to ``exit_pool x exit_pool`` cells
        (default 4; 1 is global average pooling). See the module docstring.

    Examples
    --------
    >>> net = MultiExitResNet(width=4)
    >>> [tuple(o.shape) for o in net.eval()(torch.zeros(2, 1, 28, 28))]
    [(2, 10), (2, 10), (2, 10)]
    >>> net.active_exits = 1
    >>> len(net(torch.zeros(2, 1, 28, 28)))
    1
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        width: int = 16,
        channels: Sequence[int] | None = None,
        strides: Sequence[int] = (1, 2, 1, 2, 1),
        stem_stride: int = 1,
        exit_after: Sequence[int] = (1, 3, 5),
        dropout: float = 0.5,
        exit_pool: int = 4,
    ) -> None:
        # One pass over the architecture: the stages, then an exit after stages 1, 3, 5.
        super().__init__()
        for name, val in (("in_channels", in_channels), ("num_classes", num_classes)):
            if int(val) != val or val < 1:
                raise ParameterError(name, val, "an integer >= 1")
        if num_classes < 2:
            raise ParameterError("num_classes", num_classes, ">= 2")
        if channels is None:
            if int(width) != width or width < 1:
                raise ParameterError("width", width, "an integer >= 1")
            channels = (width, 2 * width, 2 * width, 4 * width, 4 * width)
        channels = tuple(int(c) for c in channels)
        if len(channels) != 5 or min(channels) < 1:
            raise ParameterError("channels", channels, "5 positive integers")
        strides = tuple(int(s) for s in strides)
        if len(strides) != 5 or min(strides) < 1:
            raise ParameterError("strides", strides, "5 positive integers")
        exit_after = tuple(int(e) for e in exit_after)
        if (
            not exit_after
            or exit_after[-1] != 5
            or any(b <= a for a, b in itertools.pairwise(exit_after))
            or exit_after[0] < 1
        ):
            raise ParameterError("exit_after", exit_after, "increasing block numbers ending at 5")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError("dropout", dropout, "in [0, 1)")
        if isinstance(exit_pool, bool) or int(exit_pool) != exit_pool or exit_pool < 1:
            raise ParameterError("exit_pool", exit_pool, "an integer >= 1")
        if isinstance(stem_stride, bool) or int(stem_stride) != stem_stride or stem_stride < 1:
            raise ParameterError("stem_stride", stem_stride, "an integer >= 1")
        self.channels = channels
        self.exit_after = exit_after
        self.n_exits = len(exit_after)
        self._active_exits = self.n_exits
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, stride=int(stem_stride), padding=1, bias=False),
            nn.GroupNorm(_group_count(channels[0]), channels[0]),
            nn.ReLU(),
        )
        c_prev = channels[0]
        blocks = []
        for c, s in zip(channels, strides, strict=True):
            blocks.append(_BasicBlock(c_prev, c, s))
            c_prev = c
        self.blocks = nn.ModuleList(blocks)
        self.exits = nn.ModuleList(
            _Exit(channels[b - 1], num_classes, dropout, pool=exit_pool) for b in exit_after
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Exit logits ``(logits_1, ..., logits_k)``, shallow to deep, ``k = active_exits``."""
        h = self.stem(x)
        outs: list[torch.Tensor] = []
        last_block = self.exit_after[self._active_exits - 1]
        for b, block in enumerate(self.blocks[:last_block], start=1):
            h = block(h)
            if b in self.exit_after:
                outs.append(self.exits[self.exit_after.index(b)](h))
        return tuple(outs)

    def exit_of_parameters(self) -> dict[str, int]:
        """Map each parameter name to the (1-based) first exit that depends on it."""
        out: dict[str, int] = {}
        for name, _ in self.named_parameters():
            if name.startswith("stem."):
                out[name] = 1
            elif name.startswith("blocks."):
                block = int(name.split(".")[1]) + 1
                out[name] = next(k for k, e in enumerate(self.exit_after, 1) if e >= block)
            else:  # exits.<j>.
                out[name] = int(name.split(".")[1]) + 1
        return out


class MultiExitLSTM(MultiExitModel):
    """A stacked LSTM with one exit after each layer, written in plain tensor operations.

    Each layer is the standard LSTM cell (``nn.LSTM``'s equations and gate order i, f, g, o)
    unrolled over time with matrix products, so that ``torch.func.vmap`` can batch it; the
    parameters are named and shaped like ``nn.LSTM``'s (``weight_ih_l{k}`` [4H, in],
    ``weight_hh_l{k}`` [4H, H], ``bias_ih_l{k}``, ``bias_hh_l{k}`` [4H]). Exit ``k``:
    dropout -> linear on layer ``k``'s hidden state at the **last** time step.

    Parameters
    ----------
    input_size : int
        Features per time step (3 accelerometer axes for UniMiB-SHAR).
    num_classes : int
        Output classes (17 for UniMiB-SHAR).
    hidden_size : int
        LSTM width (default 64).
    num_layers : int
        Stacked layers (default 3).
    exit_after : sequence of int, optional
        1-based layers followed by an exit, increasing, ending at ``num_layers``; default:
        every layer. ``(num_layers,)`` gives the single-exit baseline.
    dropout : float
        Dropout probability in the exits (default 0.5).

    Examples
    --------
    >>> net = MultiExitLSTM(hidden_size=8).eval()
    >>> [tuple(o.shape) for o in net(torch.zeros(2, 151, 3))]
    [(2, 17), (2, 17), (2, 17)]
    """

    def __init__(
        self,
        input_size: int = 3,
        num_classes: int = 17,
        *,
        hidden_size: int = 64,
        num_layers: int = 3,
        exit_after: Sequence[int] | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        for name, val in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if int(val) != val or val < 1:
                raise ParameterError(name, val, "an integer >= 1")
        if int(num_classes) != num_classes or num_classes < 2:
            raise ParameterError("num_classes", num_classes, "an integer >= 2")
        if not 0.0 <= dropout < 1.0:
            raise ParameterError("dropout", dropout, "in [0, 1)")
        exits = tuple(range(1, num_layers + 1)) if exit_after is None else tuple(exit_after)
        if (
            not exits
            or exits[-1] != num_layers
            or exits[0] < 1
            or any(b <= a for a, b in itertools.pairwise(exits))
        ):
            raise ParameterError(
                "exit_after", exits, f"increasing layer numbers ending at {num_layers}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.exit_after = exits
        self.n_exits = len(exits)
        self._active_exits = self.n_exits
        bound = 1.0 / math.sqrt(hidden_size)
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            for pname, shape in (
                (f"weight_ih_l{k}", (4 * hidden_size, n_in)),
                (f"weight_hh_l{k}", (4 * hidden_size, hidden_size)),
                (f"bias_ih_l{k}", (4 * hidden_size,)),
                (f"bias_hh_l{k}", (4 * hidden_size,)),
            ):
                # nn.LSTM's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every tensor.
                p = nn.Parameter(torch.empty(shape))
                nn.init.uniform_(p, -bound, bound)
                self.register_parameter(pname, p)
        self.exits = nn.ModuleList(_Exit(hidden_size, num_classes, dropout, pool=0) for _ in exits)

    def _layer(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Run layer ``k`` over a sequence ``x`` [N, T, in]; return all hidden states [N, T, H]."""
        w_ih = getattr(self, f"weight_ih_l{k}")
        w_hh = getattr(self, f"weight_hh_l{k}")
        b = getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}")
        n, t_len, _ = x.shape
        hs = self.hidden_size
        x_proj = x @ w_ih.T + b  # [N, T, 4H]: input contributions for all steps at once
        w_hh_t = w_hh.T
        h = x.new_zeros(n, hs)
        c = x.new_zeros(n, hs)
        states = []
        for t in range(t_len):
            gates = torch.addmm(x_proj[:, t], h, w_hh_t)
            act = torch.sigmoid(gates)  # i, f, o use it; g's quarter is recomputed below
            g = torch.tanh(gates[:, 2 * hs : 3 * hs])
            c = torch.addcmul(act[:, hs : 2 * hs] * c, act[:, :hs], g)
            h = act[:, 3 * hs :] * torch.tanh(c)
            states.append(h)
        return torch.stack(states, dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Exit logits for ``x`` [N, T, F], shallow to deep, ``active_exits`` of them."""
        outs: list[torch.Tensor] = []
        h = x
        for k in range(self.exit_after[self._active_exits - 1]):
            h = self._layer(h, k)
            if k + 1 in self.exit_after:
                outs.append(self.exits[self.exit_after.index(k + 1)](h[:, -1]))
        return tuple(outs)

    def exit_of_parameters(self) -> dict[str, int]:
        """Map each parameter name to the (1-based) first exit that depends on it."""
        out: dict[str, int] = {}
        for name, _ in self.named_parameters():
            if name.startswith("exits."):
                out[name] = int(name.split(".")[1]) + 1
            else:  # weight_ih_l{k} ...
                layer = int(name.rsplit("_l", 1)[1]) + 1
                out[name] = next(j for j, e in enumerate(self.exit_after, 1) if e >= layer)
        return out


def truncated(model: MultiExitModel, active_exits: int) -> MultiExitModel:
    """A deep copy of ``model`` whose forward stops at exit ``active_exits``.

    The copy has the same parameter names and shapes (so ``functional_call`` with the full
    parameter dict works); the parameters after the exit simply receive no gradient.
    """
    out = copy.deepcopy(model)
    out.active_exits = active_exits
    return out


def exit_parameter_mask(model: MultiExitModel, max_exit: int) -> dict[str, bool]:
    """Which parameters a client limited to exit ``max_exit`` trains and uploads.

    Parameters
    ----------
    model : MultiExitResNet or MultiExitLSTM
        The architecture.
    max_exit : int
        The deepest exit the client runs (1-based).

    Returns
    -------
    dict of str to bool
        ``True`` for every parameter that some exit ``<= max_exit`` depends on.

    Examples
    --------
    >>> net = MultiExitLSTM(hidden_size=4)
    >>> m = exit_parameter_mask(net, 1)
    >>> m["weight_ih_l0"], m["weight_ih_l1"], m["exits.0.fc.weight"], m["exits.2.fc.bias"]
    (True, False, True, False)
    """
    max_exit = _check_exits("max_exit", max_exit, model.n_exits)
    return {name: k <= max_exit for name, k in model.exit_of_parameters().items()}


def exit_flops(model: MultiExitModel, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Forward FLOPs per sample needed to reach each exit, shallow to deep (cumulative).

    Counted with :func:`qfl.models.count_flops` (PyTorch's FLOP counter) on the model
    truncated at each exit: 2 FLOPs per multiply-accumulate of every convolution, linear layer
    and matrix product; element-wise operations (normalisation, activations) are not counted,
    a few percent of the total here.

    Parameters
    ----------
    model : MultiExitResNet or MultiExitLSTM
        The architecture (its parameters are not changed).
    input_shape : sequence of int
        Shape of one sample without the batch axis (``(1, 28, 28)`` or ``(151, 3)``).

    Examples
    --------
    >>> f = exit_flops(MultiExitLSTM(hidden_size=8), (151, 3))
    >>> len(f), f[0] < f[1] < f[2]
    (3, True)
    """
    from qfl.models.flops import count_flops

    shape = tuple(int(s) for s in input_shape)
    return tuple(
        count_flops(truncated(model, k).eval(), shape) for k in range(1, model.n_exits + 1)
    )


def deepest_affordable_exit(costs: Sequence[int], budget: float) -> int:
    """The deepest exit (1-based) whose cost fits in ``budget``.

    Parameters
    ----------
    costs : sequence of int
        Cumulative cost of each exit, shallow to deep (e.g. :func:`exit_flops`).
    budget : float
        What the node can afford, in the same unit (e.g. forward FLOPs per sample).

    Raises
    ------
    ParameterError
        If even the first exit costs more than ``budget``.

    Examples
    --------
    >>> deepest_affordable_exit([10, 30, 60], 45)
    2
    >>> deepest_affordable_exit([10, 30, 60], 1e9)
    3
    """
    costs = list(costs)
    if not costs or any(b < a for a, b in itertools.pairwise(costs)):
        raise ParameterError("costs", costs, "a non-empty non-decreasing sequence")
    if budget < costs[0]:
        raise ParameterError("budget", budget, f">= {costs[0]} (the cost of the first exit)")
    return max(k for k, c in enumerate(costs, start=1) if c <= budget)


def reinitialize(model: M, seed: int | torch.Generator) -> M:
    """Redraw ``model``'s parameters in place from an explicit seed; return ``model``.

    Uses PyTorch's default distributions, drawn from a private ``torch.Generator`` instead of
    the global one: convolution and linear weights and biases ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` (what ``kaiming_uniform_(a=sqrt(5))`` gives), GroupNorm weight 1 and
    bias 0, and every LSTM tensor ``U(-1/sqrt(H), 1/sqrt(H))``. Same seed, same parameters.

    Examples
    --------
    >>> a = reinitialize(MultiExitLSTM(hidden_size=4), 7)
    >>> b = reinitialize(MultiExitLSTM(hidden_size=4), 7)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    if isinstance(seed, torch.Generator):
        gen = seed
    else:
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ParameterError("seed", seed, "an int >= 0 or a torch.Generator")
        gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                module.weight.uniform_(-bound, bound, generator=gen)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=gen)
            elif isinstance(module, nn.GroupNorm) and module.affine:
                module.weight.fill_(1.0)
                module.bias.fill_(0.0)
            elif isinstance(module, MultiExitLSTM):
                bound = 1.0 / math.sqrt(module.hidden_size)
                for p in module.parameters(recurse=False):
                    p.uniform_(-bound, bound, generator=gen)
    return model
