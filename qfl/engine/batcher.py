"""Per-client mini-batches for many clients at once, with per-client random streams.

Each client shuffles its own data every epoch with its own generator and walks through it in
batches of ``batch_size`` (the last one smaller unless ``drop_last``). Clients with more data
take more steps; at step ``s`` of an epoch, only the clients that still have a batch are
*active*. A :class:`Step` groups the active clients by their batch size (usually one group of
full batches, plus one small group for clients at their last, partial batch), so that every
group is a dense ``[G, b, ...]`` block: a client is never padded, its loss is computed over
exactly its own samples, and clients that are not active are simply not updated. This is
what makes the batched trainer equal to the per-client loop for *any* loss (including ones
that do not decompose over samples).

Randomness: ``seed`` gives one ``numpy.random.SeedSequence`` per client
(:func:`client_seed_sequences`); from client ``i``'s sequence the batcher derives, without
mutating anything, the generator of its permutation in epoch ``e`` and a 32-bit base key, and
every step of the client gets the key ``fold_in(base, e * n_batches_i + s)`` (see
:mod:`qfl.engine.random`). Everything is a pure function of ``(seed, client position,
epoch, step)``: the same seed gives the same batches and keys, batched or sequential.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from qfl.engine.random import fold_in
from qkd.errors import ParameterError

__all__ = [
    "ClientBatcher",
    "ClientGroup",
    "Seed",
    "Step",
    "SupervisedData",
    "client_seed_sequences",
]

Seed = int | np.random.SeedSequence | Sequence[int | np.random.SeedSequence]


class SupervisedData(Protocol):
    """Anything with tensors ``x [N, ...]`` and ``y [N]`` (e.g. ``qfl.data.TensorDataset``)."""

    @property
    def x(self) -> torch.Tensor: ...

    @property
    def y(self) -> torch.Tensor: ...


def _child(ss: np.random.SeedSequence, *path: int) -> np.random.SeedSequence:
    """The sequence ``ss.spawn`` would give along ``path``, without mutating ``ss``."""
    return np.random.SeedSequence(entropy=ss.entropy, spawn_key=(*ss.spawn_key, *path))


def _as_seed_sequence(seed: Any, name: str) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise ParameterError(name, seed, "a non-negative int or a numpy.random.SeedSequence")


def client_seed_sequences(seed: Seed, n_clients: int) -> list[np.random.SeedSequence]:
    """One independent ``SeedSequence`` per client.

    Parameters
    ----------
    seed : int, SeedSequence or sequence of them
        A single seed is split into children ``0 .. n_clients - 1`` (as ``spawn`` would,
        but without mutating a given ``SeedSequence``); a sequence gives each client's seed
        explicitly (so a client's stream can be independent of which clients it is batched
        with).
    n_clients : int
        Number of clients.

    Returns
    -------
    list of numpy.random.SeedSequence

    Examples
    --------
    >>> a = client_seed_sequences(1, 3); b = client_seed_sequences(1, 3)
    >>> [s.generate_state(1)[0] for s in a] == [s.generate_state(1)[0] for s in b]
    True
    """
    if isinstance(seed, Sequence) and not isinstance(seed, str | bytes):
        if len(seed) != n_clients:
            raise ParameterError("seed", f"{len(seed)} seeds", f"one seed per client ({n_clients})")
        return [_as_seed_sequence(s, f"seed[{i}]") for i, s in enumerate(seed)]
    base = _as_seed_sequence(seed, "seed")
    return [_child(base, i) for i in range(n_clients)]


def _data_xy(d: Any, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(d, tuple) and len(d) == 2:
        x, y = d
    elif hasattr(d, "x") and hasattr(d, "y"):
        x, y = d.x, d.y
    else:
        raise ParameterError(
            f"datasets[{i}]", type(d).__name__, "an object with x and y, or (x, y)"
        )
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ParameterError(f"datasets[{i}]", type(x).__name__, "torch tensors x and y")
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ParameterError(
            f"datasets[{i}].x.shape", tuple(x.shape), f"[{y.shape[0] if y.ndim else '?'}, ...]"
        )
    return x, y


@dataclass(frozen=True)
class ClientGroup:
    """Active clients that share one batch size at one step.

    Attributes
    ----------
    clients : torch.Tensor
        int64 ``[G]`` client positions, increasing.
    span : slice or None
        The same positions as a slice when they are contiguous (cheap views), else ``None``.
    index : torch.Tensor
        int64 ``[G, b]`` rows of the batcher's concatenated data.
    keys : torch.Tensor
        int64 ``[G]`` step keys (see :mod:`qfl.engine.random`).
    """

    clients: torch.Tensor
    span: slice | None
    index: torch.Tensor
    keys: torch.Tensor

    @property
    def size(self) -> int:
        """Number of clients ``G``."""
        return int(self.index.shape[0])

    @property
    def batch_size(self) -> int:
        """Samples per client ``b``."""
        return int(self.index.shape[1])


@dataclass(frozen=True)
class Step:
    """One optimizer step of every active client.

    Attributes
    ----------
    epoch, step : int
        Position in the run.
    groups : tuple of ClientGroup
        Active clients grouped by batch size (largest first).
    active : torch.Tensor
        bool ``[n_clients]`` validity mask: ``False`` for clients whose epoch is over.
    """

    epoch: int
    step: int
    groups: tuple[ClientGroup, ...]
    active: torch.Tensor


class ClientBatcher:
    """Per-client shuffled mini-batches of many clients, stacked for the batched trainer.

    Parameters
    ----------
    datasets : sequence
        One dataset per client: objects with ``x`` and ``y`` tensors (``TensorDataset``) or
        ``(x, y)`` pairs. Sample shapes and dtypes must agree; sizes may differ (even 0).
    batch_size : int
        Samples per step and client, >= 1.
    seed : int, SeedSequence or sequence of them
        See :func:`client_seed_sequences`.
    drop_last : bool
        Drop each client's last, partial batch.
    device : torch.device or str or None
        Where the concatenated data and index tensors live (default: the data's device).

    Examples
    --------
    >>> data = [(torch.zeros(5, 2), torch.zeros(5, dtype=torch.long)),
    ...         (torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))]
    >>> b = ClientBatcher(data, 2, seed=0)
    >>> [[(g.clients.tolist(), g.batch_size) for g in s.groups] for s in b.steps(0)]
    [[([0, 1], 2)], [([0], 2), ([1], 1)], [([0], 1)]]
    """

    def __init__(
        self,
        datasets: Sequence[SupervisedData | tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        *,
        seed: Seed,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(datasets, str | bytes) or len(datasets) == 0:
            raise ParameterError("datasets", datasets, "a non-empty sequence of datasets")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError("batch_size", batch_size, "an integer >= 1")
        pairs = [_data_xy(d, i) for i, d in enumerate(datasets)]
        x0, y0 = pairs[0]
        for i, (x, y) in enumerate(pairs[1:], start=1):
            if x.shape[1:] != x0.shape[1:] or x.dtype != x0.dtype:
                raise ParameterError(
                    f"datasets[{i}].x",
                    f"{tuple(x.shape[1:])} {x.dtype}",
                    f"samples like datasets[0]: {tuple(x0.shape[1:])} {x0.dtype}",
                )
            if y.shape[1:] != y0.shape[1:] or y.dtype != y0.dtype:
                raise ParameterError(
                    f"datasets[{i}].y",
                    f"{tuple(y.shape[1:])} {y.dtype}",
                    "labels like datasets[0]",
                )
        dev = torch.device(device) if device is not None else x0.device
        self.batch_size = batch_size
        self.drop_last = bool(drop_last)
        self.device = dev
        self.sizes: tuple[int, ...] = tuple(int(x.shape[0]) for x, _ in pairs)
        self.x = torch.cat([x for x, _ in pairs]).to(dev)
        self.y = torch.cat([y for _, y in pairs]).to(dev)
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.offsets: tuple[int, ...] = tuple(int(o) for o in offsets)
        rounding = math.floor if self.drop_last else math.ceil
        self.n_batches: tuple[int, ...] = tuple(int(rounding(n / batch_size)) for n in self.sizes)
        self._seeds = client_seed_sequences(seed, len(pairs))
        self._base_keys = torch.tensor(
            [int(_child(s, 1).generate_state(1, np.uint32)[0]) for s in self._seeds],
            dtype=torch.int64,
            device=dev,
        )

    @property
    def n_clients(self) -> int:
        """Number of clients."""
        return len(self.sizes)

    @property
    def steps_per_epoch(self) -> int:
        """Steps of the client with the most batches."""
        return max(self.n_batches)

    def permutation(self, client: int, epoch: int) -> torch.Tensor:
        """Client ``client``'s sample order in epoch ``epoch`` (int64, CPU, local indices)."""
        if not 0 <= client < self.n_clients:
            raise ParameterError("client", client, f"in [0, {self.n_clients})")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ParameterError("epoch", epoch, "an integer >= 0")
        state = _child(self._seeds[client], 0, epoch).generate_state(2, np.uint32)
        gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        return torch.randperm(self.sizes[client], generator=gen)

    def step_keys(self, epoch: int, step: int) -> torch.Tensor:
        """int64 ``[n_clients]`` keys of step ``step`` in epoch ``epoch`` (on ``device``)."""
        counters = torch.tensor(
            [epoch * nb + step for nb in self.n_batches], dtype=torch.int64, device=self.device
        )
        return fold_in(self._base_keys, counters)

    def _batch_sizes(self, step: int) -> list[int]:
        b = self.batch_size
        out = []
        for n, nb in zip(self.sizes, self.n_batches, strict=True):
            out.append(min(b, n - step * b) if step < nb else 0)
        return out

    def steps(self, epoch: int) -> Iterator[Step]:
        """The steps of one epoch, each with its client groups and validity mask.

        Parameters
        ----------
        epoch : int
            Epoch number (selects each client's permutation and keys).

        Yields
        ------
        Step
        """
        c, b = self.n_clients, self.batch_size
        # Wide enough for every client's whole permutation (with drop_last the samples past
        # the last full batch are simply never read).
        width = max(self.steps_per_epoch * b, max(self.sizes, default=0), 1)
        order = torch.zeros(c, width, dtype=torch.int64)
        for i in range(c):
            n = self.sizes[i]
            order[i, :n] = self.permutation(i, epoch) + self.offsets[i]
        order = order.to(self.device)
        counters = torch.tensor(
            [[epoch * nb + s for nb in self.n_batches] for s in range(self.steps_per_epoch)],
            dtype=torch.int64,
            device=self.device,
        )
        all_keys = fold_in(self._base_keys, counters)  # [steps, clients], one call per epoch
        for s in range(self.steps_per_epoch):
            sizes = self._batch_sizes(s)
            keys = all_keys[s]
            block = order[:, s * b : (s + 1) * b]
            groups = []
            for size in sorted({n for n in sizes if n > 0}, reverse=True):
                members = [i for i in range(c) if sizes[i] == size]
                contiguous = members == list(range(members[0], members[-1] + 1))
                span = slice(members[0], members[-1] + 1) if contiguous else None
                clients = torch.tensor(members, dtype=torch.int64, device=self.device)
                if span is not None:
                    index, gkeys = block[span, :size], keys[span]
                else:
                    index = block.index_select(0, clients)[:, :size]
                    gkeys = keys.index_select(0, clients)
                groups.append(ClientGroup(clients, span, index, gkeys))
            active = torch.tensor([n > 0 for n in sizes], dtype=torch.bool)
            yield Step(epoch, s, tuple(groups), active)

    def gather(self, group: ClientGroup) -> tuple[torch.Tensor, torch.Tensor]:
        """The group's stacked batch: ``x [G, b, ...]`` and ``y [G, b, ...]``."""
        flat = group.index.reshape(-1)
        x = self.x.index_select(0, flat).reshape(group.size, group.batch_size, *self.x.shape[1:])
        y = self.y.index_select(0, flat).reshape(group.size, group.batch_size, *self.y.shape[1:])
        return x, y

    def client_batches(
        self, client: int, epoch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """One client's batches of one epoch, for a per-client loop.

        Yields
        ------
        x, y, key
            The same samples, in the same order, and the same 0-d step key as the
            client gets from :meth:`steps`.
        """
        b = self.batch_size
        perm = self.permutation(client, epoch).to(self.device) + self.offsets[client]
        nb = self.n_batches[client]
        base = self._base_keys[client]
        for s in range(nb):
            rows = perm[s * b : min((s + 1) * b, self.sizes[client])]
            key = fold_in(base, epoch * nb + s)
            yield self.x.index_select(0, rows), self.y.index_select(0, rows), key
