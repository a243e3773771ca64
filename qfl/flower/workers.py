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
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ClientError", "ClientWorkers"]


def _placement(n_clients: int, n: int, sizes: Sequence[int] | None) -> list[int]:
    """The process of each client: largest first onto the least loaded (round robin
    without sizes).

    Examples
    --------
    >>> _placement(4, 2, [10, 1, 6, 5])
    [0, 0, 1, 1]
    >>> _placement(3, 2, None)
    [0, 1, 0]
    """
    if not sizes or not any(sizes):
        return [i % n for i in range(n_clients)]
    load, place = [0] * n, [0] * n_clients
    for i in sorted(range(n_clients), key=lambda k: (-sizes[k], k)):
        w = min(range(n), key=lambda k: (load[k], k))
        place[i], load[w] = w, load[w] + max(1, int(sizes[i]))
    return place


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
    sizes : sequence of int, optional
        The clients' training samples: each client is placed, largest first, on the
        process with the least work so far (default: client ``i`` on process ``i % n``).
        A client stays on its process for the whole run.
    """

    def __init__(
        self,
        path: str,
        names: Sequence[str],
        seed: int,
        n: int,
        sizes: Sequence[int] | None = None,
    ) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        args = (path, list(names), seed, list(sys.path), os.getpid())
        self.n = n
        self.place = _placement(len(names), n, sizes)
        self.pools = [
            cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=_init, initargs=args)
            for _ in range(n)
        ]
        # Start the processes now, from this thread: a process dies with the thread that
        # started it (the parent-death signal), and the phases call from short-lived threads.
        for f in [pool.submit(_ready) for pool in self.pools]:
            f.result()

    def submit(self, i: int, phase: str, data: bytes) -> Callable[[], bytes]:
        """Start client ``i``'s ``phase`` on the serialized instruction ``data``; returns a
        function that waits for its serialized result (raising :class:`ClientError` if the
        client raised). Several clients started at once run in parallel, each process
        taking its own clients in turn."""
        fut = self.pools[self.place[i]].submit(_call, i, phase, data)

        def result() -> bytes:
            out = fut.result()
            if isinstance(out, str):
                raise ClientError(out)
            return out

        return result

    def call(self, i: int, phase: str, data: bytes) -> bytes:
        """Client ``i``'s serialized result of the serialized instruction ``data``."""
        return self.submit(i, phase, data)()

    def close(self) -> None:
        """Stop the processes."""
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)
