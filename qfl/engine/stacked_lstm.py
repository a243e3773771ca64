"""The multi-exit LSTM evaluated for many clients at once.

``vmap`` over :class:`qfl.models.MultiExitLSTM` runs the same unrolled cell as the model, one
time step after another, with a batched matrix product per step; but the model reads step
``t`` of the input projection as ``x_proj[:, t]``, whose gradient autograd forms as a
zero tensor of the whole projection's size, once per step (quadratic in the sequence length,
and under ``vmap`` for every client at once: gigabytes for 24 clients). This module keeps
the model's cell equations and gate order (i, f, g, o) but

- stacks the clients on a leading axis and does every matrix product as one batched product
  over the clients (``torch.baddbmm`` with each client's weights);
- splits the input projection into its time steps once (``unbind``, whose gradient is one
  stack), so the backward pass is linear in the sequence length;
- applies each exit's dropout from the clients' keys (as
  :class:`qfl.engine.random.KeyedDropout` draws it) and its linear layer as one batched
  product.

The outputs equal the model's own forward up to float rounding, so the gradients that
autograd takes through them match too. It is used by :class:`qfl.engine.BatchedTrainer` on
a CPU (the ``fused`` route).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from qfl.engine.random import dropout_linear
from qfl.models.multiexit import MultiExitLSTM

__all__ = ["stacked_forward", "supports"]


def supports(model: nn.Module) -> bool:
    """Whether :func:`stacked_forward` implements ``model`` (a ``MultiExitLSTM``, possibly
    truncated)."""
    return type(model) is MultiExitLSTM


def _layer(x: torch.Tensor, params: Mapping[str, torch.Tensor], k: int, hs: int) -> torch.Tensor:
    """Layer ``k`` over ``x [C, N, T, in]`` for every client: all hidden states
    ``[C, N, T, H]``."""
    c, n, t_len, n_in = x.shape
    w_ih, w_hh = params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"]
    b = params[f"bias_ih_l{k}"] + params[f"bias_hh_l{k}"]
    x_proj = torch.baddbmm(b.unsqueeze(1), x.reshape(c, n * t_len, n_in), w_ih.transpose(1, 2))
    steps = x_proj.view(c, n, t_len, 4 * hs).unbind(2)
    w_hh_t = w_hh.transpose(1, 2)
    h = x.new_zeros(c, n, hs)
    cell = x.new_zeros(c, n, hs)
    states = []
    for xp in steps:
        gates = torch.baddbmm(xp, h, w_hh_t)
        act = torch.sigmoid(gates)
        g = torch.tanh(gates[..., 2 * hs : 3 * hs])
        cell = torch.addcmul(act[..., hs : 2 * hs] * cell, act[..., :hs], g)
        h = act[..., 3 * hs :] * torch.tanh(cell)
        states.append(h)
    return torch.stack(states, dim=2)


def stacked_forward(
    model: MultiExitLSTM,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    dropout_keys: Mapping[str, torch.Tensor] | None = None,
    *,
    training: bool = True,
) -> tuple[torch.Tensor, ...]:
    """``model``'s forward (its truncation included) for every client on its own batch.

    Parameters
    ----------
    model : MultiExitLSTM
        The architecture (its own parameters are not used; its ``active_exits`` is).
    params : mapping of str to torch.Tensor
        Stacked parameters ``[C, ...]``.
    x : torch.Tensor
        ``[C, N, T, features]``.
    dropout_keys : mapping of str to torch.Tensor, optional
        ``{"<dropout module>.key": keys [C]}``; without them, or with ``training=False``,
        dropout is the identity.
    training : bool
        Dropout on (the trainer's model) or off (eval mode).

    Returns
    -------
    tuple of torch.Tensor
        One ``[C, N, classes]`` logits tensor per computed exit, shallow to deep.
    """
    outs: list[torch.Tensor] = []
    h = x
    for k in range(model.exit_after[model.active_exits - 1]):
        h = _layer(h, params, k, model.hidden_size)
        if k + 1 in model.exit_after:
            j = model.exit_after.index(k + 1)
            ex = model.exits[j]
            key = None if dropout_keys is None else dropout_keys.get(f"exits.{j}.dropout.key")
            p = float(getattr(ex.dropout, "p", 0.0))
            w, b = params[f"exits.{j}.fc.weight"], params[f"exits.{j}.fc.bias"]
            outs.append(dropout_linear(h[:, :, -1], p, key, w, b, training=training))
    return tuple(outs)
