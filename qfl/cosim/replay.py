"""A transport that replays the network half of a run for the learning half.

The learning algorithms talk only to the narrow :class:`~qfl.algorithms.transport.Transport`
interface. During a co-simulation the network timeline has already been simulated; this
transport delivers every message at once, except those whose transfer failed on the network
(a fault with no way round), which it drops, as the network did. So the algorithms run
unchanged, and see exactly the deliveries the key-gated network allowed.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from qfl.algorithms.transport import InMemoryTransport, Message

__all__ = ["ReplayTransport", "RoundTransport"]


class ReplayTransport:
    """Instant delivery, minus the transfers that failed on the simulated network.

    Parameters
    ----------
    graph : object
        Who may talk to whom (as :class:`~qfl.algorithms.transport.InMemoryTransport`).
    dropped : iterable of tuple
        ``(round, src, dst)`` of the send operations that failed, in the learners' labels.

    Attributes
    ----------
    n_dropped : int
        Messages dropped so far.

    Examples
    --------
    >>> t = ReplayTransport(3, dropped=[(0, 0, 1)])
    >>> r0 = t.at(0)
    >>> r0.send(0, 1, "m", n_bytes=1, tag="model"); r0.send(0, 2, "m", n_bytes=1, tag="model")
    >>> [len(r0.receive(n)) for n in (1, 2)], t.n_dropped
    ([0, 1], 1)
    """

    def __init__(self, graph: Any, dropped: Iterable[tuple[int, Hashable, Hashable]] = ()) -> None:
        self._mem = InMemoryTransport(graph)
        self._dropped = frozenset(dropped)
        self.n_dropped = 0

    def at(self, round_index: int) -> RoundTransport:
        """The transport of round ``round_index``'s operations."""
        return RoundTransport(self, round_index)

    def _deliver(
        self, r: int, src: Hashable, dst: Hashable, payload: Any, *, n_bytes: int, tag: str
    ) -> None:
        if (r, src, dst) in self._dropped:
            self._mem._check_node("src", src)
            self._mem._check_node("dst", dst)
            self.n_dropped += 1
            return
        self._mem.send(src, dst, payload, n_bytes=n_bytes, tag=tag)


class RoundTransport:
    """One round's view of a :class:`ReplayTransport` (a
    :class:`~qfl.algorithms.transport.Transport`)."""

    def __init__(self, replay: ReplayTransport, round_index: int) -> None:
        self._replay = replay
        self.round = round_index

    def send(self, src: Hashable, dst: Hashable, payload: Any, *, n_bytes: int, tag: str) -> None:
        """Deliver the message, unless this round's transfer failed on the network."""
        self._replay._deliver(self.round, src, dst, payload, n_bytes=n_bytes, tag=tag)

    def receive(self, node: Hashable) -> list[Message]:
        """Messages delivered to ``node`` so far (emptying its inbox)."""
        return self._replay._mem.receive(node)

    def neighbours(self, node: Hashable) -> list[Hashable]:
        """The nodes ``node`` may send to."""
        return self._replay._mem.neighbours(node)
