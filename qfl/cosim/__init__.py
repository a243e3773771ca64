"""Co-simulation: learning on the network's clock.

The network half (:func:`simulate_network`) decides which learning operations happen and
when; the learning half (:func:`execute_learning`) executes them; :func:`run_scenario` does
both and writes a run folder.

The names are imported on first use (PEP 562), so that the torch-free modules of this
package (:mod:`qfl.cosim.netbuild`, used by ``qfl validate`` and ``qfl kme``) can be imported
without loading the learning side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "ComputeProfile": "qfl.cosim.schedule",
    "EvalRow": "qfl.cosim.jobs",
    "Job": "qfl.cosim.jobs",
    "NetworkRun": "qfl.cosim.run",
    "ReplayTransport": "qfl.cosim.replay",
    "RoundTransport": "qfl.cosim.replay",
    "RunResult": "qfl.cosim.run",
    "Timeline": "qfl.cosim.schedule",
    "execute_learning": "qfl.cosim.run",
    "make_job": "qfl.cosim.jobs",
    "run_scenario": "qfl.cosim.run",
    "simulate_network": "qfl.cosim.run",
    "summarize_run": "qfl.cosim.run",
}

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


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'qfl.cosim' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
