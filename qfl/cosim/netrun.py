"""The network half of a run, as a record: what :func:`qfl.cosim.run.simulate_network`
produces, and what the learning half (:mod:`qfl.cosim.run`) and the run folder
(:mod:`qfl.cosim.outputs`) read.

It lives apart from both so that neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from network import QKDNetwork
    from qfl.cosim.jobs import Job
    from qfl.cosim.schedule import Timeline
    from qfl.scenario import Scenario

__all__ = ["NetworkRun"]


@dataclass
class NetworkRun:
    """The network half of a run.

    Attributes
    ----------
    scenario : Scenario
        The resolved scenario.
    job : Job
        The learning job (its round plans gave the timeline).
    net : QKDNetwork
        The simulated network, with its records, key pools and fault log.
    timeline : Timeline
        When each learning operation happened; the rounds that completed.
    topology : TopologySpec
        The built topology (nodes and links with their key rates).
    wall_s : float
        Wall-clock seconds the network half took (the simulator's speed, not simulated time).
    """

    scenario: Scenario
    job: Job
    net: QKDNetwork
    timeline: Timeline
    topology: Any
    wall_s: float
