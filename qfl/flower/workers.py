"""Client processes for the Flower adapter: a phase's clients train in parallel, as on the
actors of Flower's simulation.

:class:`ClientWorkers` starts ``n`` processes (spawned, one torch thread each); client ``i``
lives in worker ``i % n``, built there by the scenario's ``client_fn`` the first time it is
called, and keeps its state between rounds in that process. A message crosses as its
serialized bytes (the same serialization :mod:`qfl.flower.messages` measures), so the
server and a client never share arrays; a client that raises comes back as a
:class:`ClientError` naming its exception. The numbers equal those of the in-process
clients at one torch thread each.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["ClientError", "ClientWorkers"]


class ClientError(RuntimeError):
    """A client's ``fit`` or ``evaluate`` raised in its worker process (the text names the
    exception: ``ValueError: ...``)."""


_STATE: dict[str, Any] = {}


def _init(path: str, names: list[str], seed: int, sys_path: list[str], parent: int) -> None:
    import torch

    from qfl.cosim.executors import _die_with_parent

    _die_with_parent(parent)
    sys.path[:] = list(dict.fromkeys([*sys_path, *sys.path]))
    torch.set_num_threads(1)
    _STATE.update(path=path, names=names, seed=seed, clients={})


def _ready() -> bool:
    return True


def _call(i: int, phase: str, data: bytes) -> bytes | str:
    """Worker: client ``i``'s ``fit`` / ``evaluate`` of the serialized instruction; the
    serialized result, or the text of the exception it raised."""
    from qfl.flower.loading import build_clients
    from qfl.flower.messages import _from_wire, _to_wire

    clients = _STATE["clients"]
    try:
        if i not in clients:
            clients[i] = build_clients(_STATE["path"], _STATE["names"], _STATE["seed"], [i])[i]
        ins = _from_wire(data, f"{phase}_ins")
        res = getattr(clients[i], phase)(ins)
        return _to_wire(res)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


class ClientWorkers:
    """``n`` client processes (see the module).

    Parameters
    ----------
    path : str
        The scenario's ``learning.client_fn``.
    names : sequence of str
        The client nodes (client ``i`` is ``names[i]``).
    seed : int
        The scenario's seed (in the clients' ``node_config``).
    n : int
        Processes.
    """

    def __init__(self, path: str, names: Sequence[str], seed: int, n: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        args = (path, list(names), seed, list(sys.path), os.getpid())
        self.n = n
        self.pools = [
            cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=_init, initargs=args)
            for _ in range(n)
        ]
        # Start the processes now, from this thread: a process dies with the thread that
        # started it (the parent-death signal), and the phases call from short-lived threads.
        for f in [pool.submit(_ready) for pool in self.pools]:
            f.result()

    def call(self, i: int, phase: str, data: bytes) -> bytes:
        """Client ``i``'s serialized result of the serialized instruction ``data``.

        Raises
        ------
        ClientError
            The client raised.
        """
        out = self.pools[i % self.n].submit(_call, i, phase, data).result()
        if isinstance(out, str):
            raise ClientError(out)
        return out

    def close(self) -> None:
        """Stop the processes."""
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)
