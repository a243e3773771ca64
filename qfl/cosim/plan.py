"""A round of a learning method as a plan of operations, run by both halves.

A method turns round ``r`` into a :class:`RoundOps`: independent *chains* of operations that
run concurrently (a chain stops at its first failed transfer), then the operations of the
round's end (the server's aggregation of the chains that completed). The network half runs
the plan as SimPy processes to learn *when* each operation happens and which transfers fail
(:func:`qfl.cosim.schedule.run_plan`); the learning half executes the same operations,
seeing exactly the deliveries the network allowed (:class:`qfl.cosim.replay.ReplayTransport`).

Participants are client indices ``0 .. n-1``, and :data:`SERVER` for the aggregator.

Examples
--------
>>> ops = decentralized_round(0, senders=(0, 2), transfers=((0, 1),))
>>> [type(op).__name__ for op in ops.chains[0]], ops.trains, ops.sends
(['Train', 'Send', 'Fuse'], (0, 2), (Send(src=0, dst=1, tag='model'),))
>>> server_round(3, 2, down="global").chains[1]
(Send(src=-1, dst=1, tag='global'), Train(node=1), Send(src=1, dst=-1, tag='update'))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "SERVER",
    "Aggregate",
    "Fuse",
    "Op",
    "RoundOps",
    "Send",
    "Train",
    "decentralized_round",
    "server_round",
]

SERVER = -1
"""The aggregator's index in operations (clients are ``0 .. n-1``)."""


@dataclass(frozen=True)
class Train:
    """A local update of client ``node`` on its own data."""

    node: int


@dataclass(frozen=True)
class Send:
    """``src`` sends a model (or a part of it) to ``dst``; ``tag`` says which."""

    src: int
    dst: int
    tag: str


@dataclass(frozen=True)
class Fuse:
    """Client ``node`` fuses the model it received from ``src`` into its own."""

    node: int
    src: int


@dataclass(frozen=True)
class Aggregate:
    """The server averages the updates of the chains that completed."""


Op = Train | Send | Fuse | Aggregate


@dataclass(frozen=True)
class RoundOps:
    """The operations of round ``index``.

    Attributes
    ----------
    index : int
        Round number, from 0.
    chains : tuple of tuple of Op
        Run concurrently; the operations of a chain in order, up to its first failed send.
    end : tuple of Op
        Run once every chain has finished (e.g. :class:`Aggregate`).
    """

    index: int
    chains: tuple[tuple[Op, ...], ...]
    end: tuple[Op, ...] = ()

    def _all(self) -> Iterable[Op]:
        for chain in self.chains:
            yield from chain
        yield from self.end

    @property
    def trains(self) -> tuple[int, ...]:
        """The clients that train locally this round, in plan order."""
        return tuple(op.node for op in self._all() if isinstance(op, Train))

    @property
    def sends(self) -> tuple[Send, ...]:
        """Every transfer of the round, in plan order."""
        return tuple(op for op in self._all() if isinstance(op, Send))


def decentralized_round(
    index: int, senders: Iterable[int], transfers: Iterable[tuple[int, int]]
) -> RoundOps:
    """Def-FD, Def-KT, gossip: each sender trains, sends its model to its receiver (if it
    has one), and the receiver fuses it."""
    dst_of = dict(transfers)
    chains: list[tuple[Op, ...]] = []
    for s in senders:
        d = dst_of.get(s)
        chains.append((Train(s),) if d is None else (Train(s), Send(s, d, "model"), Fuse(d, s)))
    return RoundOps(index, tuple(chains))


def server_round(
    index: int,
    n_clients: int,
    *,
    down: str = "global",
    sampled: Iterable[int] | None = None,
) -> RoundOps:
    """FedAvg, multi-exit FedAvg, federated SimCLR: the server sends each client the global
    model (tag ``down``), the client trains and uploads (``update``), the server aggregates
    the uploads that arrived.

    ``sampled`` (client indices; default: all ``n_clients``) are the clients that take part
    in this round (:mod:`qfl.cosim.sampling`): only they get a chain, so a round's cost in
    both halves grows with the clients sampled, not with the clients that exist.

    >>> server_round(0, 1000, sampled=(3, 70)).trains
    (3, 70)
    """
    members = range(n_clients) if sampled is None else sampled
    chains = tuple((Send(SERVER, i, down), Train(i), Send(i, SERVER, "update")) for i in members)
    return RoundOps(index, chains, (Aggregate(),))
