"""Exceptions raised by the network layer.

All derive from :class:`NetworkError`, itself a :class:`~qkd.errors.QflError`; bad parameter
values raise :class:`~qkd.errors.ParameterError` as everywhere else. Each message names the
node, link or transfer concerned and, where there is one, the remedy.
"""

from __future__ import annotations

from collections.abc import Sequence

from qkd.errors import QflError

__all__ = [
    "DuplicateLink",
    "KeyNeverSuffices",
    "NetworkError",
    "NoPath",
    "NodeNotFound",
]


class NetworkError(QflError):
    """Base class of the errors raised by ``network``."""


class NodeNotFound(NetworkError, KeyError):
    """A node name that is not in the topology.

    Examples
    --------
    >>> str(NodeNotFound("Bristol", where="links[2].b"))
    "links[2].b: node 'Bristol' is not in the topology"
    """

    def __init__(self, node: str, *, where: str = "node") -> None:
        self.node = node
        self.where = where
        super().__init__(f"{where}: node {node!r} is not in the topology")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class DuplicateLink(NetworkError, ValueError):
    """Two links join the same pair of nodes.

    Examples
    --------
    >>> str(DuplicateLink("A", "B", where="links[3]"))
    "links[3]: duplicate link 'A'-'B' (links are undirected and full duplex; give each pair once)"
    """

    def __init__(self, a: str, b: str, *, where: str = "link") -> None:
        self.a, self.b, self.where = a, b, where
        super().__init__(
            f"{where}: duplicate link {a!r}-{b!r} "
            "(links are undirected and full duplex; give each pair once)"
        )


class NoPath(NetworkError):
    """The destination cannot be reached from the source over the topology.

    Examples
    --------
    >>> str(NoPath("A", "Z"))
    "no path from 'A' to 'Z' in the topology (they are in different connected components)"
    """

    def __init__(self, src: str, dst: str, reason: str = "") -> None:
        self.src, self.dst = src, dst
        why = reason or "they are in different connected components"
        super().__init__(f"no path from {src!r} to {dst!r} in the topology ({why})")


class KeyNeverSuffices(NetworkError):
    """A transfer needs more key on a link than that link will ever hold.

    Raised for a link that produces no key (nominal rate 0), or whose supply schedule makes
    no more key, and whose pool holds (or will hold) less than the transfer needs, so that
    waiting would never end.

    Parameters
    ----------
    links : sequence of str
    needed_bits, available_bits : float
    ended_at : float, optional
        The link has a schedule whose key supply ended at this time (simulated seconds).

    Examples
    --------
    >>> err = KeyNeverSuffices(["A-B"], needed_bits=264, available_bits=0.0)
    >>> str(err).split(";")[0]
    'link A-B produces no key (rate 0) and holds 0 of the 264 key bits needed'
    >>> str(KeyNeverSuffices(["S-G"], needed_bits=8e3, available_bits=5e3, ended_at=900.0))
    ... # doctest: +NORMALIZE_WHITESPACE
    'link S-G makes no more key (its schedule has no window after t=900 s) and will hold 5000 of
    the 8000 key bits needed; extend the schedule (more passes, a longer horizon), or route
    around it (key-aware routing)'
    """

    def __init__(
        self,
        links: Sequence[str],
        needed_bits: float,
        available_bits: float,
        ended_at: float | None = None,
    ) -> None:
        self.links = tuple(links)
        self.needed_bits = needed_bits
        self.available_bits = available_bits
        self.ended_at = ended_at
        # the fields as args: SimPy re-creates a failed event's exception from its args
        super().__init__(self.links, needed_bits, available_bits, ended_at)

    def __str__(self) -> str:
        names = ", ".join(self.links)
        have, need = self.available_bits, self.needed_bits
        if self.ended_at is None:
            return (
                f"link {names} produces no key (rate 0) and holds {have:.0f} of the "
                f"{need:.0f} key bits needed; give it a positive skr_bps or an initial "
                "fill, or route around it (key-aware routing)"
            )
        return (
            f"link {names} makes no more key (its schedule has no window after "
            f"t={self.ended_at:g} s) and will hold {have:.0f} of the {need:.0f} key bits "
            "needed; extend the schedule (more passes, a longer horizon), or route around it "
            "(key-aware routing)"
        )
