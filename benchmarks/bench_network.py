"""Scale benchmark of the network layer: fluid key pools vs one key event per second per link.

Workload (seeded): a 1,000-node random geometric graph over a 200 km x 200 km metro region
(links between nodes closer than the radius; fibre length = straight-line distance x 1.3),
decoy-BB84 links with the ``gys-2004`` system (key rates from ``qkd.rates``), 40 servers,
and 100,000 one-time-pad transfers (1, 4 or 16 kB) between random clients and their nearest server
(half uploads, half downloads), Poisson arrivals over a 24-hour simulated horizon.

Two key-supply models run the same workload:

* **fluid** (the library): exact wake-ups, O(hops) events per transfer; runs the full 24 h;
* **naive**: every link's pool gets ``rate x 1 s`` of key from its own SimPy process once per
  simulated second (``links x 86,400`` events a day). It cannot finish 24 h in the time
  budget, so it runs the first ``--naive-window`` seconds of the same workload; the fluid
  model runs that same window too (a measured ratio), and the naive 24-hour wall time is
  **extrapolated linearly** from its window (its cost is one tick per link per second plus
  the window's transfers, both proportional to the horizon).

Usage: ``python benchmarks/bench_network.py [--nodes 1000] [--transfers 100000]``. The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from collections.abc import Generator
from typing import Any

import networkx as nx
import numpy as np
import simpy

from network import FluidKeyPool, LinkSpec, NodeSpec, OneTimePad, QKDNetwork, TopologySpec
from network.keypool import PoolObserver

DAY_S = 86_400.0


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes."""

    def __init__(self) -> None:
        super().__init__()
        self.events = 0

    def step(self) -> None:
        self.events += 1
        super().step()


class TickedKeyPool(FluidKeyPool):
    """The naive model: key arrives once per simulated second, one event per link per tick."""

    def __init__(
        self, env: simpy.Environment, spec: LinkSpec, rate: float, observer: PoolObserver | None
    ) -> None:
        super().__init__(
            env,
            rate,
            spec.capacity_bits,
            spec.initial_bits,
            name=f"link {spec.name}",
            observer=observer,
        )
        env.process(self._ticks())

    def _settle(self) -> None:  # the level only changes at ticks
        return None

    def _schedule(self) -> None:  # no exact wake-ups: waiters are served at ticks
        return None

    def _ticks(self) -> Generator[simpy.Event, Any, None]:
        while True:
            yield self.env.timeout(1.0)
            got = self._rate * 1.0
            self.generated_bits += got
            new = self._level0 + got
            if new > self._capacity:
                self.wasted_bits += new - self._capacity
                new = self._capacity
            self._level0 = new
            if self._waiters:
                self._serve()


def naive_pool(
    env: simpy.Environment, spec: LinkSpec, rate: float, observer: PoolObserver | None
) -> FluidKeyPool:
    return TickedKeyPool(env, spec, rate, observer)


def connected_geometric_graph(
    rng: np.random.Generator, n: int, seed: int, *, side_km: float, degree: float
) -> tuple[nx.Graph, np.ndarray]:
    """``n`` nodes uniform on a ``side_km`` square (drawn from ``rng``), joined within the
    radius that gives mean ``degree``; each fragment is joined to the main component by its
    shortest edge. Returns the graph and the positions (km). Shared by the scale benchmarks."""
    pos = rng.uniform(0.0, side_km, size=(n, 2))
    radius = math.sqrt(degree * side_km**2 / (math.pi * n))
    g = nx.random_geometric_graph(
        n, radius, pos={i: tuple(p) for i, p in enumerate(pos)}, seed=seed
    )
    comps = sorted(nx.connected_components(g), key=len, reverse=True)
    main = np.array(sorted(comps[0]))
    for comp in comps[1:]:  # join each fragment to the main component by its shortest edge
        c = np.array(sorted(comp))
        d = np.linalg.norm(pos[c][:, None, :] - pos[main][None, :, :], axis=2)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        g.add_edge(int(c[i]), int(main[j]))
        main = np.concatenate([main, c])
    return g, pos


def metro_topology(
    n: int, seed: int, *, side_km: float = 200.0, degree: float = 5.0, servers: int = 40
) -> TopologySpec:
    """A connected random geometric graph with realistic metro fibre lengths."""
    rng = np.random.default_rng(seed)
    g, pos = connected_geometric_graph(rng, n, seed, side_km=side_km, degree=degree)
    server_ids = set(rng.choice(n, size=servers, replace=False).tolist())
    nodes = tuple(
        NodeSpec(f"n{i}", role="server" if i in server_ids else "client", lat=None, lon=None)
        for i in range(n)
    )
    links = tuple(
        LinkSpec(
            f"n{u}",
            f"n{v}",
            max(1.0, 1.3 * float(np.linalg.norm(pos[u] - pos[v]))),
            system="gys-2004",
            capacity_bits=1e6,
            initial_bits=5e5,
            bandwidth_bps=1e10,
        )
        for u, v in g.edges
    )
    return TopologySpec(nodes, links)


def workload(
    topo: TopologySpec, n: int, horizon: float, seed: int
) -> list[tuple[float, str, str, int]]:
    """Transfers ``(time, src, dst, n_bytes)``: clients and their nearest server."""
    rng = np.random.default_rng(seed + 1)
    g = nx.Graph()
    for lk in topo.links:
        g.add_edge(lk.a, lk.b, w=lk.length_km)
    servers = [s.name for s in topo.nodes if s.role == "server"]
    clients = [s.name for s in topo.nodes if s.role == "client"]
    _, paths = nx.multi_source_dijkstra(g, servers, weight="w")
    nearest = {c: paths[c][0] for c in clients}
    times = np.sort(rng.uniform(0.0, horizon, size=n))
    who = rng.integers(0, len(clients), size=n)
    up = rng.random(n) < 0.5
    sizes = rng.choice([1024, 4096, 16384], size=n)
    out = []
    for t, w, u, s in zip(times, who, up, sizes, strict=True):
        c = clients[int(w)]
        src, dst = (c, nearest[c]) if u else (nearest[c], c)
        out.append((float(t), src, dst, int(s)))
    return out


def run(
    topo: TopologySpec, jobs: list[tuple[float, str, str, int]], until: float | None, *, naive: bool
) -> dict[str, Any]:
    env = CountingEnvironment()
    net = QKDNetwork(env, topo, OneTimePad(), pool_factory=naive_pool if naive else None)

    def driver() -> Generator[simpy.Event, Any, None]:
        for t, src, dst, size in jobs:
            if t > env.now:
                yield env.timeout(t - env.now)
            net.transfer(src, dst, size)

    env.process(driver())
    t0 = time.perf_counter()
    c0 = time.process_time()
    if until is None:
        env.run()
    else:
        env.run(until=until)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    s = net.summary()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "events": env.events,
        "delivered": s.delivered,
        "in_progress": s.in_progress,
        "failed": s.failed,
        "summary": s,
        "net": net,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--transfers", type=int, default=100_000)
    ap.add_argument("--horizon", type=float, default=DAY_S)
    ap.add_argument("--naive-window", type=float, default=3600.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t_start = time.perf_counter()

    topo = metro_topology(args.nodes, args.seed)
    jobs = workload(topo, args.transfers, args.horizon, args.seed)
    lengths = np.array([lk.length_km for lk in topo.links])
    t_build = time.perf_counter()
    probe = QKDNetwork(simpy.Environment(), topo, OneTimePad())
    rates = np.array([lk.nominal_rate_bps for lk in probe.links.values()])
    del probe
    print(
        f"topology: {args.nodes} nodes, {len(topo.links)} links, "
        f"length {lengths.min():.1f}-{lengths.max():.1f} km (median {np.median(lengths):.1f}), "
        f"key rate {rates.min():.0f}-{rates.max():.0f} b/s; built in "
        f"{time.perf_counter() - t_build + (t_build - t_start):.2f} s"
    )

    fluid = run(topo, jobs, None, naive=False)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = fluid["summary"]
    ept = fluid["events"] / args.transfers
    print(
        f"fluid, {args.horizon / 3600:.0f} h: {args.transfers} transfers, "
        f"{fluid['events']} events ({ept:.2f} per transfer), wall {fluid['wall_s']:.2f} s "
        f"(CPU {fluid['cpu_s']:.2f} s), "
        f"delivered {s.delivered}, failed {s.failed}, in progress {s.in_progress}"
    )
    print(
        f"  latency p50 {s.latency_p50_s:.3f} s, p99 {s.latency_p99_s:.3f} s, mean key wait "
        f"{s.key_wait_mean_s:.3f} s; key generated {s.key_generated_bits:.3e} b, consumed "
        f"{s.key_consumed_bits:.3e} b, wasted {s.key_wasted_bits:.3e} b; "
        f"routing trees {fluid['net'].router.dijkstra_runs}"
    )
    del fluid["net"]

    w = min(args.naive_window, args.horizon)
    window_jobs = [j for j in jobs if j[0] < w]
    fw = run(topo, window_jobs, w, naive=False)
    nw = run(topo, window_jobs, w, naive=True)
    measured = nw["wall_s"] / fw["wall_s"]
    naive_day = nw["wall_s"] * args.horizon / w
    speedup = naive_day / fluid["wall_s"]
    print(
        f"window {w:.0f} s ({len(window_jobs)} transfers): fluid {fw['wall_s']:.3f} s "
        f"({fw['events']} events), naive {nw['wall_s']:.3f} s ({nw['events']} events): "
        f"measured ratio {measured:.1f}x"
    )
    print(
        f"naive over {args.horizon / 3600:.0f} h, extrapolated linearly from the window: "
        f"{naive_day:.0f} s ({nw['events'] * args.horizon / w:.3e} events) -> speedup "
        f"{speedup:.0f}x"
    )
    total = time.perf_counter() - t_start
    cpu_total = time.process_time()
    print(
        f"peak RSS {rss_mb:.0f} MB (after the fluid run); whole benchmark {total:.1f} s wall, "
        f"{cpu_total:.1f} s CPU"
    )
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "links": len(topo.links),
                "transfers": args.transfers,
                "horizon_s": args.horizon,
                "wall_s": round(fluid["wall_s"], 3),
                "cpu_s": round(fluid["cpu_s"], 3),
                "events": fluid["events"],
                "events_per_transfer": round(ept, 3),
                "delivered": s.delivered,
                "peak_rss_mb": round(rss_mb, 1),
                "naive_window_s": w,
                "naive_window_wall_s": round(nw["wall_s"], 3),
                "fluid_window_wall_s": round(fw["wall_s"], 3),
                "speedup_measured_window": round(measured, 2),
                "naive_24h_wall_s_extrapolated": round(naive_day, 1),
                "speedup_vs_naive": round(speedup, 1),
                "speedup_vs_naive_is_extrapolated": True,
                "benchmark_wall_s": round(total, 1),
                "benchmark_cpu_s": round(cpu_total, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
