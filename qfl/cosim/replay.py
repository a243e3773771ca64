"""A transport that replays the network half of a run for the learning half.

The learning algorithms talk only to the narrow :class:`~qfl.transport.Transport`
interface. During a co-simulation the network timeline has already been simulated; this
transport delivers every message at once, except those whose transfer failed on the network
(a fault with no way round), which it drops, as the network did. So the algorithms run
unchanged, and see exactly the deliveries the key-gated network allowed.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from qfl.transport import InMemoryTransport

__all__ = ["ReplayTransport"]


class ReplayTransport(InMemoryTransport):
    """Instant delivery, minus the transfers that failed on the simulated network.

    Parameters
    ----------
    graph : object
        Who may talk to whom (as :class:`~qfl.transport.InMemoryTransport`).
    dropped : iterable of tuple
        ``(round, src, dst)`` of the transfers that failed, in the learners' node labels.

    Attributes
    ----------
    round : int
        The round now being executed; the executor sets it before each round.
    n_dropped : int
        Messages dropped so far.

    Examples
    --------
    >>> t = ReplayTransport(3, dropped=[(0, 0, 1)])
    >>> t.send(0, 1, "m", n_bytes=1, tag="model"); t.send(0, 2, "m", n_bytes=1, tag="model")
    >>> [len(t.receive(n)) for n in (1, 2)], t.n_dropped
    ([0, 1], 1)
    """

    def __init__(self, graph: Any, dropped: Iterable[tuple[int, Hashable, Hashable]] = ()) -> None:
        super().__init__(graph)
        self._dropped = frozenset(dropped)
        self.round = 0
        self.n_dropped = 0

    def send(self, src: Hashable, dst: Hashable, payload: Any, *, n_bytes: int, tag: str) -> None:
        """Deliver the message, unless its transfer failed on the network this round."""
        if (self.round, src, dst) in self._dropped:
            self._check_node("src", src)
            self._check_node("dst", dst)
            self.n_dropped += 1
            return
        super().send(src, dst, payload, n_bytes=n_bytes, tag=tag)
