"""Experiment runners: paper set-ups wired from data, models, algorithms and transports.

- :mod:`~qfl.experiments.deffd`: the Def-FD paper's Fashion-MNIST experiment (Def-FD with
  the L2/COS/MSE feature losses, Def-KT, gossip averaging).
"""

from qfl.experiments.deffd import (
    METHOD_NAMES,
    METHOD_PRESETS,
    PAPER_RESULTS,
    DefFDSetup,
    make_clients,
    method_config,
    run_deffd_experiment,
    run_method,
)
from qfl.experiments.multiexit import MultiExitExperiment, run_multiexit_experiment
from qfl.experiments.ssl import SSLExperiment, run_ssl_experiment

__all__ = [
    "METHOD_NAMES",
    "METHOD_PRESETS",
    "PAPER_RESULTS",
    "DefFDSetup",
    "MultiExitExperiment",
    "SSLExperiment",
    "make_clients",
    "method_config",
    "run_deffd_experiment",
    "run_method",
    "run_multiexit_experiment",
    "run_ssl_experiment",
]
