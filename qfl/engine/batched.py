"""Train many clients' models of one architecture as one vectorized computation.

For a group of clients, the per-client objective ``loss(params_i, buffers_i, batch_i, key_i)``
is differentiated with ``torch.func.grad_and_value`` and mapped over the stacked client axis
with ``torch.func.vmap``; ``torch.func.functional_call`` runs the model with each client's
parameters. The optimizer step is a :mod:`qfl.engine.optim` update over the stacked trees.
Convolutions with a batched weight become one grouped convolution, so one Python-level pass
serves every client of the group: the per-client loop's interpreter and dispatch overhead is
paid once instead of ``n_clients`` times.

On a CPU, the models that have a *stacked route* (:mod:`qfl.engine.stacked`) and are trained
with ``loss_fn`` take a faster way with the same results: the Def-FD CNN
(:func:`qfl.engine.stacked_cnn.stacked_forward`, one layout for all clients with fused
pooling kernels from :mod:`qfl.engine.kernels`), the multi-exit ResNet
(:mod:`qfl.engine.stacked_resnet`: grouped convolutions, per-client GroupNorm) and the
multi-exit LSTM (:mod:`qfl.engine.stacked_lstm`: batched matrix products). The stacked
forward evaluates all the clients of a pass at once (dropout masks drawn from each client's
keys), the per-client losses are mapped over its stacked outputs, and autograd gives every
client's gradient from the sum of the losses (clients share no parameters). ``fused``
chooses: ``None`` (default) takes it where it applies (for the CNN: where the kernels are
built).

Memory is bounded by ``chunk_size`` clients per vectorized call. Randomness never comes from
torch's global generator: ``vmap`` runs with ``randomness="error"``, dropout modules are
replaced by :class:`qfl.engine.random.KeyedDropout` and fed each client's step key (see
:mod:`qfl.engine.random`), so the same seed gives the same result, equal to
:class:`qfl.engine.SequentialTrainer`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.func import functional_call, grad_and_value, vmap

from qfl.engine import kernels, stacked
from qfl.engine.base import TrainerBase, TrainStats
from qfl.engine.batcher import Seed, SupervisedData
from qfl.engine.optim import OptState
from qfl.engine.stack import Tree, index_tree
from qkd.errors import ParameterError, QflError

__all__ = ["BatchedTrainer"]

_RESERVED = ("x", "y", "teacher_outputs")

#: Clients per pass on the CNN's fused CPU route when ``chunk_size`` is not given: measured
#: fastest for FeatureCNN at batch 32 on a 2-core machine (a pass's activations stay in
#: cache). Each route's default is in :data:`qfl.engine.stacked.CHUNK`.
FUSED_CHUNK = stacked.CHUNK["cnn"]


def _take(tree: Mapping[str, torch.Tensor], sel: slice | torch.Tensor) -> Tree:
    return index_tree(tree, sel)


def _put(full: Tree, new: Mapping[str, torch.Tensor], sel: slice | torch.Tensor, c: int) -> None:
    """Write ``new`` (the entries ``sel``) into ``full`` (owned by the trainer)."""
    if isinstance(sel, slice) and sel.start == 0 and sel.stop == c:
        full.update(new)
        return
    for k, v in new.items():
        if isinstance(sel, slice):
            full[k][sel] = v
        else:
            full[k].index_copy_(0, sel, v)


class BatchedTrainer(TrainerBase):
    """Vectorized trainer of many same-architecture client models.

    Parameters
    ----------
    model : torch.nn.Module
        The architecture (its own weights are not used; its buffers are shared by all
        clients unless ``buffers`` are passed to :meth:`train_epochs`). Its ``nn.Dropout``
        modules are replaced by keyed ones in a private copy.
    loss_fn : callable or None
        ``loss_fn(outputs, y, teacher_outputs, **client_inputs) -> scalar`` on one client's
        batch (see :data:`qfl.engine.base.LossFn`); e.g. ``qfl.losses.DefFDLoss(...)``.
    optimizer : FunctionalOptimizer
        :func:`qfl.engine.sgd` or :func:`qfl.engine.adam`.
    batch_size : int
        Samples per step and client.
    drop_last : bool
        Drop each client's last, partial batch.
    chunk_size : int or None
        At most this many clients per vectorized call (bounds memory); ``None``: all the
        clients of a group at once (on a stacked route: its :data:`qfl.engine.stacked.CHUNK`).
    device : torch.device or str or None
        Where to train (``"cuda"`` if available); ``None``: the device of the parameters.
        Results are returned on this device.
    loss_of : LossOf or None
        Instead of ``loss_fn``, a low-level objective ``loss_of(params, buffers, batch, key)``
        (see :class:`qfl.engine.base.LossOf`), e.g. for SimCLR's two-view loss.
    fused : bool or None
        The stacked CPU route of ``FeatureCNN``, ``MultiExitResNet`` and ``MultiExitLSTM``
        (see the module docstring): ``None`` where it applies (the CNN's: where its kernels
        can be built), ``False`` never (always ``vmap``), ``True`` required (an error where
        it does not apply).

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from torch import nn
    >>> from qfl.engine import sgd, stack_models
    >>> models = [nn.Linear(4, 3) for _ in range(2)]
    >>> params, _ = stack_models(models)
    >>> data = [(torch.randn(10, 4), torch.randint(0, 3, (10,))) for _ in range(2)]
    >>> trainer = BatchedTrainer(models[0], lambda out, y, t: F.cross_entropy(out, y),
    ...                          sgd(0.1, momentum=0.9), batch_size=4)
    >>> params, state, stats = trainer.train_epochs(
    ...     params, trainer.init_state(params), data, 2, seed=0)
    >>> stats.steps.tolist()
    [6, 6]
    """

    def __init__(self, *args: Any, fused: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if fused not in (None, True, False):
            raise ParameterError("fused", fused, "None, True or False")
        route = stacked.route_of(self.train_model)
        applies = route is not None and self.loss_fn is not None and not self.buffers
        if fused and not applies:
            raise ParameterError(
                "fused",
                fused,
                "False or None unless the model is a FeatureCNN, MultiExitResNet or "
                "MultiExitLSTM and loss_fn is set",
            )
        self.fused = fused
        self._route = route if applies else None
        if self._route is not None and fused is not False:
            if self.device is None or self.device.type == "cpu":
                # Build once, explicitly, where a stacked route may run (the CNN's pooling,
                # every route's dropout masks), and keep large freed blocks in the heap.
                kernels.prepare()
        self._value_and_grads = vmap(
            grad_and_value(self._objective), in_dims=(0, 0, None, 0, 0), randomness="error"
        )
        self._teacher = vmap(self._teacher_forward, in_dims=(0, 0, None, 0), randomness="error")

    # -- per-client functions (run under vmap) -----------------------------------------

    def _objective(
        self, params: Tree, cbuf: Tree, shared: Tree, batch: dict[str, Any], key: torch.Tensor
    ) -> torch.Tensor:
        buffers = shared | cbuf | self.dropout_keys(key)
        if self.loss_of is not None:
            return self.loss_of(params, buffers, batch, key)
        out = functional_call(self.train_model, params | buffers, (batch["x"],))
        extra = {k: v for k, v in batch.items() if k not in _RESERVED}
        return self.supervised_loss(out, batch["y"], batch.get("teacher_outputs"), extra)

    def _teacher_forward(self, tparams: Tree, cbuf: Tree, shared: Tree, x: torch.Tensor) -> Any:
        return functional_call(self.eval_model, shared | cbuf | tparams, (x,))

    # -- the stacked CPU routes (FeatureCNN, MultiExitResNet, MultiExitLSTM) --------------

    @property
    def route(self) -> stacked.Route | None:
        """The stacked route this trainer takes on a CPU (``None``: always ``vmap``)."""
        return None if self.fused is False else self._route

    def _route_on(
        self, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> stacked.Route | None:
        """The stacked route a run on ``device`` with ``dtype`` parameters takes, or ``None``
        (see the class docstring; the CNN's kernels are float32 only)."""
        route = self.route
        if route is None:
            return None
        ok = stacked.runnable_on(route, device)
        if self.fused and not ok:
            need = " and the qfl CPU kernels (a C++ compiler and ninja to build them; see "
            raise QflError(
                "fused=True needs a CPU device"
                + (need + "qfl.engine.kernels)" if route == "cnn" else "")
            )
        return route if ok and (route != "cnn" or dtype == torch.float32) else None

    def _use_fused(self, device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
        """Whether a run on ``device`` with ``dtype`` parameters takes a stacked route."""
        return self._route_on(device, dtype) is not None

    def _fused_value_and_grads(
        self,
        route: stacked.Route,
        params: Tree,
        batch: dict[str, Any],
        teacher: Tree | None,
        keys: torch.Tensor,
    ) -> tuple[Tree, torch.Tensor]:
        """Per-client gradients and losses of ``params`` on ``batch`` (stacked over clients;
        ``keys`` are the clients' step keys, for dropout)."""
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        extra = {k: v for k, v in batch.items() if k not in _RESERVED}
        drop = self.dropout_keys(keys) if self.dropout_names else None
        with torch.enable_grad():
            out = stacked.forward(route, self.train_model, leaves, batch["x"], drop, training=True)
            t_out = None
            if teacher is not None:
                with torch.no_grad():
                    t_out = stacked.forward(
                        route, self.eval_model, teacher, batch["x"], None, training=False
                    )
            per_client = vmap(
                self.supervised_loss,
                in_dims=(0, 0, None if t_out is None else 0, 0),
                randomness="error",
            )
            losses = per_client(out, batch["y"], t_out, extra)
            names = list(leaves)
            # A truncated model leaves its deeper parameters unused: zero gradients, as vmap.
            grads = torch.autograd.grad(
                losses.sum(),
                [leaves[k] for k in names],
                allow_unused=True,
                materialize_grads=True,
            )
        return dict(zip(names, grads, strict=True)), losses.detach()

    # -- one step over a set of clients -------------------------------------------------

    def _chunks(
        self, sel: slice | torch.Tensor, size: int, chunk: int | None = None
    ) -> list[tuple[slice, slice | torch.Tensor]]:
        """Split a selection of ``size`` clients into (position in the group, clients), at
        most ``chunk`` (default ``chunk_size``, else all) clients each."""
        cs = chunk or self.chunk_size or size
        out: list[tuple[slice, slice | torch.Tensor]] = []
        for a in range(0, size, cs):
            b = min(a + cs, size)
            if isinstance(sel, slice):
                out.append((slice(a, b), slice(sel.start + a, sel.start + b)))
            else:
                out.append((slice(a, b), sel[a:b]))
        return out

    def _update(
        self,
        run: dict[str, Any],
        sel: slice | torch.Tensor,
        size: int,
        batch: dict[str, Any],
        keys: torch.Tensor,
    ) -> torch.Tensor:
        """One optimizer step of the clients ``sel`` on ``batch`` (stacked over them);
        updates ``run["params"]`` and ``run["state"]`` and returns the losses ``[size]``."""
        c = run["c"]
        dtypes = {batch["x"].dtype} | {v.dtype for v in run["params"].values()}
        dtype = dtypes.pop() if len(dtypes) == 1 else None
        route = None if dtype is None else self._route_on(run["device"], dtype)
        if route is not None:
            return self._fused_update(route, run, sel, size, batch, keys)
        losses = []
        for pos, csel in self._chunks(sel, size):
            p = _take(run["params"], csel)
            cbuf = _take(run["cbuf"], csel)
            b = {k: v[pos] for k, v in batch.items()}
            for k, v in run["inputs"].items():
                b[k] = v[csel]
            if run["teacher"] is not None:
                with torch.no_grad():
                    b["teacher_outputs"] = self._teacher(
                        _take(run["teacher"], csel), cbuf, run["shared"], b["x"]
                    )
            try:
                grads, loss = self._value_and_grads(p, cbuf, run["shared"], b, keys[pos])
            except RuntimeError as err:
                if "randomness" in str(err):
                    raise QflError(
                        "the model or loss draws from torch's global generator inside vmap; "
                        "use nn.Dropout modules (replaced by keyed dropout) or draw with "
                        "qfl.engine.random from the step key"
                    ) from err
                raise
            self._apply_update(run, p, grads, csel, c)
            losses.append(loss.detach())
        return torch.cat(losses)

    def _fused_update(
        self,
        route: stacked.Route,
        run: dict[str, Any],
        sel: slice | torch.Tensor,
        size: int,
        batch: dict[str, Any],
        keys: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`_update` on a stacked route: gradients chunk by chunk (memory), then one
        optimizer step for all the clients (fewer small operations)."""
        parts: list[Tree] = []
        losses = []
        chunk = self.chunk_size or stacked.CHUNK[route] or size
        for pos, csel in self._chunks(sel, size, chunk):
            b = {k: v[pos] for k, v in batch.items()}
            for k, v in run["inputs"].items():
                b[k] = v[csel]
            teacher = None
            if run["teacher"] is not None:
                teacher = {k: _take(run["teacher"], csel)[k] for k in self.param_names}
            grads, loss = self._fused_value_and_grads(
                route, _take(run["params"], csel), b, teacher, keys[pos]
            )
            parts.append(grads)
            losses.append(loss)
        grads = (
            parts[0] if len(parts) == 1 else {k: torch.cat([g[k] for g in parts]) for k in parts[0]}
        )
        self._apply_update(run, _take(run["params"], sel), grads, sel, run["c"])
        return torch.cat(losses)

    def _apply_update(
        self, run: dict[str, Any], p: Tree, grads: Tree, csel: slice | torch.Tensor, c: int
    ) -> None:
        """The optimizer step of the clients ``csel``, written into ``run``."""
        state = {slot: _take(t, csel) for slot, t in run["state"].items()}
        mask = {k: m[csel] for k, m in run["masks"].items()}
        new_p, new_s = self.optimizer.update(p, grads, state, mask or None)
        _put(run["params"], new_p, csel, c)
        for slot, tree in new_s.items():
            _put(run["state"][slot], tree, csel, c)

    # -- public entry points ------------------------------------------------------------

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
        """Train every client for ``epochs`` epochs over its own data.

        Parameters
        ----------
        params : mapping of str to torch.Tensor
            Stacked parameters ``[n_clients, ...]`` (see :func:`qfl.engine.stack_models`).
            Not modified.
        opt_state : dict
            Stacked optimizer state (``trainer.init_state(params)`` to start). Not modified.
        datasets : sequence
            One dataset per client (``x``, ``y``), sizes may differ; see
            :class:`qfl.engine.ClientBatcher`.
        epochs : int
            Local epochs (>= 0). A client with more data takes more steps per epoch.
        seed : int, SeedSequence or sequence of them
            Data order and dropout keys (see :func:`qfl.engine.client_seed_sequences`).
        teacher_params : mapping of str to torch.Tensor, optional
            Stacked parameters (and optionally buffers) of a same-architecture teacher per
            client; its outputs on the client's batch (eval mode, no gradient) are passed to
            ``loss_fn`` as ``teacher_outputs`` (Def-FD: the received model).
        param_mask : mapping of str to bool or bool tensor ``[n_clients]``, optional
            Tensors to train per client (missing names: trained). A frozen tensor keeps its
            value and optimizer state exactly (multi-exit partial training).
        client_inputs : mapping of str to torch.Tensor, optional
            Per-client tensors ``[n_clients, ...]`` passed to ``loss_fn`` as keyword arguments
            (e.g. the deepest exit a client trains).
        buffers : mapping of str to torch.Tensor, optional
            Stacked per-client buffers; by default the model's buffers are shared.

        Returns
        -------
        params, opt_state : dict
            New stacked trees on the trainer's device.
        stats : TrainStats
            Per-client losses, steps and samples.
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
        loss_sum = torch.zeros(c, max(epochs, 1), dtype=torch.float64, device=dev)
        steps = torch.zeros(c, dtype=torch.int64, device=dev)
        samples = torch.zeros(c, dtype=torch.int64, device=dev)
        for epoch in range(epochs):
            epoch_steps = torch.zeros(c, dtype=torch.int64, device=dev)
            for step in batcher.steps(epoch):
                for group in step.groups:
                    x, y = batcher.gather(group)
                    sel = group.span if group.span is not None else group.clients
                    loss = self._update(run, sel, group.size, {"x": x, "y": y}, group.keys)
                    loss_sum[:, epoch].index_add_(0, group.clients, loss.to(torch.float64))
                    epoch_steps.index_add_(0, group.clients, torch.ones_like(group.clients))
                    samples.index_add_(
                        0, group.clients, torch.full_like(group.clients, group.batch_size)
                    )
            loss_sum[:, epoch] /= epoch_steps.clamp(min=1)
            loss_sum[epoch_steps == 0, epoch] = torch.nan
            steps += epoch_steps
        stats = TrainStats(loss_sum[:, :epochs].cpu(), steps.cpu(), samples.cpu())
        return run["params"], run["state"], stats

    def step(
        self,
        params: Mapping[str, torch.Tensor],
        opt_state: OptState,
        batch: Mapping[str, Any],
        keys: torch.Tensor,
        *,
        teacher_params: Mapping[str, torch.Tensor] | None = None,
        param_mask: Mapping[str, Any] | None = None,
        buffers: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[Tree, OptState, torch.Tensor]:
        """One optimizer step of every client on a batch the caller stacked (custom loops).

        Parameters
        ----------
        params, opt_state : dict
            Stacked trees (not modified).
        batch : mapping
            ``"x"`` ``[n_clients, b, ...]`` and any other per-client entries, all stacked on
            the client axis; ``"y"`` is required with ``loss_fn``, other entries (views,
            weights, ...) reach ``loss_fn`` as keyword arguments or ``loss_of`` in ``batch``.
        keys : torch.Tensor
            int64 ``[n_clients]`` step keys (e.g. ``ClientBatcher.step_keys``).
        teacher_params, param_mask, buffers
            As in :meth:`train_epochs`.

        Returns
        -------
        params, opt_state : dict
            New stacked trees.
        losses : torch.Tensor
            ``[n_clients]`` loss of each client on its batch (before the step).
        """
        if "x" not in batch:
            raise ParameterError("batch", sorted(batch), "a mapping with an 'x' entry")
        run = self._prepare(
            params, opt_state, None, 0, 0, teacher_params, param_mask, None, buffers
        )
        c, dev = run["c"], run["device"]
        for k, v in batch.items():
            if not isinstance(v, torch.Tensor) or v.ndim == 0 or v.shape[0] != c:
                raise ParameterError(f"batch.{k}", getattr(v, "shape", v), f"a tensor [{c}, ...]")
        if keys.dtype != torch.int64 or tuple(keys.shape) != (c,):
            raise ParameterError("keys", f"{keys.dtype} {tuple(keys.shape)}", f"int64 ({c},)")
        batch_dev = {k: v.to(dev) for k, v in batch.items()}
        losses = self._update(run, slice(0, c), c, batch_dev, keys.to(dev))
        return run["params"], run["state"], losses
