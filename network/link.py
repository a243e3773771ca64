"""A link: key supply (a fluid key pool at the QKD rate), classical channels, fault state.

The link object is the ``link`` attribute of its edge in the network graph, so that routing
weights can read its state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import simpy

from network.keypool import FluidKeyPool, PoolObserver
from network.topology import LinkSpec
from qkd.params import Fibre, QKDSystem, get_preset

__all__ = ["Link", "expected_wait_s", "link_rates_bps"]


def _system(spec: LinkSpec) -> QKDSystem:
    system = get_preset(spec.system) if isinstance(spec.system, str) else spec.system
    if spec.attenuation_db_per_km is not None:
        system = system.replace(fibre=Fibre(spec.attenuation_db_per_km))
    return system


def link_rates_bps(specs: Sequence[LinkSpec]) -> list[float]:
    """Secret key rate of each link in bit/s: its ``skr_bps`` override, else
    :func:`qkd.rates.key_rate_bps` (decoy-state BB84) of its system at its length.

    Links that share a system are computed in one vectorized call.

    Examples
    --------
    >>> link_rates_bps([LinkSpec("A", "B", 10.0, skr_bps=5e3)])
    [5000.0]
    """
    rates = [math.nan] * len(specs)
    groups: dict[QKDSystem, list[int]] = {}
    for i, s in enumerate(specs):
        if s.skr_bps is not None:
            rates[i] = float(s.skr_bps)
        else:
            groups.setdefault(_system(s), []).append(i)
    if groups:
        from qkd.rates import key_rate_bps

        for system, idx in groups.items():
            lengths = np.array([specs[i].length_km for i in idx], dtype=float)
            values = np.atleast_1d(np.asarray(key_rate_bps(system, lengths), dtype=float))
            for i, r in zip(idx, values, strict=True):
                rates[i] = max(0.0, float(r))
    return rates


class Link:
    """A full-duplex fibre link with a QKD key pool.

    Parameters
    ----------
    env : simpy.Environment
    spec : LinkSpec
    rate_bps : float
        The nominal secret key rate (from :func:`link_rates_bps`).
    observer : callable, optional
        Receives the pool's changes (see :class:`network.records.PoolLog`).
    pool : FluidKeyPool, optional
        A pool to use instead of a fluid one (alternative key-supply models).

    Attributes
    ----------
    pool : FluidKeyPool
    free_at : dict
        Per sending node, when that direction's channel is next free (FIFO queueing).
    cut, attack_factor, nodes_down, tampered
        Fault state; the pool's rate is ``nominal_rate_bps * attack_factor`` while the link
        is intact and both ends are up, else 0.
    """

    def __init__(
        self,
        env: simpy.Environment,
        spec: LinkSpec,
        rate_bps: float,
        *,
        observer: PoolObserver | None = None,
        pool: FluidKeyPool | None = None,
    ) -> None:
        self.env = env
        self.spec = spec
        self.name = spec.name
        self.a, self.b = spec.a, spec.b
        self.nominal_rate_bps = float(rate_bps)
        self.latency_s = spec.propagation_s
        self.bandwidth_bps = float(spec.bandwidth_bps)
        self.pool = (
            pool
            if pool is not None
            else FluidKeyPool(
                env,
                rate_bps,
                spec.capacity_bits,
                spec.initial_bits,
                block_bits=spec.block_bits,
                name=f"link {spec.name}",
                observer=observer,
            )
        )
        self.free_at: dict[str, float] = {spec.a: env.now, spec.b: env.now}
        self.cut = False
        self.attack_factor = 1.0
        self.under_attack = False
        self.tampered = False
        self.nodes_down: set[str] = set()
        self.transfers: set[Any] = set()
        self.cipher_state: Any = None
        self.bits: Any = None  # BitStore in bit-exact mode
        self.session_key: bytes | None = None
        self.nonce_counter = 0

    def __repr__(self) -> str:
        return f"Link({self.name!r}, rate={self.pool.rate_bps:g} b/s, level={self.pool.level:g})"

    def ends(self) -> tuple[str, str]:
        return self.a, self.b

    def other(self, node: str) -> str:
        return self.b if node == self.a else self.a

    @property
    def usable(self) -> bool:
        """Can carry traffic: not cut and both ends up."""
        return not self.cut and not self.nodes_down

    @property
    def routable(self) -> bool:
        """Offered to routing: usable and not raising an eavesdropping alarm."""
        return self.usable and not self.under_attack

    @property
    def producing(self) -> bool:
        """Producing key now (usable and the attack, if any, leaves a positive rate)."""
        return self.usable and self.attack_factor > 0 and self.nominal_rate_bps > 0

    def never_suffices(self, bits: float) -> bool:
        """True if the link has no nominal rate and can never hold ``bits`` for a new request."""
        if self.nominal_rate_bps > 0 or bits <= 0:
            return False
        return self.pool.level - self.pool.pending_bits < bits * (1 - 1e-9)

    def update_rate(self) -> None:
        """Set the pool's rate from the fault state."""
        rate = self.nominal_rate_bps * self.attack_factor if self.usable else 0.0
        if rate != self.pool.rate_bps:
            self.pool.set_rate(rate)

    def tx_time(self, n_bytes: int) -> float:
        """Seconds to serialise ``n_bytes`` onto the link."""
        return 8.0 * n_bytes / self.bandwidth_bps


def expected_wait_s(link: Link, bits: float) -> float:
    """Expected key wait for a new request of ``bits`` behind the current waiters."""
    pool = link.pool
    short = bits + pool.pending_bits - pool.level
    if short <= 0:
        return 0.0
    rate = pool.rate_bps
    return math.inf if rate <= 0 else short / rate
