"""Fluid key pools: exact wake-ups, FIFO, block mode, waste, conservation."""

from __future__ import annotations

import math

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from network import FluidKeyPool
from qkd.errors import ParameterError


class CountingEnv(simpy.Environment):
    def __init__(self) -> None:
        super().__init__()
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        super().step()


def test_request_fires_at_exact_time(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, rate_bps=300.0, capacity_bits=1e4, initial_bits=100.0)
    req = pool.get(1000)
    env.run(req)
    assert env.now == pytest.approx(900 / 300.0, rel=1e-12)
    assert pool.level == pytest.approx(0.0, abs=1e-9)


def test_immediate_when_available(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, 1.0, 100.0, initial_bits=50.0)
    req = pool.get(20)
    assert req.triggered and pool.level == 30.0
    assert pool.try_take(30)
    assert not pool.try_take(1)


def test_fifo_order_of_waiters(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, rate_bps=10.0, capacity_bits=1000.0)
    served: list[tuple[str, float]] = []

    def want(name: str, n: float, delay: float):
        yield env.timeout(delay)
        yield pool.get(n)
        served.append((name, env.now))

    env.process(want("big", 100, 0.0))  # arrives first, needs a lot
    env.process(want("small", 1, 0.5))  # would fit earlier, but must wait its turn
    env.process(want("mid", 50, 1.0))
    env.run()
    assert [n for n, _ in served] == ["big", "small", "mid"]
    assert served[0][1] == pytest.approx(10.0)
    assert served[1][1] == pytest.approx(10.1)
    assert served[2][1] == pytest.approx(15.1)
    # a later small request cannot jump the queue with try_take either
    pool2 = FluidKeyPool(env, 1.0, 100.0, initial_bits=5.0)
    pool2.get(50)
    assert not pool2.try_take(1)


def test_waste_when_full_and_conservation(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, rate_bps=10.0, capacity_bits=100.0, initial_bits=40.0)
    env.run(until=20.0)  # 200 bits arrive, 60 fit
    assert pool.level == 100.0
    assert pool.generated_bits == pytest.approx(200.0)
    assert pool.wasted_bits == pytest.approx(140.0)
    acc = pool.accounting()
    lhs = acc["initial_bits"] + acc["generated_bits"]
    rhs = acc["consumed_bits"] + acc["wasted_bits"] + acc["wiped_bits"] + acc["level_bits"]
    assert lhs == pytest.approx(rhs)


def test_rate_change_reschedules_wakeup(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, rate_bps=10.0, capacity_bits=1e3)
    req = pool.get(100)

    def fault():
        yield env.timeout(4.0)  # 40 bits so far
        pool.set_rate(0.0)  # eavesdropper: nothing for 6 s
        yield env.timeout(6.0)
        pool.set_rate(20.0)  # back, faster: 60 bits more take 3 s

    env.process(fault())
    env.run(req)
    assert env.now == pytest.approx(13.0)


def test_zero_rate_never_fires_and_cancel(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, rate_bps=0.0, capacity_bits=1e3)
    req = pool.get(10)
    env.run(until=1e6)
    assert not req.triggered and pool.waiters == 1 and pool.pending_bits == 10
    pool.cancel(req)
    assert pool.waiters == 0 and pool.pending_bits == 0


def test_cancel_head_serves_next(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, rate_bps=1.0, capacity_bits=1e3, initial_bits=5.0)
    big = pool.get(500)
    small = pool.get(3)
    assert not small.triggered
    pool.cancel(big)
    env.run(until=0.001)
    assert small.triggered and pool.consumed_bits == 3


def test_block_mode(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, rate_bps=100.0, capacity_bits=1e4, block_bits=250.0)
    env.run(until=2.4)
    assert pool.level == 0.0  # 240 bits produced, no block complete
    req = pool.get(300)  # needs two blocks: 2.5 s and 5.0 s
    env.run(req)
    assert env.now == pytest.approx(5.0)
    assert pool.level == pytest.approx(200.0)
    pool.set_rate(50.0)  # keeps the 0 bits of progress; next block at 5 + 5 = 10 s
    req = pool.get(400)
    env.run(req)
    assert env.now == pytest.approx(10.0)


def test_bad_requests(env: simpy.Environment) -> None:
    pool = FluidKeyPool(env, 1.0, 100.0, name="link A-B")
    with pytest.raises(ParameterError, match=r"link A-B: n_bits: must be <= the pool's capacity"):
        pool.get(101)
    with pytest.raises(ParameterError, match="n_bits: must be > 0"):
        pool.get(0)
    with pytest.raises(ParameterError, match="rate_bps: must be >= 0, got -1"):
        FluidKeyPool(env, -1, 10.0)
    with pytest.raises(ParameterError, match="initial_bits"):
        FluidKeyPool(env, 1, 10.0, initial_bits=11)


@pytest.mark.parametrize("horizon", [1e3, 1e6])
def test_events_independent_of_horizon(horizon: float) -> None:
    env = CountingEnv()
    pool = FluidKeyPool(env, rate_bps=1.0, capacity_bits=1e9)
    n_requests = 50

    def user():
        for _ in range(n_requests):
            yield pool.get(horizon / n_requests / 2)

    env.process(user())
    env.run(until=horizon)
    # one wake-up and one request event per request, plus process start/end
    assert env.steps <= 3 * n_requests + 3
    assert pool.consumed_bits == pytest.approx(horizon / 2)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(0.5, 1e4),
    capacity=st.floats(10.0, 1e5),
    fill=st.floats(0.0, 1.0),
    ops=st.lists(
        st.tuples(st.floats(0.0, 50.0), st.floats(0.01, 1.0), st.sampled_from("grw")),
        min_size=1,
        max_size=25,
    ),
)
def test_conservation_and_fifo_property(rate, capacity, fill, ops) -> None:
    """initial + generated == consumed + wasted + wiped + level; FIFO service; 0 <= level <= cap."""
    env = simpy.Environment()
    pool = FluidKeyPool(env, rate, capacity, fill * capacity)
    order: list[int] = []
    served: list[int] = []
    t = 0.0

    def client(i: int, at: float, n: float):
        yield env.timeout(at)
        order.append(i)
        yield pool.get(n)
        served.append(i)

    for i, (dt, frac, op) in enumerate(ops):
        t += dt
        if op == "g":
            env.process(client(i, t, frac * capacity))
        elif op == "r":
            env.process(_at(env, t, lambda f=frac: pool.set_rate(rate * f * 2)))
        else:
            env.process(_at(env, t, pool.wipe))
    env.run(until=t + 10 * capacity / rate + 1)
    acc = pool.accounting()
    assert 0.0 <= acc["level_bits"] <= capacity * (1 + 1e-12)
    lhs = acc["initial_bits"] + acc["generated_bits"]
    rhs = acc["consumed_bits"] + acc["wasted_bits"] + acc["wiped_bits"] + acc["level_bits"]
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-6)
    assert served == order[: len(served)]  # FIFO: served in arrival order
    assert math.isclose(
        acc["consumed_bits"] + pool.pending_bits,
        sum(f * capacity for _, f, op in ops if op == "g"),
        rel_tol=1e-9,
    )


def _at(env: simpy.Environment, t: float, fn):
    yield env.timeout(t)
    fn()
