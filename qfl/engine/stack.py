"""Parameter trees with a leading client axis: stack models, take one client, load it back.

A *parameter tree* here is a ``dict[str, torch.Tensor]`` keyed by the names of
``nn.Module.named_parameters()`` (or ``named_buffers()``). A *stacked* tree has one more,
leading axis: entry ``i`` along it belongs to client ``i``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from qkd.errors import ParameterError

__all__ = [
    "Tree",
    "clone_tree",
    "index_tree",
    "load_into",
    "n_clients",
    "stack_models",
    "stack_trees",
    "unstack",
]

Tree = dict[str, torch.Tensor]


def stack_models(models: Sequence[nn.Module]) -> tuple[Tree, Tree]:
    """Stack the parameters and buffers of same-architecture models along a new axis 0.

    Parameters
    ----------
    models : sequence of torch.nn.Module
        One model per client, all with the same parameter names and shapes.

    Returns
    -------
    params, buffers : dict of str to torch.Tensor
        Detached tensors ``[n_clients, *shape]``.

    Examples
    --------
    >>> params, _ = stack_models([nn.Linear(3, 2), nn.Linear(3, 2)])
    >>> tuple(params["weight"].shape)
    (2, 2, 3)
    """
    if len(models) == 0:
        raise ParameterError("models", "[]", "a non-empty sequence of modules")
    trees_p = [{k: v.detach() for k, v in m.named_parameters()} for m in models]
    trees_b = [{k: v.detach() for k, v in m.named_buffers()} for m in models]
    return stack_trees(trees_p, "models"), stack_trees(trees_b, "models")


def stack_trees(trees: Sequence[Mapping[str, torch.Tensor]], name: str = "trees") -> Tree:
    """Stack per-client trees with identical names and shapes into one stacked tree.

    Parameters
    ----------
    trees : sequence of mapping
        One tree per client.
    name : str
        Argument name used in error messages.

    Returns
    -------
    dict of str to torch.Tensor
        ``[len(trees), *shape]`` per name.
    """
    if len(trees) == 0:
        raise ParameterError(name, "[]", "a non-empty sequence")
    first = trees[0]
    for i, tree in enumerate(trees[1:], start=1):
        if set(tree) != set(first):
            raise ParameterError(
                f"{name}[{i}]", sorted(set(tree) ^ set(first)), "the same names as entry 0"
            )
        for k, v in tree.items():
            if v.shape != first[k].shape or v.dtype != first[k].dtype:
                raise ParameterError(
                    f"{name}[{i}].{k}",
                    f"{tuple(v.shape)} {v.dtype}",
                    f"{tuple(first[k].shape)} {first[k].dtype} (as entry 0)",
                )
    return {k: torch.stack([t[k] for t in trees]) for k in first}


def n_clients(tree: Mapping[str, torch.Tensor], name: str = "params") -> int:
    """Length of the leading client axis of a stacked tree (checked equal for all entries)."""
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in tree.items()}
    values = set(sizes.values())
    if len(values) != 1 or None in values:
        raise ParameterError(name, sizes, "tensors with one common leading client axis")
    return int(values.pop())  # type: ignore[arg-type]


def unstack(params: Mapping[str, torch.Tensor], i: int) -> Tree:
    """Client ``i``'s tree: entry ``i`` of the leading axis of each tensor (a view).

    Parameters
    ----------
    params : mapping of str to torch.Tensor
        A stacked tree.
    i : int
        Client index (negative counts from the end).

    Returns
    -------
    dict of str to torch.Tensor
        Views ``params[k][i]``.
    """
    c = n_clients(params)
    if not -c <= i < c:
        raise ParameterError("i", i, f"in [{-c}, {c})")
    return {k: v[i] for k, v in params.items()}


def index_tree(tree: Mapping[str, torch.Tensor], clients: torch.Tensor | slice) -> Tree:
    """The entries of ``clients`` along the leading axis (a view for a slice)."""
    if isinstance(clients, slice):
        return {k: v[clients] for k, v in tree.items()}
    return {k: v.index_select(0, clients.to(v.device)) for k, v in tree.items()}


def clone_tree(tree: Mapping[str, torch.Tensor], device: torch.device | None = None) -> Tree:
    """Detached copies (moved to ``device`` if given) that own their memory."""
    out = {}
    for k, v in tree.items():
        w = v.detach()
        out[k] = w.to(device, copy=True) if device is not None else w.clone()
    return out


def load_into(
    model: nn.Module, params_i: Mapping[str, torch.Tensor], *, strict: bool = True
) -> None:
    """Copy one client's parameters (and/or buffers) into ``model`` in place.

    Parameters
    ----------
    model : torch.nn.Module
        Destination; its tensors keep their device and dtype.
    params_i : mapping of str to torch.Tensor
        Unstacked tensors keyed by parameter or buffer name.
    strict : bool
        If true, every parameter of ``model`` must be given.
    """
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    unknown = sorted(set(params_i) - set(own))
    if unknown:
        raise ParameterError("params_i", unknown, f"names of the model's tensors {sorted(own)}")
    if strict:
        missing = sorted(set(dict(model.named_parameters())) - set(params_i))
        if missing:
            raise ParameterError("params_i", f"missing {missing}", "every parameter of the model")
    with torch.no_grad():
        for k, v in params_i.items():
            if own[k].shape != v.shape:
                raise ParameterError(
                    f"params_i.{k}.shape", tuple(v.shape), f"{tuple(own[k].shape)}"
                )
            own[k].copy_(v)
