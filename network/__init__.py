"""The QKD network: a SimPy discrete-event simulation over a NetworkX topology.

Links produce secret key into fluid key pools at their QKD rate; transfers take key on every
hop of their path (trusted relays) before they are transmitted. Depends on simpy, networkx and
``qkd``; never on torch.

Entry point::

    env = simpy.Environment()
    net = QKDNetwork(env, topology, OneTimePad(), seed=1)
    proc = net.transfer("client-3", "server", 250_000, tag="round-1")
    env.run()
    proc.value            # the TransferRecord
    net.summary()         # key generated/consumed/wasted, latency percentiles
"""

from network.cipher import (
    AesGcm,
    BitStore,
    CipherPolicy,
    IntegrityError,
    KeyPlan,
    NoCipher,
    OneTimePad,
    get_cipher,
)
from network.errors import DuplicateLink, KeyNeverSuffices, NetworkError, NodeNotFound, NoPath
from network.faults import Eavesdropper, LinkCut, NodeOutage, PoolWipe, Tamper, schedule_faults
from network.keypool import FluidKeyPool, KeyRequest
from network.link import Link, link_rates_bps
from network.qkdnetwork import QKDNetwork, max_chunk_bytes
from network.records import (
    FaultRecord,
    LinkSummary,
    PoolRecord,
    Summary,
    TransferRecord,
    to_rows,
    write_csv,
)
from network.routing import (
    KeyAwareRouter,
    LatencyRouter,
    Router,
    get_router,
    key_aware_path,
    lowest_latency_path,
)
from network.satellite import SatelliteSchedule, satellite_schedule
from network.schedule import (
    ScaledPool,
    Schedule,
    ScheduledRate,
    ScheduleRun,
    Window,
    WindowWait,
    apply_schedule,
)
from network.topology import LinkSpec, NodeSpec, TopologySpec, build_graph, read_topology
from qkd.rates import attack_rate_factor

__all__ = [
    "AesGcm",
    "BitStore",
    "CipherPolicy",
    "DuplicateLink",
    "Eavesdropper",
    "FaultRecord",
    "FluidKeyPool",
    "IntegrityError",
    "KeyAwareRouter",
    "KeyNeverSuffices",
    "KeyPlan",
    "KeyRequest",
    "LatencyRouter",
    "Link",
    "LinkCut",
    "LinkSpec",
    "LinkSummary",
    "NetworkError",
    "NoCipher",
    "NoPath",
    "NodeNotFound",
    "NodeOutage",
    "NodeSpec",
    "OneTimePad",
    "PoolRecord",
    "PoolWipe",
    "QKDNetwork",
    "Router",
    "SatelliteSchedule",
    "ScaledPool",
    "Schedule",
    "ScheduleRun",
    "ScheduledRate",
    "Summary",
    "Tamper",
    "TopologySpec",
    "TransferRecord",
    "Window",
    "WindowWait",
    "apply_schedule",
    "attack_rate_factor",
    "build_graph",
    "get_cipher",
    "get_router",
    "key_aware_path",
    "link_rates_bps",
    "lowest_latency_path",
    "max_chunk_bytes",
    "read_topology",
    "satellite_schedule",
    "schedule_faults",
    "to_rows",
    "write_csv",
]
