"""The reference: a plain per-client loop with ``nn.Module``, autograd and ``torch.optim``.

It has the interface of :class:`qfl.engine.BatchedTrainer` and shares with it only the data
plan (:class:`qfl.engine.ClientBatcher`: which samples, in which order, with which step keys)
and the hyperparameters; the forward pass, the gradients (``loss.backward()``) and the
optimizer step (``torch.optim.SGD`` / ``Adam``) are torch's ordinary ones. The tests hold
the two trainers equal, which checks the vectorized engine against an independent
implementation. It is also the fallback for models that ``vmap`` cannot batch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from qfl.engine.base import TrainerBase, TrainStats
from qfl.engine.batcher import Seed, SupervisedData
from qfl.engine.optim import OptState
from qfl.engine.stack import Tree, load_into

__all__ = ["SequentialTrainer"]

_RESERVED = ("x", "y", "teacher_outputs")


class SequentialTrainer(TrainerBase):
    """Per-client reference trainer (same constructor and methods as ``BatchedTrainer``).

    Parameters
    ----------
    model, loss_fn, optimizer, batch_size, drop_last, device, loss_of
        As for :class:`qfl.engine.BatchedTrainer`.
    chunk_size : int or None
        Accepted for interface compatibility and ignored (one client at a time).
    """

    def train_epochs(
        self,
        params: Mapping[str, torch.Tensor],
        opt_state: OptState,
        datasets: Sequence[SupervisedData | tuple[torch.Tensor, torch.Tensor]],
        epochs: int,
        *,
        seed: Seed,
        teacher_params: Mapping[str, torch.Tensor] | None = None,
        param_mask: Mapping[str, Any] | None = None,
        client_inputs: Mapping[str, torch.Tensor] | None = None,
        buffers: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[Tree, OptState, TrainStats]:
        """Train each client in turn; arguments and results as
        :meth:`qfl.engine.BatchedTrainer.train_epochs`.

        Kept as one function: it is the reference loop the batched engine is tested
        against, and reads best top to bottom.
        """
        run = self._prepare(
            params,
            opt_state,
            datasets,
            epochs,
            seed,
            teacher_params,
            param_mask,
            client_inputs,
            buffers,
        )
        c, dev, batcher = run["c"], run["device"], run["batcher"]
        out_p: Tree = run["params"]
        out_s: OptState = run["state"]
        loss = torch.full((c, epochs), float("nan"), dtype=torch.float64)
        steps = torch.zeros(c, dtype=torch.int64)
        samples = torch.zeros(c, dtype=torch.int64)
        for i in range(c):
            model = copy.deepcopy(self.train_model).to(dev)
            load_into(model, {k: v[i] for k, v in out_p.items()})
            load_into(model, {k: v[i] for k, v in run["cbuf"].items()}, strict=False)
            named = dict(model.named_parameters())
            teacher = None
            if run["teacher"] is not None:
                teacher = copy.deepcopy(self.eval_model).to(dev)
                load_into(teacher, {k: v[i] for k, v in run["cbuf"].items()}, strict=False)
                load_into(teacher, {k: v[i] for k, v in run["teacher"].items()}, strict=False)
            opt = self.optimizer.torch_optimizer(named.values())
            for k, p in named.items():
                slots = {slot: tree[k][i] for slot, tree in out_s.items()}
                st = self.optimizer.to_torch_state(slots)
                if st:
                    opt.state[p] = st
            frozen = [named[k] for k, m in run["masks"].items() if not bool(m[i])]
            extra = {k: v[i] for k, v in run["inputs"].items()}
            for epoch in range(epochs):
                batch_losses = []
                for x, y, key in batcher.client_batches(i, epoch):
                    for name, k_drop in self.dropout_keys(key).items():
                        model.get_submodule(name.removesuffix(".key")).key = k_drop
                    opt.zero_grad(set_to_none=True)
                    t_out = None
                    if teacher is not None:
                        with torch.no_grad():
                            t_out = teacher(x)
                    if self.loss_of is not None:
                        bufs = dict(model.named_buffers())
                        batch = {"x": x, "y": y, **extra}
                        if t_out is not None:
                            batch["teacher_outputs"] = t_out
                        value = self.loss_of(dict(model.named_parameters()), bufs, batch, key)
                    else:
                        value = self.supervised_loss(model(x), y, t_out, extra)
                    value.backward()
                    for p in frozen:
                        p.grad = None
                    opt.step()
                    batch_losses.append(float(value.detach()))
                    samples[i] += int(x.shape[0])
                if batch_losses:
                    loss[i, epoch] = sum(batch_losses) / len(batch_losses)
                steps[i] += len(batch_losses)
            for k, p in named.items():
                out_p[k][i] = p.detach()
                like = {slot: tree[k][i] for slot, tree in out_s.items()}
                for slot, v in self.optimizer.from_torch_state(opt.state.get(p, {}), like).items():
                    out_s[slot][k][i] = v
        return out_p, out_s, TrainStats(loss, steps, samples)
