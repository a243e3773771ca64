"""Drive a Flower ``Strategy`` with in-process clients, round by round, as Flower's ``Server``.

:class:`FlowerDriver` runs the loop of ``flwr.server.Server.fit`` (initial parameters,
``configure_fit``, the clients' ``fit``, ``aggregate_fit``, the strategy's centralized
``evaluate``, ``configure_evaluate``, the clients' ``evaluate``, ``aggregate_evaluate``),
with two differences that make it the learning half of a co-simulation:

- *which* results reach the server is decided by the network half (the simulated clock):
  a client whose ``FitIns`` / ``FitRes`` did not arrive in time (key starvation, a
  deadline, a fault) is one of the round's ``failures`` (a ``TimeoutError``), exactly where
  Flower puts a client that timed out; a client that raises is a failure too, as in Flower;
- results are gathered in the order of the strategy's instructions (Flower gathers them in
  completion order), and clients are sampled from a seeded stream, so a run is reproducible.

The clients of a phase run ``parallel`` at a time on threads (as Flower's simulation runs
them on several actors), the torch threads divided among them; each client's numbers are
those of a run at that many threads per client, whatever runs beside it.

A client returning parameters whose shapes differ from the initial parameters' is an
error of the scenario (:class:`~qfl.scenario.ScenarioError` on ``learning.client_fn``): no
strategy can aggregate it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qfl.scenario import ScenarioError

__all__ = [
    "EVALUATE",
    "FIT",
    "INIT",
    "FlowerDriver",
    "RoundRecord",
    "initial_parameters",
    "shapes_of",
]

INIT: tuple[int, ...] = (0,)
"""Sampling key of the client asked for the initial parameters."""
FIT, EVALUATE = 0, 1
"""Phase numbers of the sampling keys ``(round, phase)``."""


def shapes_of(parameters: Any) -> list[tuple[int, ...]]:
    """The array shapes of Flower ``Parameters``."""
    from flwr.common import parameters_to_ndarrays

    return [tuple(a.shape) for a in parameters_to_ndarrays(parameters)]


@dataclass
class RoundRecord:
    """What happened in one round (1-based ``round``), Flower's ``History`` per round.

    Attributes
    ----------
    fit_clients, evaluate_clients : list of int
        The clients the strategy instructed, in its order.
    fit_failures, evaluate_failures : dict of int to str
        Clients whose result did not count, and why.
    aggregated : bool
        Whether ``aggregate_fit`` returned new global parameters.
    fit_metrics, evaluate_metrics : dict
        The strategy's aggregated metrics.
    evaluate_loss : float or None
        The aggregated federated loss.
    client_metrics : dict of int to tuple
        ``(loss, num_examples, metrics)`` of every client's evaluation that counted.
    centralized : tuple or None
        ``(loss, metrics)`` of the strategy's own ``evaluate``.
    wire_bytes : list of tuple
        ``(client, kind, bytes)`` of every message serialized this round.
    """

    round: int
    fit_clients: list[int] = field(default_factory=list)
    fit_failures: dict[int, str] = field(default_factory=dict)
    aggregated: bool = False
    fit_metrics: dict[str, Any] = field(default_factory=dict)
    centralized: tuple[float, dict[str, Any]] | None = None
    evaluate_clients: list[int] = field(default_factory=list)
    evaluate_failures: dict[int, str] = field(default_factory=dict)
    evaluate_loss: float | None = None
    evaluate_metrics: dict[str, Any] = field(default_factory=dict)
    client_metrics: dict[int, tuple[float, int, dict[str, Any]]] = field(default_factory=dict)
    wire_bytes: list[tuple[int, str, int]] = field(default_factory=list)


Arrived = Callable[[int, str], str]
"""``arrived(client, phase)``: ``""`` if its messages of ``phase`` (``fit`` or ``evaluate``)
made it in time, else why not."""


def _all_arrive(client: int, phase: str) -> str:
    return ""


class FlowerDriver:
    """The server side of a Flower run, one round per :meth:`round` call.

    Parameters
    ----------
    strategy : flwr.server.strategy.Strategy
        The user's strategy (a fresh one: strategies keep state).
    proxies : sequence of ClientProxy
        In-process proxies (:func:`qfl.flower.messages.proxy_class`), client ``i`` at ``i``.
    manager : ClientManager
        Holding ``proxies`` (:func:`qfl.flower.messages.client_manager`).
    names : sequence of str
        Client names (node names), for messages.
    initial : Parameters, optional
        The initial global parameters (default: the strategy's ``initialize_parameters``,
        else one sampled client's ``get_parameters``, as Flower does).
    parallel : int
        Clients of a phase that run at once (threads; 1: one after another). Their
        ``fit`` / ``evaluate`` must not share mutable state (each client its own model).
    """

    def __init__(
        self,
        strategy: Any,
        proxies: Sequence[Any],
        manager: Any,
        names: Sequence[str],
        initial: Any = None,
        parallel: int = 1,
    ) -> None:
        self.parallel = max(1, int(parallel))
        #: :class:`qfl.flower.workers.ClientWorkers` the proxies call (None: in process);
        #: whoever sets it closes it.
        self.workers: Any = None
        self.strategy = strategy
        self.proxies = list(proxies)
        self.manager = manager
        self.names = list(names)
        self.history: list[RoundRecord] = []
        init = strategy.initialize_parameters(client_manager=manager)
        if init is None:
            init = initial if initial is not None else initial_parameters(manager)
        self.parameters = init
        self.shapes = shapes_of(init)
        self.centralized0 = strategy.evaluate(0, parameters=self.parameters)

    def _index(self, proxy: Any) -> int:
        return int(proxy.index)

    def _check_shapes(self, i: int, r: int, parameters: Any) -> None:
        got = shapes_of(parameters)
        if got != self.shapes:
            raise ScenarioError(
                "learning.client_fn",
                f"client {i} ({self.names[i]!r}) returned parameters of shapes {got} in round "
                f"{r}, expected {self.shapes} (the initial parameters' shapes)",
            )

    def _calls(
        self, instructions: Sequence[Any], phase: str, r: int, arrived: Arrived
    ) -> dict[int, Any]:
        """Each arrived client's ``fit`` / ``evaluate`` result (or the exception it raised),
        by client index, ``parallel`` clients at a time."""
        todo = [(p, ins) for p, ins in instructions if not arrived(self._index(p), phase)]

        def call(item: tuple[Any, Any]) -> Any:
            proxy, ins = item
            try:
                return getattr(proxy, phase)(ins, timeout=None, group_id=r)
            except Exception as exc:
                return exc

        if self.workers is not None:  # client processes: start every client, then wait
            started = []
            for p, ins in todo:
                try:
                    started.append((p, p.start(ins, phase)))
                except Exception as exc:
                    started.append((p, exc))
            out: dict[int, Any] = {}
            for p, wait in started:
                try:
                    out[self._index(p)] = wait if isinstance(wait, Exception) else wait()
                except Exception as exc:
                    out[self._index(p)] = exc
            return out
        if self.parallel < 2 or len(todo) < 2:
            return {self._index(p): call((p, ins)) for p, ins in todo}
        import concurrent.futures as cf

        import torch

        from qfl.threads import using_threads

        workers = min(self.parallel, len(todo))
        with (
            using_threads(max(1, torch.get_num_threads() // workers)),
            cf.ThreadPoolExecutor(workers) as pool,
        ):
            results = list(pool.map(call, todo))
        return {self._index(p): res for (p, _), res in zip(todo, results, strict=True)}

    def _collect(
        self,
        instructions: Sequence[Any],
        phase: str,
        r: int,
        arrived: Arrived,
        clients: list[int],
        failed: dict[int, str],
    ) -> tuple[list[tuple[int, Any, Any]], list[Any]]:
        """Run one phase's calls and sort them, in instruction order, into Flower's
        ``results`` (each with its client index) and ``failures``, noting each client in
        ``clients`` and each failure's reason in ``failed``."""
        from flwr.common import Code

        results: list[tuple[int, Any, Any]] = []
        failures: list[Any] = []
        calls = self._calls(instructions, phase, r, arrived)
        for proxy, _ins in instructions:
            i = self._index(proxy)
            clients.append(i)
            why = arrived(i, phase)
            if why:
                failed[i] = why
                failures.append(TimeoutError(f"client {self.names[i]!r}: {why}"))
                continue
            res = calls[i]
            if isinstance(res, Exception):  # a failing client is a failure, as in Flower
                failed[i] = f"raised {type(res).__name__}: {res}"
                failures.append(res)
                continue
            if res.status.code != Code.OK:
                failed[i] = f"status {res.status.code.name}: {res.status.message}"
                failures.append((proxy, res))
                continue
            results.append((i, proxy, res))
        return results, failures

    def _wire(self, rec: RoundRecord) -> None:
        for p in self.proxies:
            rec.wire_bytes.extend((p.index, kind, n) for kind, n in p.wire)
            p.wire.clear()

    def round(self, r: int, arrived: Arrived = _all_arrive) -> RoundRecord:
        """Run round ``r`` (1-based): fit, aggregate, centralized and federated evaluation.

        Parameters
        ----------
        arrived : callable
            Which clients' messages arrived in time (the network half's verdict).
        """

        rec = RoundRecord(r)
        self.manager.key = (r, FIT)
        instructions = self.strategy.configure_fit(
            server_round=r, parameters=self.parameters, client_manager=self.manager
        )
        if instructions:
            results, failures = self._collect(
                instructions, "fit", r, arrived, rec.fit_clients, rec.fit_failures
            )
            for i, _proxy, res in results:
                self._check_shapes(i, r, res.parameters)
            new, metrics = self.strategy.aggregate_fit(
                r, [(proxy, res) for _i, proxy, res in results], failures
            )
            rec.fit_metrics = dict(metrics or {})
            if new is not None and new.tensors:
                self.parameters = new
                rec.aggregated = True
        cen = self.strategy.evaluate(r, parameters=self.parameters)
        if cen is not None:
            rec.centralized = (float(cen[0]), dict(cen[1]))
        self._evaluate(r, rec, arrived)
        self._wire(rec)
        self.history.append(rec)
        return rec

    def _evaluate(self, r: int, rec: RoundRecord, arrived: Arrived) -> None:

        self.manager.key = (r, EVALUATE)
        instructions = self.strategy.configure_evaluate(
            server_round=r, parameters=self.parameters, client_manager=self.manager
        )
        if not instructions:
            return
        results, failures = self._collect(
            instructions, "evaluate", r, arrived, rec.evaluate_clients, rec.evaluate_failures
        )
        for i, _proxy, res in results:
            rec.client_metrics[i] = (float(res.loss), int(res.num_examples), dict(res.metrics))
        loss, metrics = self.strategy.aggregate_evaluate(
            r, [(proxy, res) for _i, proxy, res in results], failures
        )
        rec.evaluate_loss = None if loss is None else float(loss)
        rec.evaluate_metrics = dict(metrics or {})

    def global_accuracy(self, rec: RoundRecord) -> float:
        """The centralized ``accuracy`` metric of a round (NaN if the strategy has none)."""
        if rec.centralized is None:
            return math.nan
        return _number(rec.centralized[1].get("accuracy"))


def _number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def initial_parameters(manager: Any) -> Any:
    """One sampled client's ``get_parameters`` (Flower's fallback when the strategy gives
    none)."""
    from flwr.common import GetParametersIns

    manager.key = INIT
    proxy = manager.sample(1)[0]
    return proxy.get_parameters(GetParametersIns(config={}), timeout=None, group_id=0).parameters
