"""The learning job of ``learning.method: flower``: a user's Flower strategy and clients.

Network half (:meth:`FlowerJob.schedule`): each round, the strategy's ``configure_fit``
(on a probe copy, with the initial parameters) says which clients train and what each
``FitIns`` holds; every ``FitIns`` is a transfer server -> client of its serialized size,
the client trains for its compute profile's time (:mod:`qfl.flower.profile`), and its
``FitRes`` (the same parameter shapes) is a transfer back. The fit phase ends when every
result is in or at ``learning.round_timeout_s`` after it began; then ``configure_evaluate``
gives the evaluate phase, likewise (``EvaluateIns`` down, forward passes, ``EvaluateRes``
up). A client whose messages did not arrive (no key in time, the deadline, a fault with no
way round) is recorded as dropped for that round.

Learning half (:meth:`FlowerJob.execute`): a fresh strategy and fresh clients run the
completed rounds in Flower's order (:class:`~qfl.flower.adapter.FlowerDriver`), the
dropped clients being the round's ``failures``; so ``accept_failures`` and
``min_fit_clients`` act as in Flower.

Sizes come from the initial parameters' shapes, which a client may not change (the driver
checks). Metrics a client adds to its ``FitRes`` / ``EvaluateRes`` are not known before it
runs, so the timeline's result sizes leave them out (a few bytes per metric); the driver
records every message's real size (``RoundRecord.wire_bytes``).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import simpy

from network import QKDNetwork
from qfl.cosim.jobs import EvalRow, Job, OnEval
from qfl.cosim.plan import RoundOps, server_round
from qfl.cosim.schedule import ComputeProfile, Segment, Timeline, _op, _send
from qfl.flower.adapter import EVALUATE, FIT, FlowerDriver, initial_parameters, shapes_of
from qfl.flower.loading import build_clients, build_strategy, import_flower
from qfl.flower.messages import client_manager, message_bytes, proxy_class
from qfl.flower.profile import ClientWork, client_work
from qfl.scenario import Scenario, ScenarioError

__all__ = ["FlowerJob", "PhasePlan"]

PHASES = ("fit", "evaluate")
PROCESS_MIN_SAMPLES = 50_000
"""Samples a run trains (over clients, epochs and rounds) from which the clients run in
processes of their own (:mod:`qfl.flower.workers`) rather than on threads: enough work to
pay for starting them (a few seconds), and no lock shared between the clients' Python
code. Either way each client trains on one torch thread, so the numbers are the same."""


@dataclass(frozen=True)
class PhasePlan:
    """One phase of one round on the network: who takes part and the bytes each way."""

    clients: tuple[int, ...]
    down_bytes: tuple[int, ...]
    up_bytes: tuple[int, ...]
    compute_s: tuple[float, ...]


class _Session:
    """Fresh clients, their proxies, a seeded client manager, initial parameters."""

    def __init__(self, sc: Scenario, names: Sequence[str]) -> None:
        lr = sc.learning
        self.clients = build_clients(str(lr.client_fn), names, sc.seed)
        proxy = proxy_class()
        self.proxies = [proxy(str(i), c, i) for i, c in enumerate(self.clients)]
        self.manager = client_manager(self.proxies, sc.seed)
        self._initial: Any = None

    def initial(self) -> Any:
        if self._initial is None:
            try:
                self._initial = initial_parameters(self.manager)
            except Exception as exc:
                raise ScenarioError(
                    "learning.client_fn",
                    f"get_parameters of a client raised {type(exc).__name__}: {exc}",
                ) from None
        return self._initial


class FlowerJob(Job):
    """A user's Flower ``Strategy`` and clients on the QKD clock (see the module)."""

    def __init__(
        self, sc: Scenario, clients: Sequence[str], flops: Sequence[float], server: str
    ) -> None:
        import_flower()
        lr = sc.learning
        self.sc, self.names, self.server = sc, tuple(clients), server
        session = _Session(sc, self.names)
        self.probe = build_strategy(str(lr.strategy), lr.flower, initial=session.initial)
        self.manager = session.manager
        init = self.probe.initialize_parameters(client_manager=self.manager)
        self.initial = init if init is not None else session.initial()
        self.shapes = shapes_of(self.initial)
        self.work: list[ClientWork] = []
        bf = sc.compute.backward_factor
        for i, (c, f) in enumerate(zip(session.clients, flops, strict=True)):
            try:
                work = client_work(
                    c, flops_per_s=f, backward_factor=bf, seconds_per_sample=lr.seconds_per_sample
                )
            except ValueError as exc:
                raise ScenarioError(
                    "learning.seconds_per_sample", f"client {i} ({self.names[i]!r}): {exc}"
                ) from None
            self.work.append(work)
        self._phases: dict[tuple[int, str], PhasePlan] = {}
        self._res_sizes: dict[tuple[str, int], int] = {}
        down = message_bytes(self._fit_ins())
        up = [self._res_bytes("fit", w.train_samples) for w in self.work]
        self.profile = ComputeProfile(
            clients=self.names,
            train_sizes=tuple(w.train_samples for w in self.work),
            flops_per_s=tuple(float(f) for f in flops),
            train_flops_per_sample=tuple(
                w.train_s_per_sample * float(f) for w, f in zip(self.work, flops, strict=True)
            ),
            fuse_flops_per_sample=(0.0,) * len(self.names),
            upload_bytes=tuple(up),
            download_bytes=(down,) * len(self.names),
            local_epochs=lr.local_epochs,
        )

    # -- message sizes (the network half) ------------------------------------------------

    def _fit_ins(self) -> Any:
        from flwr.common import FitIns

        return FitIns(parameters=self.initial, config={})

    def _fit_res(self, n: int) -> Any:
        from flwr.common import Code, FitRes, Status

        return FitRes(Status(Code.OK, "Success"), self.initial, n, {})

    def _evaluate_res(self, n: int) -> Any:
        from flwr.common import Code, EvaluateRes, Status

        return EvaluateRes(Status(Code.OK, "Success"), 1.0, n, {})  # a loss (0 is not sent)

    def _res_bytes(self, name: str, n: int) -> int:
        """Bytes of a ``fit`` / ``evaluate`` result for ``n`` samples (serialized once per
        ``(name, n)``: the result carries the initial parameters, the same every round)."""
        key = (name, n)
        if key not in self._res_sizes:
            res = self._fit_res(n) if name == "fit" else self._evaluate_res(n)
            self._res_sizes[key] = message_bytes(res)
        return self._res_sizes[key]

    def phase(self, r: int, name: str) -> PhasePlan:
        """Round ``r``'s (0-based) ``fit`` or ``evaluate`` phase, as the strategy configures
        it (on the probe, with the initial parameters)."""
        key = (r, name)
        if key not in self._phases:
            self._phases[key] = self._configure(r, name)
        return self._phases[key]

    def _configure(self, r: int, name: str) -> PhasePlan:
        fit = name == "fit"
        self.manager.key = (r + 1, FIT if fit else EVALUATE)
        configure = self.probe.configure_fit if fit else self.probe.configure_evaluate
        try:
            pairs = configure(
                server_round=r + 1, parameters=self.initial, client_manager=self.manager
            )
        except Exception as exc:
            raise ScenarioError(
                "learning.strategy",
                f"configure_{name} of round {r + 1} raised {type(exc).__name__}: {exc}",
            ) from None
        clients, down, up, comp = [], [], [], []
        epochs = self.sc.learning.local_epochs
        sizes: dict[int, int] = {}  # by id: strategies often send one instruction to all
        for proxy, ins in pairs or ():
            i = int(proxy.index)
            w = self.work[i]
            clients.append(i)
            if id(ins) not in sizes:
                sizes[id(ins)] = message_bytes(ins)
            down.append(sizes[id(ins)])
            if fit:
                up.append(self._res_bytes(name, w.train_samples))
                comp.append(epochs * w.train_samples * w.train_s_per_sample)
            else:
                up.append(self._res_bytes(name, w.eval_samples))
                comp.append(w.eval_samples * w.eval_s_per_sample)
        return PhasePlan(tuple(clients), tuple(down), tuple(up), tuple(comp))

    # -- the network half ----------------------------------------------------------------

    def plan(self, r: int) -> RoundOps:
        """The fit phase of round ``r`` as a server round of its selected clients' chains
        (for tools that read plans; :meth:`schedule` runs both phases with the deadline)."""
        ops = server_round(r, len(self.names), down="fit-ins")
        chosen = set(self.phase(r, "fit").clients)
        return RoundOps(r, tuple(c for i, c in enumerate(ops.chains) if i in chosen), ops.end)

    def schedule(
        self, env: simpy.Environment, net: QKDNetwork, rounds: int, tl: Timeline
    ) -> Generator[simpy.Event, Any, None]:
        """The SimPy process of the rounds: two phases each, with the round's deadline."""
        return self._rounds(env, net, rounds, tl)

    def _rounds(
        self, env: simpy.Environment, net: QKDNetwork, rounds: int, tl: Timeline
    ) -> Generator[simpy.Event, Any, None]:
        server = str(self.server)
        for r in range(rounds):
            start = env.now
            tl.round_start_s.append(start)
            critical: list[Segment] = []
            arrived: tuple[int, ...] = ()
            for name in PHASES:
                plan = self.phase(r, name)
                ok, chain = yield from self._run_phase(env, net, tl, r, name, plan, server)
                critical.extend(chain)
                if name == "fit":
                    arrived = ok
                    _op(tl, r, server, "aggregate", env.now, env.now)
            tl.participants.append(arrived)
            tl.critical.append(tuple(critical))
            tl.round_end_s.append(env.now)
            tl.rounds_done = r + 1

    def _run_phase(
        self,
        env: simpy.Environment,
        net: QKDNetwork,
        tl: Timeline,
        r: int,
        name: str,
        plan: PhasePlan,
        server: str,
    ) -> Generator[simpy.Event, Any, tuple[tuple[int, ...], list[Segment]]]:
        if not plan.clients:
            return (), []
        t0 = env.now
        segs: list[list[Segment]] = [[] for _ in plan.clients]
        procs = [
            env.process(self._chain(env, net, tl, r, name, plan, k, server, segs[k]))
            for k in range(len(plan.clients))
        ]
        done = env.all_of(procs)
        timeout = self.sc.learning.round_timeout_s
        if timeout is None:
            yield done
        else:
            yield done | env.timeout(timeout)
        ok = []
        for k, (i, p) in enumerate(zip(plan.clients, procs, strict=True)):
            if p.processed and p.value:
                ok.append(i)
            elif not p.processed:  # still on the way at the deadline: a failure
                who = self.names[i]
                tl.dropped.add((r, who, server, f"{name}-res"))
                last = segs[k][-1].end_s if segs[k] else t0
                segs[k].append(Segment("send", who, last, env.now, None))
                _op(tl, r, who, f"{name}: missed the round's deadline", t0, env.now)
        ends = [sg[-1].end_s if sg else t0 for sg in segs]
        return tuple(ok), segs[ends.index(max(ends))]

    def _chain(
        self,
        env: simpy.Environment,
        net: QKDNetwork,
        tl: Timeline,
        r: int,
        name: str,
        plan: PhasePlan,
        k: int,
        server: str,
        segs: list[Segment],
    ) -> Generator[simpy.Event, Any, bool]:
        who = self.names[plan.clients[k]]
        t0 = env.now
        ok, rec = yield from _send(env, net, tl, r, server, who, plan.down_bytes[k], f"{name}-ins")
        segs.append(Segment("send", server, t0, env.now, rec))
        if not ok:
            return False
        t1 = env.now
        yield env.timeout(plan.compute_s[k])
        _op(tl, r, who, "local-update" if name == "fit" else "evaluate", t1, env.now)
        segs.append(Segment("compute", who, t1, env.now))
        t2 = env.now
        ok, rec = yield from _send(env, net, tl, r, who, server, plan.up_bytes[k], f"{name}-res")
        segs.append(Segment("send", who, t2, env.now, rec))
        return bool(ok)

    # -- the learning half ---------------------------------------------------------------

    def learning_inputs(self) -> dict[str, Any]:
        """The strategy, the clients, the strategy's arguments, the seed."""
        lr = self.sc.learning
        return {
            "strategy": lr.strategy,
            "client_fn": lr.client_fn,
            "flower": lr.flower,
            "seed": self.sc.seed,
        }

    def start(self) -> FlowerDriver:
        """A fresh strategy and fresh clients, at the initial parameters."""
        lr = self.sc.learning
        session = _Session(self.sc, self.names)
        strategy = build_strategy(str(lr.strategy), lr.flower, initial=session.initial)
        parallel = _parallel(session.clients)
        driver = FlowerDriver(
            strategy,
            session.proxies,
            session.manager,
            self.names,
            initial=session.initial(),
            parallel=parallel,
        )
        samples = sum(w.train_samples for w in self.work) * lr.local_epochs * lr.rounds
        if parallel > 1 and samples >= PROCESS_MIN_SAMPLES:
            from qfl.flower.workers import ClientWorkers

            sizes = [w.train_samples for w in self.work]
            driver.workers = ClientWorkers(
                str(lr.client_fn), self.names, self.sc.seed, parallel, sizes
            )
            for p in session.proxies:
                p.workers = driver.workers
        return driver

    def _arrivals(self, tl: Timeline, r: int) -> Any:
        failed: dict[tuple[str, str], str] = {}
        for rr, src, dst, tag in tl.dropped:
            if rr != r:
                continue
            phase = tag.partition("-")[0]
            who = dst if src == self.server else src
            failed.setdefault((phase, who), f"its {tag} did not reach {dst!r} in time")
        names = self.names

        def arrived(i: int, phase: str) -> str:
            return failed.get((phase, names[i]), "")

        return arrived

    def execute(self, tl: Timeline, eval_rounds: set[int], on_eval: OnEval) -> None:
        """Run the completed rounds of ``tl`` through the strategy, the clients dropped by
        the network being the rounds' failures."""
        driver = self.start()
        try:
            for r in range(tl.rounds_done):
                if self.progress is not None:
                    n = len(self.phase(r, "fit").clients)
                    self.progress(r + 1, f"flower round, {n} clients")
                driver.round(r + 1, self._arrivals(tl, r))
                if (r + 1) in eval_rounds:
                    on_eval(r + 1, self.evaluate(driver, r + 1))
        finally:
            if driver.workers is not None:
                driver.workers.close()

    def step(self, learner: Any, ops: RoundOps, transport: Any) -> None:
        """Not used: :meth:`execute` drives the strategy itself."""
        raise NotImplementedError("FlowerJob.execute drives the rounds")

    def evaluate(self, learner: Any, r: int) -> list[EvalRow]:
        """Round ``r``'s evaluation: each client's ``accuracy`` metric from its
        ``EvaluateRes`` (local), the strategy's centralized ``accuracy`` (global)."""
        import math

        rec = learner.history[r - 1]
        glob = learner.global_accuracy(rec)
        rows = []
        total = weight = 0.0
        for i, nm in enumerate(self.names):
            loss_n_metrics = rec.client_metrics.get(i)
            acc = math.nan
            if loss_n_metrics is not None:
                v = loss_n_metrics[2].get("accuracy")
                if isinstance(v, int | float) and not isinstance(v, bool):
                    acc = float(v)
                    total += acc * loss_n_metrics[1]
                    weight += loss_n_metrics[1]
            rows.append(EvalRow(r, nm, glob, acc))
        rows.append(EvalRow(r, "mean", glob, total / weight if weight else math.nan))
        return rows


def _parallel(clients: Sequence[Any]) -> int:
    """Clients that may train at once: one per torch thread of this process (each then on
    one thread, as Flower's simulation runs one client per single-threaded actor), unless
    two clients hold the same torch model (they would overwrite each other's weights)."""
    import torch

    from qfl.flower.profile import _attrs, _find_model, user_object

    n = int(torch.get_num_threads())
    if n < 2 or len(clients) < 2:
        return 1
    models = [_find_model(_attrs(user_object(c))) for c in clients]
    ids = [id(m) for m in models if m is not None]
    return 1 if len(ids) != len(set(ids)) else n
