"""Learning methods written against :class:`qfl.transport.Transport`.

- :mod:`~qfl.algorithms.deffd`: Def-FD (feature-map distillation) and its decentralized
  baselines Def-KT (mutual knowledge transfer) and gossip averaging.
"""

from qfl.algorithms.deffd import (
    ENGINES,
    METHODS,
    ClientData,
    DecentralizedLearner,
    DecentralizedResult,
    DefFDConfig,
    ModelPayload,
    RoundMetrics,
    RoundPlan,
    Transfer,
    plan_round,
    run_decentralized,
    run_round,
)

__all__ = [
    "ENGINES",
    "METHODS",
    "ClientData",
    "DecentralizedLearner",
    "DecentralizedResult",
    "DefFDConfig",
    "ModelPayload",
    "RoundMetrics",
    "RoundPlan",
    "Transfer",
    "plan_round",
    "run_decentralized",
    "run_round",
]
