"""The Key Management Entities of a simulated QKD network, behind ETSI GS QKD 014 semantics.

One :class:`KeyService` holds every KME of a network (one per node) and the SAEs attached
to them. A key asked for by a master SAE at node ``A`` for a slave SAE at node ``B`` is
taken, at the moment of the request (the service clock's simulated time), from the pools of
every link on the network's route from ``A`` to ``B``: with trusted relays, each hop spends
the key's bits on its own link, exactly as a relayed model transfer does. If any hop holds
too little, nothing is taken and the request is refused with 503: no key is ever made up.

The key bits themselves come from the operating system's CSPRNG at that moment (the
simulation accounts for how much key each link holds and when, not for its photon-level
bits); master and slave receive the same bytes under one UUID ``key_ID``. A key is handed
to the slave SAE exactly once, by its ID, and to no other SAE.

Thread safety: every public method takes one lock; the pools are advanced to the clock's
time under it, so requests are served in a single, consistent simulated order.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from network import QKDNetwork
from qfl.kme.clock import ServiceClock
from qfl.kme.journal import Journal, read_journal
from qfl.kme.spec import KeyRequest, KmeError, Limits
from qkd.errors import ParameterError, QflError

__all__ = ["KeyService", "kme_id"]


def kme_id(node: str) -> str:
    """The KME ID of a node (``KME-<node>``)."""
    return f"KME-{node}"


@dataclass(frozen=True)
class _Held:
    master: str
    slave: str
    key: bytes


class KeyService:
    """The KMEs of a network and the keys they hold for their SAEs.

    Parameters
    ----------
    net : network.QKDNetwork
        The simulated network; its links' pools are the key supply.
    saes : mapping of str to str
        SAE ID -> the node whose KME it is attached to.
    clock : ServiceClock
        Gives the simulated time of each request.
    limits : Limits
        Key sizes and counts served.
    journal : Journal, optional
        Where every delivery is recorded before it is answered (``None``: volatile state).

    Examples
    --------
    >>> import simpy
    >>> from network import LinkSpec, NodeSpec, TopologySpec, NoCipher
    >>> from qfl.kme.clock import ManualClock
    >>> topo = TopologySpec((NodeSpec("a"), NodeSpec("r", role="relay"), NodeSpec("b")),
    ...                     (LinkSpec("a", "r", 5.0, skr_bps=1e3, latency_s=0.0),
    ...                      LinkSpec("r", "b", 5.0, skr_bps=1e3, latency_s=0.0)))
    >>> clock = ManualClock()
    >>> svc = KeyService(QKDNetwork(simpy.Environment(), topo, NoCipher(),
    ...                             record_pool_levels=False), {"A": "a", "B": "b"}, clock)
    >>> clock.advance(1.0)  # 1000 bits on each link
    >>> [(kid, key)] = svc.enc_keys("A", "B", KeyRequest(1, 256))
    >>> svc.dec_keys("B", "A", [kid]) == [(kid, key)]
    True
    >>> svc.status("A", "B")["stored_key_count"]  # 744 bits left on each hop
    2
    """

    def __init__(
        self,
        net: QKDNetwork,
        saes: Mapping[str, str],
        clock: ServiceClock,
        limits: Limits | None = None,
        journal: Journal | None = None,
    ) -> None:
        for sae, node in saes.items():
            if node not in net.graph:
                raise ParameterError(f"SAE {sae!r}: node", node, "a node of the network")
        if not saes:
            raise ParameterError("SAEs", "none", "at least one SAE")
        self.net = net
        self.env = net.env
        self.saes = dict(saes)
        self.clock = clock
        self.limits = limits or Limits()
        self.journal = journal
        self._lock = threading.Lock()
        self._pending: dict[str, _Held] = {}
        self._held: dict[tuple[str, str], int] = {}  # keys pending per (master, slave)
        self._served: set[str] = set()
        self._links = {lk.name: lk for lk in net.links.values()}
        self.kme_bits = dict.fromkeys(self._links, 0.0)
        self.keys_issued = 0
        self.keys_delivered = 0

    # -- identities ------------------------------------------------------------------------
    def node_of(self, sae: str, *, caller: bool) -> str:
        """The node of an SAE; an unknown caller is 401, an unknown target 400."""
        node = self.saes.get(sae)
        if node is None:
            if caller:
                raise KmeError(401, "unknown SAE: the caller is not an SAE of this network")
            raise KmeError(400, f"unknown SAE ID {sae[:64]!r}", [{"SAE_ID": sae[:64]}])
        return node

    def _pair(self, caller: str, other: str) -> tuple[str, str]:
        a = self.node_of(caller, caller=True)
        b = self.node_of(other, caller=False)
        if caller == other:
            raise KmeError(400, "master and slave SAE are the same SAE")
        if a == b:
            raise KmeError(
                400,
                f"SAEs {caller!r} and {other!r} are attached to the same KME ({kme_id(a)}); "
                "ETSI GS QKD 014 key delivery here is between two KMEs joined by QKD links",
            )
        return a, b

    # -- clock and pools -------------------------------------------------------------------
    def _advance(self, t: float | None = None) -> float:
        t = self.clock.now() if t is None else t
        if t > self.env.now:
            self.env.run(until=t)
        return float(self.env.now)

    def _route(self, a: str, b: str, bits: float) -> list[str]:
        path = self.net.route(a, b, bits)
        if path is None:
            raise KmeError(
                503,
                f"no route from {kme_id(a)} to {kme_id(b)}: faults have cut every path",
                [{"source_KME_ID": kme_id(a), "target_KME_ID": kme_id(b)}],
            )
        return path

    def _hops(self, path: Sequence[str]) -> list[Any]:
        return [self.net.link(u, v) for u, v in itertools.pairwise(path)]

    # -- the three calls -------------------------------------------------------------------
    def status(self, master: str, slave: str) -> dict[str, Any]:
        """The spec's Status of the pair: ``stored_key_count`` is the number of keys of
        ``key_size`` the route could deliver now (the fullest hop bounds nothing, the
        emptiest bounds all)."""
        a, b = self._pair(master, slave)
        size = self.limits.key_size
        with self._lock:
            self._advance()
            path = self.net.route(a, b, size)
            hops = self._hops(path) if path else []
            stored = min((int(lk.pool.level // size) for lk in hops), default=0)
            cap = min((int(lk.pool.capacity // size) for lk in hops), default=0)
        return {
            "source_KME_ID": kme_id(a),
            "target_KME_ID": kme_id(b),
            "master_SAE_ID": master,
            "slave_SAE_ID": slave,
            "key_size": size,
            "stored_key_count": stored,
            "max_key_count": cap,
            "max_key_per_request": self.limits.max_key_per_request,
            "max_key_size": self.limits.max_key_size,
            "min_key_size": self.limits.min_key_size,
            "max_SAE_ID_count": self.limits.max_sae_id_count,
        }

    def enc_keys(self, master: str, slave: str, req: KeyRequest) -> list[tuple[str, bytes]]:
        """Take ``number x size`` bits from every hop between the two KMEs and hand out the
        keys to the master SAE (recorded in the journal first).

        Raises
        ------
        KmeError
            400 for a bad pair or a request no pool could ever hold; 503 when a hop holds
            too little key now (nothing is taken) or no route is left.
        """
        a, b = self._pair(master, slave)
        bits = float(req.number * req.size)
        with self._lock:
            held = self._held.get((master, slave), 0)
            if held + req.number > self.limits.max_held_per_pair:
                raise KmeError(
                    503,
                    f"{held} keys issued to {master!r} for {slave!r} are not yet fetched by "
                    f"the slave; at most {self.limits.max_held_per_pair} are kept per pair",
                )
            t = self._advance()
            path = self._route(a, b, bits)
            hops = self._hops(path)
            for lk in hops:
                if bits > lk.pool.capacity:
                    raise KmeError(
                        400,
                        f"{req.number} keys of {req.size} bits need {bits:.0f} bits on link "
                        f"{lk.name}, more than its key store holds ({lk.pool.capacity:.0f})",
                    )
            short = [lk for lk in hops if lk.pool.level < bits]
            if short:
                lk = short[0]
                raise KmeError(
                    503,
                    f"not enough key: link {lk.name} holds {lk.pool.level:.0f} bits, "
                    f"{bits:.0f} needed; retry after {lk.pool.time_to(bits):.3g} s "
                    "of simulated key generation",
                    [
                        {"link": x.name, "available_bits": int(x.pool.level), "needed_bits": bits}
                        for x in short
                    ],
                )
            for lk in hops:
                self._take(lk, bits)
            keys = [
                (str(uuid.uuid4()), secrets.token_bytes(req.size // 8)) for _ in range(req.number)
            ]
            if self.journal is not None:
                self.journal.write(
                    {
                        "op": "enc",
                        "t": t,
                        "master": master,
                        "slave": slave,
                        "path": path,
                        "bits": bits,
                        "keys": [[k, base64.b64encode(v).decode()] for k, v in keys],
                    }
                )
            for kid, key in keys:
                self._pending[kid] = _Held(master, slave, key)
            self._held[(master, slave)] = held + len(keys)
            self.keys_issued += len(keys)
        return keys

    def _take(self, link: Any, bits: float) -> None:
        got = min(bits, link.pool.level)
        if got > 0 and not link.pool.try_take(got):
            raise KmeError(503, f"link {link.name}: key pool busy")  # pragma: no cover
        self.kme_bits[link.name] += got

    def dec_keys(self, slave: str, master: str, ids: Sequence[str]) -> list[tuple[str, bytes]]:
        """Hand the keys ``ids`` to the slave SAE, once; all or none.

        Raises
        ------
        KmeError
            400 for an unknown or already delivered ID, or one issued by another master;
            401 for a key of a pair the caller does not belong to.
        """
        self._pair(slave, master)
        with self._lock:
            t = self._advance()
            for kid in ids:
                held = self._pending.get(kid)
                if held is None:
                    why = "already delivered" if kid in self._served else "unknown"
                    raise KmeError(400, f"key_ID {kid} is {why}", [{"key_ID": kid}])
                if held.slave != slave:
                    raise KmeError(
                        401,
                        f"key_ID {kid} was not issued for this SAE",
                        [{"key_ID": kid}],
                    )
                if held.master != master:
                    raise KmeError(
                        400,
                        f"key_ID {kid} was not issued by master SAE {master!r}",
                        [{"key_ID": kid}],
                    )
            if self.journal is not None:
                self.journal.write({"op": "dec", "t": t, "ids": list(ids)})
            out = [(kid, self._pending.pop(kid).key) for kid in ids]
            self._held[(master, slave)] -= len(out)
            self._served.update(ids)
            self.keys_delivered += len(out)
        return out

    # -- state -----------------------------------------------------------------------------
    def restore(self, path: str) -> float:
        """Replay a journal: the pools' debits at their times, the keys still held and those
        served. Returns the simulated time of the last record (0 if none); call before
        serving, with a clock that starts there."""
        last = 0.0
        with self._lock:
            try:
                records = list(read_journal(path))
            except ValueError as exc:
                raise ParameterError("--state journal", str(path), f"readable ({exc})") from None
            for i, rec in enumerate(records):
                try:
                    last = max(last, self._replay_record(rec))
                except (KeyError, TypeError, ValueError, QflError, nx.NetworkXException) as exc:
                    raise ParameterError(
                        f"--state journal {path} record {i + 1}",
                        str(rec)[:80],
                        f"a record of this scenario's network ({type(exc).__name__}: {exc})",
                    ) from None
        return last

    def _replay_record(self, rec: dict[str, Any]) -> float:
        t = float(rec["t"])
        self._advance(t)
        if rec["op"] == "enc":
            for lk in self._hops(rec["path"]):
                self._take(lk, float(rec["bits"]))
            pair = (rec["master"], rec["slave"])
            for kid, b64 in rec["keys"]:
                self._pending[kid] = _Held(*pair, base64.b64decode(b64))
                self._held[pair] = self._held.get(pair, 0) + 1
                self.keys_issued += 1
        elif rec["op"] == "dec":
            for kid in rec["ids"]:
                gone = self._pending.pop(kid, None)
                if gone is not None:
                    self._held[(gone.master, gone.slave)] -= 1
                self._served.add(kid)
                self.keys_delivered += 1
        else:
            raise ValueError(f"unknown op {rec['op']!r}")
        return t

    @property
    def pending_keys(self) -> int:
        """Keys handed to a master SAE and not yet to its slave."""
        return len(self._pending)

    def accounting(self) -> dict[str, Any]:
        """Per link: what the pool generated and held, and what the KMEs took from it.

        ``kme_bits <= initial_bits + generated_bits`` on every link: the service never hands
        out more key than the simulated links produced.
        """
        with self._lock:
            now = self._advance()
            links = {}
            for name, lk in self._links.items():
                acc = lk.pool.accounting()
                links[name] = {
                    "initial_bits": acc["initial_bits"],
                    "generated_bits": acc["generated_bits"],
                    "net_generated_bits": acc["initial_bits"]
                    + acc["generated_bits"]
                    - acc["auth_bits"],
                    "consumed_bits": acc["consumed_bits"],
                    "kme_bits": self.kme_bits[name],
                    "level_bits": acc["level_bits"],
                }
            return {
                "sim_time_s": now,
                "keys_issued": self.keys_issued,
                "keys_delivered": self.keys_delivered,
                "keys_pending": len(self._pending),
                "links": links,
                "ok": all(
                    v["kme_bits"] <= v["net_generated_bits"] * (1 + 1e-9) + 1e-6
                    for v in links.values()
                ),
            }

    def __repr__(self) -> str:
        return (
            f"KeyService({len(self.saes)} SAEs on {self.net.graph.number_of_nodes()} KMEs, "
            f"t={self.env.now:g}, pending={len(self._pending)})"
        )
