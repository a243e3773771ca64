"""Keys for applications: ETSI GS QKD 014 Key Management Entities over the simulated network.

``qfl kme serve`` runs one KME per node of a scenario's network behind a REST API
(:mod:`qfl.kme.server`), handing keys taken from the simulated link pools
(:mod:`qfl.kme.service`) to Secure Application Entities. Imports ``network``, ``qkd`` and the
scenario schema only, never the learning side.
"""

from qfl.kme.build import build_service, default_saes, load_replay
from qfl.kme.clock import ManualClock, RealClock
from qfl.kme.server import Servers, server_tls_context, start_servers
from qfl.kme.service import KeyService, kme_id
from qfl.kme.spec import KeyRequest, KmeError, Limits

__all__ = [
    "KeyRequest",
    "KeyService",
    "KmeError",
    "Limits",
    "ManualClock",
    "RealClock",
    "Servers",
    "build_service",
    "default_saes",
    "kme_id",
    "load_replay",
    "server_tls_context",
    "start_servers",
]
