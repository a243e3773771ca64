"""Functional optimizers over (stacked) parameter trees, in the style of optax.

An optimizer is a frozen dataclass of hyperparameters with two pure methods::

    state = opt.init(params, batch_ndim=1)          # one state per client
    params, state = opt.update(params, grads, state, mask=None)

``params``, ``grads`` are ``dict[str, Tensor]``; with ``batch_ndim=1`` every tensor carries
a leading client axis and each client gets its own optimizer state (momentum buffers, Adam
moments and step counters). The arithmetic is that of ``torch.optim.SGD`` / ``torch.optim.Adam``
(single-tensor implementation) operation for operation, so a per-client loop with torch's
optimizers gives the same numbers up to float rounding; :meth:`torch_optimizer`,
:meth:`to_torch_state` and :meth:`from_torch_state` bridge to that loop.

``mask`` (optional) freezes tensors exactly: where it is ``False`` the parameter *and* its
optimizer state (momentum, moments, Adam's step count) are left unchanged, which is what
``torch.optim`` does for a parameter whose ``grad`` is ``None``. A mask entry has a shape
that is a prefix of the parameter's shape: ``[]`` (whole tensor) or ``[n_clients]`` (per
client, per tensor — e.g. the clients whose epoch is over, or multi-exit partial training);
for SGD it may go down to single elements.

State layout: ``dict[slot, dict[name, Tensor]]`` with slots ``"momentum"`` (SGD, when
``momentum > 0``) and ``"step"``, ``"exp_avg"``, ``"exp_avg_sq"`` (Adam; ``step`` is float32
with shape ``[*batch, 1, ..., 1]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from qkd.errors import ParameterError

__all__ = [
    "SGD",
    "Adam",
    "FunctionalOptimizer",
    "Mask",
    "OptState",
    "adam",
    "sgd",
]

Tree = dict[str, torch.Tensor]
OptState = dict[str, Tree]
Mask = Mapping[str, torch.Tensor | bool] | torch.Tensor | None


@runtime_checkable
class FunctionalOptimizer(Protocol):
    """What the trainers need from an optimizer (see :class:`SGD`, :class:`Adam`)."""

    def init(self, params: Mapping[str, torch.Tensor], *, batch_ndim: int = 0) -> OptState:
        """Fresh state for ``params`` (whose first ``batch_ndim`` axes are batch axes)."""
        ...

    def update(
        self,
        params: Mapping[str, torch.Tensor],
        grads: Mapping[str, torch.Tensor],
        state: OptState,
        mask: Mask = None,
    ) -> tuple[Tree, OptState]:
        """One step: new parameters and state (inputs are not modified)."""
        ...

    def torch_optimizer(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """The equivalent ``torch.optim`` optimizer over ``params``."""
        ...

    def to_torch_state(self, slots: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """One tensor's state (``{slot: tensor}``, no batch axis) as torch.optim stores it."""
        ...

    def from_torch_state(
        self, torch_state: Mapping[str, Any], like: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`to_torch_state`; ``like`` gives shapes and the value to keep
        when torch holds no state yet."""
        ...


def _check_number(
    name: str, value: float, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = True
) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ParameterError(name, value, f"a number in {left}{lo}, {hi}{right}")
    return float(value)


def _check_batch_ndim(batch_ndim: int, params: Mapping[str, torch.Tensor]) -> None:
    if isinstance(batch_ndim, bool) or not isinstance(batch_ndim, int) or batch_ndim < 0:
        raise ParameterError("batch_ndim", batch_ndim, "an integer >= 0")
    for k, v in params.items():
        if v.ndim < batch_ndim:
            raise ParameterError(f"params.{k}.ndim", v.ndim, f">= batch_ndim = {batch_ndim}")


def _masks(mask: Mask, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-name boolean masks reshaped to broadcast against the parameter (True = update)."""
    if mask is None:
        return {}
    if isinstance(mask, torch.Tensor):
        items: dict[str, torch.Tensor | bool] = dict.fromkeys(params, mask)
    else:
        unknown = sorted(set(mask) - set(params))
        if unknown:
            raise ParameterError("mask", unknown, f"names among the parameters {sorted(params)}")
        items = dict(mask)
    out = {}
    for k, m in items.items():
        p = params[k]
        mt = torch.as_tensor(m, device=p.device)
        if mt.dtype != torch.bool:
            raise ParameterError(f"mask.{k}.dtype", mt.dtype, "torch.bool")
        if mt.ndim > p.ndim or tuple(mt.shape) != tuple(p.shape[: mt.ndim]):
            raise ParameterError(
                f"mask.{k}.shape",
                tuple(mt.shape),
                f"a prefix of the parameter shape {tuple(p.shape)}",
            )
        if mt.ndim == 0 and bool(mt):
            continue  # all true: nothing to mask
        out[k] = mt.reshape(tuple(mt.shape) + (1,) * (p.ndim - mt.ndim))
    return out


def _where(masks: Mapping[str, torch.Tensor], new: Tree, old: Mapping[str, torch.Tensor]) -> Tree:
    return {k: (torch.where(masks[k], v, old[k]) if k in masks else v) for k, v in new.items()}


def _check_tree(name: str, tree: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> None:
    if set(tree) != set(params):
        raise ParameterError(name, sorted(set(tree) ^ set(params)), "the parameter names, exactly")


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with momentum, weight decay and Nesterov momentum.

    Same update as ``torch.optim.SGD`` with ``dampening=0``::

        g = grad + weight_decay * p
        buf = momentum * buf + g          (buf starts at zero, so the first buf is g)
        d = g + momentum * buf if nesterov else buf      (d = g if momentum == 0)
        p = p - lr * d

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    momentum : float
        In ``[0, 1)``.
    weight_decay : float
        L2 penalty coefficient, >= 0.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0``).
    """

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        _check_number("lr", self.lr, 0.0, math.inf, lo_open=True)
        _check_number("momentum", self.momentum, 0.0, 1.0)
        _check_number("weight_decay", self.weight_decay, 0.0, math.inf)
        if self.nesterov and self.momentum == 0.0:
            raise ParameterError("nesterov", self.nesterov, "False when momentum == 0")

    def init(self, params: Mapping[str, torch.Tensor], *, batch_ndim: int = 0) -> OptState:
        """Zero momentum buffers (no state at all when ``momentum == 0``).

        Parameters
        ----------
        params : mapping of str to torch.Tensor
            Parameters, possibly stacked.
        batch_ndim : int
            Number of leading batch (client) axes; SGD's state does not depend on it.

        Returns
        -------
        dict
            ``{"momentum": {name: zeros}}`` or ``{}``.
        """
        _check_batch_ndim(batch_ndim, params)
        if self.momentum == 0.0:
            return {}
        return {"momentum": {k: torch.zeros_like(v) for k, v in params.items()}}

    def update(
        self,
        params: Mapping[str, torch.Tensor],
        grads: Mapping[str, torch.Tensor],
        state: OptState,
        mask: Mask = None,
    ) -> tuple[Tree, OptState]:
        """One SGD step; see the class docstring for the formula and ``mask`` in the module's.

        Parameters
        ----------
        params, grads : mapping of str to torch.Tensor
            Same names and shapes.
        state : dict
            From :meth:`init` or a previous :meth:`update`.
        mask : mapping of str to bool tensor, bool tensor or None
            Where ``False``, the parameter and its state stay as they are.

        Returns
        -------
        params, state
            New trees; the inputs are not modified.
        """
        _check_tree("grads", grads, params)
        names = list(params)
        masks = _masks(mask, params)
        p = [params[k] for k in names]
        g = [grads[k] for k in names]
        if self.weight_decay != 0.0:
            g = list(torch._foreach_add(g, p, alpha=self.weight_decay))
        new_state: OptState = {}
        if self.momentum != 0.0:
            if "momentum" not in state:
                raise ParameterError("state", sorted(state), "a state with a 'momentum' slot")
            old = state["momentum"]
            _check_tree("state['momentum']", old, params)
            buf = list(torch._foreach_mul([old[k] for k in names], self.momentum))
            torch._foreach_add_(buf, g)
            d = list(torch._foreach_add(g, buf, alpha=self.momentum)) if self.nesterov else buf
            new_state["momentum"] = _where(masks, dict(zip(names, buf, strict=True)), old)
        else:
            d = g
        new_p = list(torch._foreach_add(p, d, alpha=-self.lr))
        return _where(masks, dict(zip(names, new_p, strict=True)), params), new_state

    def torch_optimizer(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """``torch.optim.SGD`` with these hyperparameters (single-tensor implementation)."""
        return torch.optim.SGD(
            list(params),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
            foreach=False,
        )

    def to_torch_state(self, slots: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """``{"momentum_buffer": buf}`` (a copy), or ``{}`` without momentum."""
        if self.momentum == 0.0:
            return {}
        return {"momentum_buffer": slots["momentum"].detach().clone()}

    def from_torch_state(
        self, torch_state: Mapping[str, Any], like: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Momentum buffer from torch's state (``like`` when torch has none yet)."""
        if self.momentum == 0.0:
            return {}
        buf = torch_state.get("momentum_buffer")
        return {"momentum": (like["momentum"] if buf is None else buf.detach().clone())}


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015) with L2 weight decay, as ``torch.optim.Adam`` (no amsgrad).

    Per tensor, with its own step count ``t``::

        t = t + 1;  g = grad + weight_decay * p
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        p = p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    betas : tuple of float
        ``(beta1, beta2)``, each in ``[0, 1)``.
    eps : float
        >= 0.
    weight_decay : float
        L2 penalty added to the gradient (not decoupled), >= 0.

    Notes
    -----
    The bias corrections are computed in float64 from the per-client step counts and cast to
    the parameters' dtype, as torch does with Python floats.
    """

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_number("lr", self.lr, 0.0, math.inf, lo_open=True)
        if not isinstance(self.betas, tuple | list) or len(self.betas) != 2:
            raise ParameterError("betas", self.betas, "a pair (beta1, beta2)")
        _check_number("betas[0]", self.betas[0], 0.0, 1.0)
        _check_number("betas[1]", self.betas[1], 0.0, 1.0)
        _check_number("eps", self.eps, 0.0, math.inf)
        _check_number("weight_decay", self.weight_decay, 0.0, math.inf)
        object.__setattr__(self, "betas", (float(self.betas[0]), float(self.betas[1])))

    def init(self, params: Mapping[str, torch.Tensor], *, batch_ndim: int = 0) -> OptState:
        """Zero moments and step counts (one count per tensor and per batch entry).

        Parameters
        ----------
        params : mapping of str to torch.Tensor
            Parameters, possibly stacked.
        batch_ndim : int
            Number of leading batch (client) axes: the step counts have shape
            ``[*shape[:batch_ndim], 1, ..., 1]``.

        Returns
        -------
        dict
            ``{"step": ..., "exp_avg": ..., "exp_avg_sq": ...}``.
        """
        _check_batch_ndim(batch_ndim, params)
        step = {
            k: torch.zeros(
                tuple(v.shape[:batch_ndim]) + (1,) * (v.ndim - batch_ndim),
                dtype=torch.float32,
                device=v.device,
            )
            for k, v in params.items()
        }
        return {
            "step": step,
            "exp_avg": {k: torch.zeros_like(v) for k, v in params.items()},
            "exp_avg_sq": {k: torch.zeros_like(v) for k, v in params.items()},
        }

    def update(
        self,
        params: Mapping[str, torch.Tensor],
        grads: Mapping[str, torch.Tensor],
        state: OptState,
        mask: Mask = None,
    ) -> tuple[Tree, OptState]:
        """One Adam step; see the class docstring and ``mask`` in the module docstring.

        Parameters
        ----------
        params, grads : mapping of str to torch.Tensor
            Same names and shapes.
        state : dict
            From :meth:`init` or a previous :meth:`update`.
        mask : mapping of str to bool tensor, bool tensor or None
            Where ``False``, the parameter, its moments and its step count stay as they are.
            Entries must broadcast to the step counts (whole tensor or per client).

        Returns
        -------
        params, state
            New trees; the inputs are not modified.
        """
        _check_tree("grads", grads, params)
        for slot in ("step", "exp_avg", "exp_avg_sq"):
            if slot not in state:
                raise ParameterError(
                    "state", sorted(state), "an Adam state (step, exp_avg, exp_avg_sq)"
                )
            _check_tree(f"state[{slot!r}]", state[slot], params)
        masks = _masks(mask, params)
        beta1, beta2 = self.betas
        new_p: Tree = {}
        new_s: OptState = {"step": {}, "exp_avg": {}, "exp_avg_sq": {}}
        for k, p in params.items():
            g = grads[k]
            step = state["step"][k] + 1.0
            if k in masks and torch.broadcast_shapes(masks[k].shape, step.shape) != step.shape:
                raise ParameterError(
                    f"mask.{k}.shape",
                    tuple(masks[k].shape),
                    f"broadcastable to {tuple(step.shape)}",
                )
            if self.weight_decay != 0.0:
                g = g.add(p, alpha=self.weight_decay)
            m = state["exp_avg"][k].lerp(g, 1.0 - beta1)
            v = state["exp_avg_sq"][k].mul(beta2).addcmul(g, g, value=1.0 - beta2)
            t = step.to(torch.float64)
            bc1 = 1.0 - torch.pow(beta1, t)
            bc2_sqrt = torch.sqrt(1.0 - torch.pow(beta2, t))
            neg_step_size = (-self.lr / bc1).to(p.dtype)
            denom = (v.sqrt() / bc2_sqrt.to(p.dtype)).add(self.eps)
            p_new = p + (neg_step_size * m) / denom
            if k in masks:
                mk = masks[k]
                p_new = torch.where(mk, p_new, p)
                step = torch.where(mk, step, state["step"][k])
                m = torch.where(mk, m, state["exp_avg"][k])
                v = torch.where(mk, v, state["exp_avg_sq"][k])
            new_p[k] = p_new
            new_s["step"][k] = step
            new_s["exp_avg"][k] = m
            new_s["exp_avg_sq"][k] = v
        return new_p, new_s

    def torch_optimizer(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """``torch.optim.Adam`` with these hyperparameters (single-tensor implementation)."""
        return torch.optim.Adam(
            list(params),
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            foreach=False,
        )

    def to_torch_state(self, slots: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """``{"step", "exp_avg", "exp_avg_sq"}`` as torch.optim.Adam stores them."""
        return {
            "step": slots["step"].detach().reshape(()).clone(),
            "exp_avg": slots["exp_avg"].detach().clone(),
            "exp_avg_sq": slots["exp_avg_sq"].detach().clone(),
        }

    def from_torch_state(
        self, torch_state: Mapping[str, Any], like: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Moments and step count from torch's state (``like`` when torch has none yet)."""
        if "step" not in torch_state:
            return dict(like)
        step = torch.as_tensor(torch_state["step"], dtype=torch.float32)
        return {
            "step": step.reshape(like["step"].shape).to(like["step"].device).clone(),
            "exp_avg": torch_state["exp_avg"].detach().clone(),
            "exp_avg_sq": torch_state["exp_avg_sq"].detach().clone(),
        }


def sgd(lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> SGD:
    """Functional SGD (see :class:`SGD`).

    Examples
    --------
    >>> opt, w = sgd(0.1), {"w": torch.ones(2)}
    >>> p, _ = opt.update(w, {"w": torch.ones(2)}, opt.init(w))
    >>> p["w"].tolist()
    [0.8999999761581421, 0.8999999761581421]
    """
    return SGD(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def adam(
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> Adam:
    """Functional Adam (see :class:`Adam`).

    Examples
    --------
    >>> opt, w = adam(0.1), {"w": torch.zeros(1)}
    >>> p, s = opt.update(w, {"w": torch.ones(1)}, opt.init(w))
    >>> round(p["w"].item(), 4), s["step"]["w"].item()
    (-0.1, 1.0)
    """
    return Adam(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
