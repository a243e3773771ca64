"""Block delivery of key: collection, post-processing latency, authentication, faults.

The fluid pool is the limit of small blocks; conservation, FIFO service and monotone
availability hold in block mode as in the fluid one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from network import FluidKeyPool, LinkSpec, NodeSpec, OneTimePad, QKDNetwork, TopologySpec
from network.link import Link, expected_wait_s
from qkd.errors import ParameterError


class CountingEnv(simpy.Environment):
    def __init__(self) -> None:
        super().__init__()
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        super().step()


def _at(env: simpy.Environment, t: float, fn: Callable[[], Any]) -> Generator[Any, Any, None]:
    yield env.timeout(t)
    fn()


def _served_at(env: simpy.Environment, pool: FluidKeyPool, at: float, n: float, out: dict):
    def proc() -> Generator[Any, Any, None]:
        yield env.timeout(at)
        yield pool.get(n)
        out[at, n] = env.now

    return env.process(proc())


def _balance(acc: dict[str, float]) -> tuple[float, float]:
    lhs = acc["initial_bits"] + acc["generated_bits"]
    rhs = sum(acc[k] for k in ("consumed_bits", "wasted_bits", "wiped_bits", "level_bits"))
    return lhs, rhs + acc["auth_bits"]


def test_exact_times_with_latency_auth_and_cut(env: simpy.Environment) -> None:
    """Hand-computed: 100 b/s, blocks of 250 b (one per 2.5 s), 4 s of post-processing (two
    blocks in it at once), 50 b of each block spent on authentication: 200 b land per block,
    at 6.5, 9, 11.5, 14, 16.5, 19 s. A cut at 16 s discards the block begun at 15 s (100 b
    collected) but the blocks finished at 12.5 and 15 s still land; after the repair at 20 s
    blocks finish at 22.5 and 25 s and land at 26.5 and 29 s."""
    log: list[tuple[str, float, float, float]] = []
    pool = FluidKeyPool(
        env, 100.0, 1e4, block_bits=250.0, block_latency_s=4.0, block_auth_bits=50.0,
        observer=lambda *rec: log.append(rec),
    )  # fmt: skip
    done: dict[tuple[float, float], float] = {}
    _served_at(env, pool, 0.0, 300.0, done)  # two blocks: 9.0 s
    _served_at(env, pool, 1.0, 500.0, done)  # 100 left + two more blocks: 14.0 s
    _served_at(env, pool, 16.0, 600.0, done)  # three blocks: 16.5, 19.0, then 26.5 s
    env.process(_at(env, 8.0, lambda: checks.append(pool.blocks_in_flight)))
    checks: list[int] = []
    env.process(_at(env, 16.0, lambda: pool.set_rate(0.0)))
    env.process(_at(env, 20.0, lambda: pool.set_rate(100.0)))
    env.run(until=30.0)
    assert done == {(0.0, 300.0): 9.0, (1.0, 500.0): 14.0, (16.0, 600.0): 26.5}
    assert checks == [2]  # at 8 s: blocks finished at 5.0 and 7.5 s are in post-processing
    assert pool.interrupted_blocks == 1
    assert [r[3] for r in log if r[0] == "block"][-1] == 26.5  # nothing touched the pool since
    acc = pool.accounting()  # brings the pool to now: the landing at 29 s is logged, at 29 s
    blocks = [(t, bits, level) for kind, bits, level, t in log if kind == "block"]
    assert [t for t, _, _ in blocks] == [6.5, 9.0, 11.5, 14.0, 16.5, 19.0, 26.5, 29.0]
    assert all(bits == 200.0 for _, bits, _ in blocks)
    assert [lv for _, _, lv in blocks[:3]] == [200.0, 400.0, 300.0]  # 300 b taken at 9 s
    assert acc["generated_bits"] == 8 * 250.0 and acc["auth_bits"] == 8 * 50.0
    assert acc["consumed_bits"] == 1400.0 and acc["level_bits"] == 200.0
    assert _balance(acc)[0] == _balance(acc)[1]


def test_positive_rate_change_keeps_progress(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, 100.0, 1e4, block_bits=250.0, block_latency_s=1.0)
    req = pool.get(250.0)
    env.process(_at(env, 1.0, lambda: pool.set_rate(50.0)))  # 100 b collected, 150 b at 50 b/s
    env.run(req)
    assert env.now == pytest.approx(1.0 + 3.0 + 1.0)
    assert pool.interrupted_blocks == 0


def test_waste_when_full_and_idle_landings_backdated(env: simpy.Environment) -> None:
    """An idle pool lands its blocks lazily; the log still has each landing at its time."""
    log: list[tuple[str, float, float, float]] = []
    pool = FluidKeyPool(
        env, 10.0, 25.0, block_bits=10.0, block_latency_s=0.5, observer=lambda *r: log.append(r)
    )
    env.run(until=5.2)  # blocks finish at 1..5 s and land at 1.5..4.5 s; the 5th is in flight
    assert pool.level == 25.0 and pool.wasted_bits == 15.0 and pool.blocks_in_flight == 1
    assert [(t, lv) for _, _, lv, t in log] == [(1.5, 10.0), (2.5, 20.0), (3.5, 25.0), (4.5, 25.0)]
    lhs, rhs = _balance(pool.accounting())
    assert lhs == rhs == 40.0 + 0.0


def test_auth_at_least_a_block_lands_nothing(env: simpy.Environment) -> None:
    """A block that cannot pay for its authentication lands nothing and takes nothing."""
    pool = FluidKeyPool(env, 10.0, 100.0, 30.0, block_bits=10.0, block_auth_bits=15.0)
    req = pool.get(40.0)
    env.run(until=100.0)
    assert not req.triggered and pool.level == 30.0
    assert pool.auth_bits == pool.generated_bits == pytest.approx(1000.0)
    assert pool.time_to(40.0) == math.inf


def test_expected_wait_counts_blocks_in_flight(env: simpy.Environment) -> None:
    spec = LinkSpec("A", "B", 1.0, skr_bps=100.0, block_bits=100.0, block_latency_s=3.0)
    link = Link(env, spec, 100.0)
    env.run(until=2.5)  # blocks finished at 1 and 2 s land at 4 and 5 s
    link.cut_fibre()
    assert link.pool.interrupted_blocks == 1
    assert expected_wait_s(link, 150.0) == pytest.approx(5.0 - 2.5)
    assert expected_wait_s(link, 250.0) == math.inf  # the third block needs the repair
    link.repair()  # a new block: 100 b from 2.5 to 3.5 s, landing at 6.5 s
    assert expected_wait_s(link, 250.0) == pytest.approx(6.5 - 2.5)


def test_network_logs_blocks_and_reports_auth(env: simpy.Environment) -> None:
    nodes = (NodeSpec("A", role="relay"), NodeSpec("B", role="relay"))
    link = LinkSpec(
        "A", "B", 10.0, skr_bps=1000.0, latency_s=0.0, block_bits=500.0,
        block_latency_s=0.2, block_auth_bits=100.0,
    )  # fmt: skip
    net = QKDNetwork(env, TopologySpec(nodes, (link,)), OneTimePad(auth_bits=0))
    proc = net.transfer("A", "B", 100)  # 800 key bits: two blocks of 400, landing at 0.7, 1.2 s
    env.run(until=2.0)
    assert proc.value.status == "delivered"
    assert proc.value.key_wait_s == pytest.approx(1.2)
    kinds = [r.kind for r in net.pool_log]
    assert kinds[:3] == ["block", "block", "take"]
    s = net.summary()
    assert s.key_auth_bits == s.links[0].auth_bits == 3 * 100.0  # landings at 0.7, 1.2, 1.7 s
    assert s.key_generated_bits == 1500.0


@pytest.mark.parametrize("horizon", [1e3, 1e6])
def test_block_events_independent_of_horizon(horizon: float) -> None:
    env = CountingEnv()
    pool = FluidKeyPool(env, 1.0, 1e9, block_bits=7.0, block_latency_s=30.0, block_auth_bits=1.0)
    n_requests = 50

    def user() -> Generator[Any, Any, None]:
        for _ in range(n_requests):
            yield pool.get(horizon / n_requests / 2)

    env.process(user())
    env.run(until=horizon)
    assert env.steps <= 3 * n_requests + 3
    assert pool.consumed_bits == pytest.approx(horizon / 2)


def test_block_parameters_validated() -> None:
    with pytest.raises(ParameterError, match=r"link A-B: block_latency_s: must be >= 0, got -1"):
        LinkSpec("A", "B", 1.0, block_bits=10.0, block_latency_s=-1)
    with pytest.raises(ParameterError, match=r"block_latency_s: must be >= 0, got nan"):
        LinkSpec("A", "B", 1.0, block_bits=10.0, block_latency_s=math.nan)
    with pytest.raises(
        ParameterError, match=r"block_auth_bits: must be < block_bits=10 .*skr_bps=0"
    ):
        LinkSpec("A", "B", 1.0, block_bits=10.0, block_auth_bits=10.0)
    with pytest.raises(ParameterError, match=r"block_auth_bits: must be 0 unless block_bits"):
        LinkSpec("A", "B", 1.0, block_auth_bits=5.0)
    with pytest.raises(ParameterError, match=r"block_bits: must be in \(0, capacity_bits=100"):
        LinkSpec("A", "B", 1.0, capacity_bits=100.0, block_bits=101.0)
    env = simpy.Environment()
    with pytest.raises(ParameterError, match=r"p: block_latency_s: must be 0 unless block_bits"):
        FluidKeyPool(env, 1.0, 10.0, block_latency_s=1.0, name="p")
    with pytest.raises(ParameterError, match=r"block_auth_bits: must be >= 0, got -2"):
        FluidKeyPool(env, 1.0, 10.0, block_bits=1.0, block_auth_bits=-2)
    with pytest.raises(ParameterError, match=r"block_bits: must be > 0, got 0"):
        FluidKeyPool(env, 1.0, 10.0, block_bits=0)


# -- the fluid limit -------------------------------------------------------------------------
_requests = st.lists(
    st.tuples(st.floats(0.0, 20.0), st.floats(1.0, 500.0)), min_size=1, max_size=12
)
_rates = st.lists(st.tuples(st.floats(0.0, 40.0), st.floats(5.0, 200.0)), max_size=6)


def _completions(rate, initial, requests, changes, **blocks) -> dict[int, float]:
    env = simpy.Environment()
    pool = FluidKeyPool(env, rate, 1e7, initial, **blocks)
    done: dict[int, float] = {}

    def client(i: int, at: float, n: float) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        yield pool.get(n)
        done[i] = env.now

    for i, (at, n) in enumerate(requests):
        env.process(client(i, at, n))
    for t, r in changes:
        env.process(_at(env, t, lambda r=r: pool.set_rate(r)))
    env.run()
    return done


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(5.0, 200.0),
    initial=st.floats(0.0, 300.0),
    requests=_requests,
    changes=_rates,
    block=st.sampled_from([50.0, 5.0, 0.5, 0.05]),
)
def test_small_blocks_converge_to_fluid(rate, initial, requests, changes, block) -> None:
    """With latency and authentication 0, every request completes no earlier than in the
    fluid pool and at most one block period (at the slowest rate) later."""
    fluid = _completions(rate, initial, requests, changes)
    blocky = _completions(rate, initial, requests, changes, block_bits=block)
    assert fluid.keys() == blocky.keys() == set(range(len(requests)))
    period = block / min([rate, *(r for _, r in changes)])
    for i, t in fluid.items():
        assert t - 1e-9 * (1 + t) <= blocky[i] <= t + period * (1 + 1e-9) + 1e-9


# -- invariants -----------------------------------------------------------------------------
_ops = st.lists(
    st.tuples(st.floats(0.0, 30.0), st.floats(0.01, 1.0), st.sampled_from("ggrw")),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.5, 1e3),
    capacity=st.floats(50.0, 1e4),
    block_frac=st.floats(0.01, 1.0),
    auth_frac=st.floats(0.0, 1.2),
    latency=st.floats(0.0, 40.0),
    ops=_ops,
)
def test_block_conservation_fifo_property(
    rate, capacity, block_frac, auth_frac, latency, ops
) -> None:
    """generated == consumed + wasted + wiped + level + auth; FIFO; 0 <= level <= capacity
    at every change the pool reports."""
    env = simpy.Environment()
    block = block_frac * capacity
    levels: list[float] = []
    pool = FluidKeyPool(
        env, rate, capacity, block_bits=block, block_latency_s=latency,
        block_auth_bits=auth_frac * block, observer=lambda k, b, lv, t: levels.append(lv),
    )  # fmt: skip
    order: list[int] = []
    served: list[int] = []
    t = 0.0

    def client(i: int, at: float, n: float) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        order.append(i)
        yield pool.get(n)
        served.append(i)

    for i, (dt, frac, op) in enumerate(ops):
        t += dt
        if op == "g":
            env.process(client(i, t, frac * capacity))
        elif op == "r":
            env.process(_at(env, t, lambda f=frac: pool.set_rate(rate * (f - 0.2) * 2 * (f > 0.2))))
        else:
            env.process(_at(env, t, pool.wipe))
    env.run(until=t + 10 * capacity / rate + latency + 1)
    acc = pool.accounting()
    assert all(0.0 <= lv <= capacity * (1 + 1e-12) for lv in [*levels, acc["level_bits"]])
    lhs, rhs = _balance(acc)
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-6)
    assert served == order[: len(served)]


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.5, 1e3),
    block=st.floats(0.1, 1e3),
    auth_frac=st.floats(0.0, 0.99),
    latency=st.floats(0.0, 10.0),
    samples=st.lists(st.floats(0.0, 50.0), min_size=2, max_size=20),
    changes=st.lists(st.tuples(st.floats(0.0, 50.0), st.floats(0.0, 2.0)), max_size=5),
)
def test_availability_monotone_without_takes(
    rate, block, auth_frac, latency, samples, changes
) -> None:
    """Without takes or wipes the level never drops, whatever the rate does."""
    env = simpy.Environment()
    pool = FluidKeyPool(
        env, rate, 1e12, block_bits=block, block_latency_s=latency,
        block_auth_bits=auth_frac * block,
    )  # fmt: skip
    for t, f in changes:
        env.process(_at(env, t, lambda f=f: pool.set_rate(rate * f)))
    seen: list[float] = []
    for t in sorted(samples):
        env.process(_at(env, t, lambda: seen.append(pool.level)))
    env.run()
    assert seen == sorted(seen)
    assert all(x >= 0 for x in seen)
