"""Scale benchmark of the co-simulation's network half: 5,000 nodes, 1,000 Def-FD clients.

Workload (seeded): a connected random geometric graph of ``--nodes`` sites over a
``--side-km`` square region (centred at 50 N, 10 E; sites get latitude/longitude, links
join sites closer than the radius that gives a mean degree of about 5, fragments are joined
to the main component by their shortest edge). Link lengths come from the coordinates (great
circle x the routing factor 1.3, as ``qfl.cosim.netbuild`` derives them); every link runs the
``toshiba-2018`` decoy-BB84 system, so its key rate follows from its length. ``--clients``
sites are Def-FD clients, the others trusted relays. Models cross the network under
AES-256-GCM re-keyed every megabyte (the scenario default); pools start empty.

What is timed is the *network half* of one Def-FD round, through the real code path:
``qfl.cosim.run.simulate_network`` (``check_network``: topology and key rates from the
scenario; the network; the schedule runner with one SimPy process per chain; one
``QKDNetwork.transfer`` per sent model). The learning job is :class:`LightDefFDJob`: its
``plan`` is ``DecentralizedJob.plan`` (the same draw of senders and receivers) and its
``profile`` is built as ``DecentralizedJob``'s from the Def-FD CNN (FLOPs and bytes), but it
loads no data (``samples_per_client`` training samples per client are assumed), since the
learning half is not measured here and loading Fashion-MNIST for 1,000 clients is not what
this benchmark is about. Then ``topology.png`` is drawn from the run's topology
(``qfl.cosim.plots.plot_topology``) and timed.

With ``--compare`` the previous code runs too, in the same process: the network half with
the latency router as it was (a NetworkX Dijkstra tree per root, :class:`NxTreeRouter`; the
transfers' paths and end times must come out identical) and the detailed topology drawing
(every node and link one by one, with names).

Usage: ``python benchmarks/bench_cosim_scale.py [--nodes 5000] [--clients 1000] [--compare]
[--profile FILE]``. The last line printed is one JSON object with ``nodes``, ``clients``,
``network_half_s``, ``transfers`` and ``topology_png_s``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from bench_network import connected_geometric_graph  # beside this script

from qfl.cosim.jobs import DecentralizedJob, Job
from qfl.cosim.plan import RoundOps
from qfl.cosim.schedule import ComputeProfile
from qfl.scenario import Scenario, _from_mapping

KM_PER_DEG = 111.195  # mean Earth radius x pi / 180


def regional_topology(
    n: int, clients: int, seed: int, *, side_km: float = 500.0, degree: float = 5.0
) -> dict[str, Any]:
    """The scenario's ``topology`` section: a connected random geometric graph with
    coordinates (no lengths: the scenario derives them), ``clients`` of the nodes clients."""
    rng = np.random.default_rng(seed)
    g, pos = connected_geometric_graph(rng, n, seed, side_km=side_km, degree=degree)
    client_ids = set(rng.choice(n, size=clients, replace=False).tolist())
    lat0, lon0 = 50.0, 10.0
    coslat = math.cos(math.radians(lat0))
    nodes = []
    for k in range(n):
        x, y = pos[k] - side_km / 2
        nodes.append(
            {
                "name": f"{'c' if k in client_ids else 'r'}{k}",
                "role": "client" if k in client_ids else "relay",
                "latitude": round(lat0 + y / KM_PER_DEG, 6),
                "longitude": round(lon0 + x / (KM_PER_DEG * coslat), 6),
            }
        )
    links = [{"a": nodes[u]["name"], "b": nodes[v]["name"]} for u, v in sorted(g.edges)]
    return {"nodes": nodes, "links": links, "routing_factor": 1.3}


def scale_scenario(n: int, clients: int, seed: int, samples: int) -> Scenario:
    """A Def-FD scenario on :func:`regional_topology` (one round)."""
    data = {
        "name": f"scale-{n}-{clients}",
        "seed": seed,
        "topology": regional_topology(n, clients, seed),
        "qkd": {"preset": "toshiba-2018", "protocol": "decoy-bb84", "pool_capacity_bits": 1e8},
        "cipher": {"policy": "aes-256-gcm", "rekey_bytes": 1e6},
        "compute": {"default_flops_per_s": 5e9},
        "learning": {
            "method": "def-fd",
            "dataset": "fashion-mnist",
            "model": "cnn",
            "samples_per_client": samples,
            "rounds": 1,
            "eval_every": 1,
        },
    }
    return _from_mapping(data, "bench_cosim_scale")


class LightDefFDJob(Job):
    """``DecentralizedJob``'s plan and compute profile, without loading any data."""

    def __init__(self, sc: Scenario, clients: list[str], flops: list[float]) -> None:
        import torch

        from qfl.models import FeatureCNN, count_flops

        lr = sc.learning
        self.sc, self.names = sc, tuple(clients)
        n = len(clients)
        self.n_senders = DecentralizedJob._config(self).n_senders(n)  # type: ignore[arg-type]
        model = FeatureCNN(in_channels=1, num_classes=10, image_size=28)
        fwd = float(count_flops(model, (1, 28, 28)))
        bf = sc.compute.backward_factor
        n_params = sum(p.numel() for p in model.parameters())
        model_bytes = int(n_params * torch.finfo(torch.float32).bits // 8)
        train = round((lr.samples_per_client or 0) * (1 - lr.holdout_fraction))
        self.profile = ComputeProfile(
            clients=self.names,
            train_sizes=(train,) * n,
            flops_per_s=tuple(float(f) for f in flops),
            train_flops_per_sample=(fwd * bf,) * n,
            fuse_flops_per_sample=(fwd * (bf + 1),) * n,  # def-fd
            upload_bytes=(model_bytes,) * n,
            download_bytes=(model_bytes,) * n,
            local_epochs=lr.local_epochs,
            fusion_epochs=lr.fusion_epochs,
        )

    def plan(self, r: int) -> RoundOps:
        return DecentralizedJob.plan(self, r)  # type: ignore[arg-type]


def topology_rows(topo: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of ``topology.json`` as a run folder writes them and ``redraw`` reads them."""
    nodes = [
        {"name": n.name, "role": n.role, "flops_per_s": n.flops_per_s,
         "latitude": n.lat, "longitude": n.lon}
        for n in topo.nodes
    ]  # fmt: skip
    links = [
        {"a": lk.a, "b": lk.b, "length_km": lk.length_km, "skr_bps": lk.skr_bps}
        for lk in topo.links
    ]
    data = json.loads(json.dumps({"nodes": nodes, "links": links}))
    return data["nodes"], data["links"]


class NxTreeRouter:
    """The latency router as it was: NetworkX Dijkstra trees (dicts), for ``--compare``."""

    def __init__(self) -> None:
        self._trees: dict[str, dict[str, str]] = {}
        self.dijkstra_runs = 0

    def invalidate(self) -> None:
        self._trees.clear()

    def _tree(self, graph: nx.Graph, root: str) -> dict[str, str]:
        from network.routing import latency_weight

        tree = self._trees.get(root)
        if tree is None:
            pred, _ = nx.dijkstra_predecessor_and_distance(graph, root, weight=latency_weight)
            tree = self._trees[root] = {n: p[0] for n, p in pred.items() if p}
            self.dijkstra_runs += 1
        return tree

    def __call__(
        self, graph: nx.Graph, src: str, dst: str, key_bits: float = 0.0
    ) -> list[str] | None:
        if src == dst:
            return [src]
        use_dst = dst in self._trees
        if not use_dst and src not in self._trees:
            roles = graph.nodes
            use_dst = not (roles[src].get("role") == "server" != roles[dst].get("role"))
        root, start = (dst, src) if use_dst else (src, dst)
        tree = self._tree(graph, root)
        if start not in tree:
            return None
        path = [start]
        while path[-1] != root:
            path.append(tree[path[-1]])
        return path if use_dst else path[::-1]


def network_half(sc: Scenario, job: Job, router: Any = None) -> tuple[Any, float]:
    """``simulate_network`` (with ``router`` as the ``latency`` router); its wall time."""
    from network import routing
    from qfl.cosim.run import simulate_network

    saved = routing.ROUTERS["latency"]
    if router is not None:
        routing.ROUTERS["latency"] = router
    try:
        t0 = time.perf_counter()
        nrun = simulate_network(sc, job=job)
        return nrun, time.perf_counter() - t0
    finally:
        routing.ROUTERS["latency"] = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--samples-per-client", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", help="write a cProfile of the network half to this file")
    ap.add_argument("--no-plot", action="store_true", help="skip drawing topology.png")
    ap.add_argument("--png", help="keep topology.png here (default: a temporary folder)")
    ap.add_argument(
        "--compare",
        action="store_true",
        help="also time the previous code in this run: NetworkX routing trees, and the "
        "detailed drawing of every node and link (slow)",
    )
    args = ap.parse_args()

    from qfl.cosim.netbuild import check_network, learning_clients

    t0 = time.perf_counter()
    sc = scale_scenario(args.nodes, args.clients, args.seed, args.samples_per_client)
    t_scenario = time.perf_counter() - t0
    n_links = len(sc.topology.links)
    print(f"scenario: {args.nodes} nodes, {n_links} links, {args.clients} clients "
          f"({t_scenario:.1f} s to generate and validate)")  # fmt: skip

    t0 = time.perf_counter()
    topo = check_network(sc)
    t_check = time.perf_counter() - t0
    clients = learning_clients(sc, topo)
    speed = {nd.name: nd.flops_per_s for nd in topo.nodes}
    t0 = time.perf_counter()
    job = LightDefFDJob(sc, clients, [speed[c] for c in clients])
    t_job = time.perf_counter() - t0
    rates = [lk.skr_bps or 0.0 for lk in topo.links]
    lengths = [lk.length_km for lk in topo.links]
    print(f"links: {min(lengths):.1f}-{max(lengths):.1f} km, key rate "
          f"{min(rates) / 1e3:.0f}-{max(rates) / 1e3:.0f} kb/s; check_network {t_check:.1f} s, "
          f"job {t_job:.1f} s; model {job.profile.upload_bytes[0]} bytes, "
          f"{job.n_senders} senders")  # fmt: skip

    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    nrun, network_half_s = network_half(sc, job)
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    tl = nrun.timeline
    recs = nrun.net.records
    delivered = sum(r.status == "delivered" for r in recs)
    hops = [len(r.path) - 1 for r in recs]
    router = nrun.net.router
    runs = getattr(router, "dijkstra_runs", None)
    print(f"network half: {network_half_s:.1f} s wall; {tl.rounds_done} round(s), ends at "
          f"t={tl.round_end_s[-1] if tl.round_end_s else math.nan:.1f} s; {len(recs)} transfers "
          f"({delivered} delivered), {np.mean(hops) if hops else 0:.1f} hops on average; "
          f"{runs} Dijkstra runs")  # fmt: skip

    before_s = None
    if args.compare:
        old, before_s = network_half(sc, job, NxTreeRouter)
        same = [r.path for r in old.net.records] == [r.path for r in recs] and [
            r.t_end for r in old.net.records
        ] == [r.t_end for r in recs]
        print(f"previous routing (NetworkX trees): {before_s:.1f} s wall, "
              f"{before_s / network_half_s:.1f}x; same paths and times: {same}")  # fmt: skip
        if not same:
            raise SystemExit("the routers disagree")

    t0 = time.perf_counter()
    summary = nrun.net.summary()
    summary_s = time.perf_counter() - t0
    print(f"net.summary(): {summary_s:.2f} s ({summary.delivered} delivered)")

    png_s = png_full_s = None
    if not args.no_plot:
        from qfl.cosim.plots import plot_topology

        nodes, links = topology_rows(nrun.topology)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.png) if args.png else Path(tmp) / "topology.png"
            t0 = time.perf_counter()
            plot_topology(nodes, links, out)
            png_s = time.perf_counter() - t0
            size = out.stat().st_size
            print(f"topology.png: {png_s:.1f} s ({size / 1e3:.0f} kB)")
            if args.compare:
                t0 = time.perf_counter()
                plot_topology(nodes, links, Path(tmp) / "full.png", detail_limit=None)
                png_full_s = time.perf_counter() - t0
                print(f"detailed topology.png (every node and link): {png_full_s:.1f} s, "
                      f"{png_full_s / png_s:.0f}x")  # fmt: skip

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    result = {
        "nodes": args.nodes,
        "clients": args.clients,
        "links": n_links,
        "network_half_s": round(network_half_s, 2),
        "transfers": len(recs),
        "delivered": delivered,
        "rounds_done": tl.rounds_done,
        "dijkstra_runs": runs,
        "check_network_s": round(t_check, 2),
        "topology_png_s": None if png_s is None else round(png_s, 2),
    }
    if args.compare:
        result["network_half_previous_s"] = None if before_s is None else round(before_s, 2)
        result["topology_png_detailed_s"] = None if png_full_s is None else round(png_full_s, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
