"""``keypools.csv`` holds what the key-pool plot needs: with its ``start`` and ``end`` rows,
:func:`qfl.cosim.plots.keypool_series` gives the exact level of every pool at every time,
in fluid and in block mode, also on a link that no transfer used."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy

from network import LinkSpec, NodeSpec, OneTimePad, QKDNetwork, TopologySpec
from qfl.cosim.outputs import _pool_rows
from qfl.cosim.plots import keypool_series

BLOCKS = {"block_bits": 400.0, "block_latency_s": 1.5, "block_auth_bits": 40.0}


def level_at(series: tuple[list[float], list[float]], t: float) -> float:
    """The polyline's level at ``t`` (not at a step: there it has two)."""
    ts, levels = series
    assert t not in ts
    return float(np.interp(t, ts, levels))


@pytest.mark.parametrize("blocks", [False, True], ids=["fluid", "blocks"])
def test_keypool_rows_give_the_exact_level_at_every_time(blocks: bool) -> None:
    env = simpy.Environment()
    extra: dict[str, Any] = BLOCKS if blocks else {}
    topo = TopologySpec(
        nodes=(NodeSpec("A"), NodeSpec("B"), NodeSpec("C")),
        links=(
            LinkSpec("A", "B", 1.0, skr_bps=100.0, capacity_bits=1500.0, initial_bits=50.0,
                     latency_s=0.0, **extra),
            LinkSpec("B", "C", 1.0, skr_bps=30.0, capacity_bits=1e4, latency_s=0.0, **extra),
        ),
    )  # fmt: skip
    net = QKDNetwork(env, topo, OneTimePad(auth_bits=0))
    seen: list[tuple[float, str, float]] = []

    def watch() -> Generator[Any, Any, None]:
        for t in np.arange(0.37, 40.0, 0.5):
            yield env.timeout(t - env.now)
            for lk in net.links.values():
                seen.append((env.now, lk.name, lk.pool.level))

    def send() -> Generator[Any, Any, None]:
        for at in (3.0, 11.0, 12.0):
            yield env.timeout(at - env.now)
            net.transfer("A", "B", 40)  # 320 bits of key on A-B

    env.process(watch())
    env.process(send())
    env.run(until=40.0)
    net.link_summaries()
    rows = _pool_rows(net)
    assert [r["event"] for r in rows[:2]] == ["start", "start"]
    assert [r["event"] for r in rows[-2:]] == ["end", "end"]
    assert rows[0]["level_bits"] == 50.0 and rows[-2]["sim_time_s"] == 40.0
    series = keypool_series(rows)
    assert list(series) == ["A-B", "B-C"]  # B-C: no take, drawn all the same
    for t, link, level in seen:
        assert level_at(series[link], t) == pytest.approx(level, abs=1e-6), (t, link)
    ts, levels = series["A-B"]
    assert max(levels) == pytest.approx(1500.0)  # full in the end: flat at the capacity
    if blocks:  # flat between events: every rise is a vertical step
        rises = [i for i in range(1, len(ts)) if levels[i] > levels[i - 1] + 1e-9]
        assert rises and all(ts[i] == ts[i - 1] for i in rises)
    else:  # a slope of 100 bit/s after the first take
        i = ts.index(3.0) + 1
        assert (levels[i + 1] - levels[i]) / (ts[i + 1] - ts[i]) == pytest.approx(100.0)
