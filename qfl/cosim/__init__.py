"""Co-simulation: learning on the network's clock.

The network half (:func:`simulate_network`) decides which learning operations happen and
when; the learning half (:func:`execute_learning`) executes them; :func:`run_scenario` does
both and writes a run folder.
"""

from qfl.cosim.jobs import EvalRow, Job, make_job
from qfl.cosim.replay import ReplayTransport, RoundTransport
from qfl.cosim.run import (
    NetworkRun,
    RunResult,
    execute_learning,
    run_scenario,
    simulate_network,
    summarize_run,
)
from qfl.cosim.schedule import ComputeProfile, Timeline

__all__ = [
    "ComputeProfile",
    "EvalRow",
    "Job",
    "NetworkRun",
    "ReplayTransport",
    "RoundTransport",
    "RunResult",
    "Timeline",
    "execute_learning",
    "make_job",
    "run_scenario",
    "simulate_network",
    "summarize_run",
]
