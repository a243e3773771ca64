"""Batched inference of many clients' models: accuracy on a shared or on per-client data."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from qfl.engine import stacked_cnn
from qfl.engine.base import resolve_device
from qfl.engine.batcher import SupervisedData, _data_xy
from qfl.engine.stack import Tree, index_tree, n_clients
from qkd.errors import ParameterError, QflError

__all__ = ["default_logits", "evaluate"]

LogitsOf = Callable[[Any], torch.Tensor | Sequence[torch.Tensor]]


def default_logits(outputs: Any) -> torch.Tensor | list[torch.Tensor]:
    """The logits in a model's output.

    - a tensor: the logits;
    - ``(logits, feats)`` with ``feats`` a tuple or list (``qfl.models.FeatureCNN``):
      ``logits``;
    - a tuple or list of tensors (a multi-exit model): one logits tensor per exit.

    Examples
    --------
    >>> z = torch.zeros(2, 3)
    >>> default_logits((z, (z, z))) is z, len(default_logits((z, z, z)))
    (True, 3)
    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, tuple | list) and outputs and isinstance(outputs[0], torch.Tensor):
        if len(outputs) == 2 and isinstance(outputs[1], tuple | list):
            return outputs[0]
        if all(isinstance(o, torch.Tensor) for o in outputs):
            return list(outputs)
    raise QflError(
        f"cannot find the logits in a model output of type {type(outputs).__name__}; "
        "pass logits_of=... to evaluate"
    )


def _is_single(datasets: Any) -> bool:
    if isinstance(datasets, tuple) and len(datasets) == 2 and isinstance(datasets[0], torch.Tensor):
        return True
    return hasattr(datasets, "x") and hasattr(datasets, "y")


def _count_correct(
    logits: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """Correct predictions per client ``[G]`` (or ``[G, n_exits]``)."""
    per_exit = [logits] if isinstance(logits, torch.Tensor) else list(logits)
    counts = []
    for z in per_exit:
        hit = z.argmax(dim=-1) == y
        if valid is not None:
            hit = hit & valid
        counts.append(hit.sum(dim=-1))
    out = torch.stack(counts, dim=-1)
    return out[:, 0] if isinstance(logits, torch.Tensor) else out


def evaluate(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    datasets: SupervisedData | tuple[torch.Tensor, torch.Tensor] | Sequence[Any],
    *,
    batch_size: int = 256,
    chunk_size: int | None = None,
    buffers: Mapping[str, torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    logits_of: LogitsOf = default_logits,
    fused: bool | None = None,
) -> torch.Tensor:
    """Accuracy of every client's model, computed for all clients at once (eval mode).

    Parameters
    ----------
    model : torch.nn.Module
        The architecture (its weights are not used; put in eval mode on a private copy, so
        dropout is off).
    params : mapping of str to torch.Tensor
        Stacked parameters ``[n_clients, ...]``.
    datasets : dataset or sequence of datasets
        One dataset (``x``, ``y``, e.g. the test set): every client is evaluated on it
        (global accuracy). A sequence of ``n_clients`` datasets: client ``i`` on its own
        (local accuracy, e.g. its held-out split); sizes may differ.
    batch_size : int
        Samples per client per forward pass.
    chunk_size : int or None
        Clients per forward pass (``None``: all); with ``batch_size`` it bounds memory.
    buffers : mapping of str to torch.Tensor, optional
        Stacked per-client buffers; by default the model's own buffers are shared.
    device : torch.device or str or None
        Where to compute (default: the parameters' device).
    logits_of : callable
        Extracts the logits (or a list of per-exit logits) from the model's output; see
        :func:`default_logits`.
    fused : bool or None
        For a ``FeatureCNN`` on a CPU: the stacked forward of :mod:`qfl.engine.stacked_cnn`
        instead of ``vmap`` (same predictions, several times faster). ``None``: where it
        applies and the kernels are built; ``False``: never.

    Returns
    -------
    torch.Tensor
        float64 on CPU: ``[n_clients]`` accuracies in ``[0, 1]``, or ``[n_clients, n_exits]``
        for multi-exit outputs; ``nan`` for a client with an empty dataset.

    Notes
    -----
    Per-client sets of different sizes are evaluated in lockstep, the shorter ones padded
    with their own samples and the padding masked out of the counts. This is exact because
    in eval mode a sample's prediction must not depend on its batch (no batch-statistics
    normalisation; the engine's models use GroupNorm).

    Kept as one function: argument checks, the choice of forward (fused or vmap) and the
    chunked lockstep loop share the same locals; split, each part would take most of them
    as arguments.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError("batch_size", batch_size, "an integer >= 1")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ParameterError("chunk_size", chunk_size, "None or an integer >= 1")
    names = {n for n, _ in model.named_parameters()}
    if set(params) != names:
        raise ParameterError("params", sorted(set(params) ^ names), "the model's parameter names")
    c = n_clients(params)
    dev = resolve_device(device, next(iter(params.values())).device)
    shared_b: Tree = {n: b.detach().to(dev) for n, b in model.named_buffers()}
    cbuf: Tree = {}
    if buffers is not None:
        if buffers and n_clients(buffers, "buffers") != c:
            raise ParameterError("buffers", "another client count", f"{c} clients")
        cbuf = {k: v.to(dev) for k, v in buffers.items()}
        shared_b = {k: v for k, v in shared_b.items() if k not in cbuf}
    template = copy.deepcopy(model).eval()

    def forward(p: Tree, cb: Tree, sb: Tree, x: torch.Tensor) -> Any:
        return functional_call(template, sb | cb | p, (x,))

    single = _is_single(datasets)
    if (
        fused is not False
        and stacked_cnn.supports(model)
        and all(v.dtype == torch.float32 for v in params.values())
        and not cbuf
        and not shared_b
        and stacked_cnn.runnable_on(dev)
    ):

        def fwd(p: Tree, cb: Tree, sb: Tree, x: torch.Tensor) -> Any:
            x = x.to(torch.float32)
            if single:
                x = x.unsqueeze(0).expand(n_clients(p), *x.shape)
            return stacked_cnn.stacked_forward(p, x)

    else:
        fwd = vmap(forward, in_dims=(0, 0, None, None if single else 0), randomness="error")

    pdev = {k: v.to(dev) for k, v in params.items()}
    cs = chunk_size or c
    chunks: list[tuple[slice, Tree, Tree]] = [
        (
            slice(a, min(a + cs, c)),
            index_tree(pdev, slice(a, min(a + cs, c))),
            index_tree(cbuf, slice(a, min(a + cs, c))),
        )
        for a in range(0, c, cs)
    ]
    correct: list[torch.Tensor] = []
    with torch.no_grad():
        if single:
            x_all, y_all = _data_xy(datasets, 0)
            n = int(x_all.shape[0])
            for _sl, p, cb in chunks:
                acc = None
                for s in range(0, n, batch_size):
                    x = x_all[s : s + batch_size].to(dev)
                    y = y_all[s : s + batch_size].to(dev)
                    hits = _count_correct(logits_of(fwd(p, cb, shared_b, x)), y, None)
                    acc = hits if acc is None else acc + hits
                correct.append(
                    acc if acc is not None else torch.zeros(_sl.stop - _sl.start, device=dev)
                )
            sizes = torch.full((c,), n, dtype=torch.float64)
        else:
            seq = list(datasets)  # type: ignore[arg-type]
            if len(seq) != c:
                raise ParameterError(
                    "datasets",
                    f"{len(seq)} datasets",
                    f"one per client ({c}) or one shared dataset",
                )
            pairs = [_data_xy(d, i) for i, d in enumerate(seq)]
            sizes = torch.tensor([int(x.shape[0]) for x, _ in pairs], dtype=torch.float64)
            for sl, p, cb in chunks:
                part = pairs[sl]
                n_max = max(int(x.shape[0]) for x, _ in part)
                acc = None
                for s in range(0, n_max, batch_size):
                    xs, ys, vs = [], [], []
                    for x_i, y_i in part:
                        n_i = int(x_i.shape[0])
                        pos = torch.arange(s, min(s + batch_size, n_max))
                        rows = pos % max(n_i, 1)
                        if n_i == 0:
                            xs.append(torch.zeros((len(pos), *x_i.shape[1:]), dtype=x_i.dtype))
                            ys.append(torch.zeros((len(pos), *y_i.shape[1:]), dtype=y_i.dtype))
                        else:
                            xs.append(x_i[rows])
                            ys.append(y_i[rows])
                        vs.append(pos < n_i)
                    x = torch.stack(xs).to(dev)
                    y = torch.stack(ys).to(dev)
                    hits = _count_correct(
                        logits_of(fwd(p, cb, shared_b, x)), y, torch.stack(vs).to(dev)
                    )
                    acc = hits if acc is None else acc + hits
                correct.append(
                    acc if acc is not None else torch.zeros(sl.stop - sl.start, device=dev)
                )
    counts = torch.cat(correct).to("cpu", torch.float64)
    shape = (c,) + (1,) * (counts.ndim - 1)
    return counts / sizes.reshape(shape)
