"""Flower's legacy messages on the wire: serialized sizes, in-process proxies, seeded sampling.

A ``FitIns`` / ``FitRes`` / ``EvaluateIns`` / ``EvaluateRes`` crosses the simulated network
as its protobuf serialization (Flower's own :mod:`flwr.common.serde`, in the
``ServerMessage`` / ``ClientMessage`` envelope a gRPC transport sends): that is the size a
transfer carries, and the one-time pad takes 8 key bits per byte of it on every hop.
:func:`proxy_class` gives a ``ClientProxy`` that passes every message through that
serialization in process, so the client and the server never share arrays, and counts the
bytes; :func:`client_manager` gives a ``ClientManager`` whose sampling draws from a seeded
stream per round and phase (Flower's own draws from Python's global ``random``).

Flower is imported inside the functions: the module imports without it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["client_manager", "message_bytes", "proxy_class"]


def message_bytes(msg: Any) -> int:
    """Serialized bytes of a Flower ``FitIns``, ``FitRes``, ``EvaluateIns`` or
    ``EvaluateRes`` in its gRPC envelope (``ServerMessage`` / ``ClientMessage``)."""
    return len(_to_wire(msg))


def _to_wire(msg: Any) -> bytes:
    from flwr.common import EvaluateIns, EvaluateRes, FitIns, FitRes, serde
    from flwr.proto.transport_pb2 import ClientMessage, ServerMessage

    if isinstance(msg, FitIns):
        return ServerMessage(fit_ins=serde.fit_ins_to_proto(msg)).SerializeToString()
    if isinstance(msg, EvaluateIns):
        return ServerMessage(evaluate_ins=serde.evaluate_ins_to_proto(msg)).SerializeToString()
    if isinstance(msg, FitRes):
        return ClientMessage(fit_res=serde.fit_res_to_proto(msg)).SerializeToString()
    if isinstance(msg, EvaluateRes):
        return ClientMessage(evaluate_res=serde.evaluate_res_to_proto(msg)).SerializeToString()
    raise TypeError(f"not a Flower fit/evaluate message: {type(msg).__name__}")


def _from_wire(data: bytes, kind: str) -> Any:
    from flwr.common import serde
    from flwr.proto.transport_pb2 import ClientMessage, ServerMessage

    if kind in ("fit_ins", "evaluate_ins"):
        sm = ServerMessage.FromString(data)
        if kind == "fit_ins":
            return serde.fit_ins_from_proto(sm.fit_ins)
        return serde.evaluate_ins_from_proto(sm.evaluate_ins)
    cm = ClientMessage.FromString(data)
    if kind == "fit_res":
        return serde.fit_res_from_proto(cm.fit_res)
    return serde.evaluate_res_from_proto(cm.evaluate_res)


@functools.cache
def proxy_class() -> type:
    """``InProcessClientProxy(cid, client, index)``: a ``flwr.server.client_proxy.ClientProxy``
    calling a ``flwr.client.Client`` in process, every message serialized on the way.

    ``wire`` lists ``(kind, bytes)`` of every message it carried, in order.
    """
    from flwr.common import (
        Code,
        DisconnectRes,
        GetParametersRes,
        GetPropertiesRes,
        Status,
    )
    from flwr.server.client_proxy import ClientProxy

    class InProcessClientProxy(ClientProxy):
        """A Flower client called in process, its messages serialized on the way."""

        def __init__(self, cid: str, client: Any, index: int) -> None:
            super().__init__(cid)
            self.client = client
            self.index = index
            self.wire: list[tuple[str, int]] = []

        def _carry(self, msg: Any, kind: str) -> Any:
            data = _to_wire(msg)
            self.wire.append((kind, len(data)))
            return _from_wire(data, kind)

        def get_properties(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            res = self.client.get_properties(ins)
            return GetPropertiesRes(status=res.status, properties=dict(res.properties))

        def get_parameters(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            res = self.client.get_parameters(ins)
            if res.status.code != Code.OK:
                return res
            return GetParametersRes(status=res.status, parameters=res.parameters)

        def fit(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            res = self.client.fit(self._carry(ins, "fit_ins"))
            return self._carry(res, "fit_res")

        def evaluate(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            res = self.client.evaluate(self._carry(ins, "evaluate_ins"))
            return self._carry(res, "evaluate_res")

        def reconnect(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            _ = Status(code=Code.OK, message="")
            return DisconnectRes(reason="")

    return InProcessClientProxy


@functools.cache
def _manager_class() -> type:
    from flwr.server.client_manager import SimpleClientManager

    class SeededClientManager(SimpleClientManager):
        """Every client is registered up front; ``sample`` draws from a seeded stream
        keyed by ``(seed, key)``, where the driver sets ``key`` (round, phase) before each
        ``configure_fit`` / ``configure_evaluate``."""

        def __init__(self, seed: int) -> None:
            super().__init__()
            self.seed = seed
            self.key: tuple[int, ...] = (0,)

        def wait_for(self, num_clients: int, timeout: int = 86400) -> bool:
            return len(self.clients) >= num_clients  # no one else will connect

        def sample(
            self,
            num_clients: int,
            min_num_clients: int | None = None,
            criterion: Any = None,
        ) -> list[Any]:
            ids = list(self.clients)
            if criterion is not None:
                ids = [c for c in ids if criterion.select(self.clients[c])]
            if num_clients > len(ids):  # as Flower: too few to sample
                return []
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=self.key))
            picked = sorted(rng.choice(len(ids), size=num_clients, replace=False).tolist())
            return [self.clients[ids[k]] for k in picked]

    return SeededClientManager


def client_manager(proxies: list[Any], seed: int) -> Any:
    """A ``flwr.server.client_manager.ClientManager`` holding ``proxies``, sampling with
    ``seed`` (set its ``key`` to ``(round, phase)`` before the strategy samples)."""
    cm = _manager_class()(seed)
    for p in proxies:
        cm.register(p)
    return cm
