"""Learning methods written against :class:`qfl.algorithms.transport.Transport`.

- :mod:`~qfl.algorithms.deffd`: Def-FD (feature-map distillation) and its decentralized
  baselines Def-KT (mutual knowledge transfer) and gossip averaging.
- :mod:`~qfl.algorithms.fedavg`: FedAvg with a server, multi-exit partial aggregation.
- :mod:`~qfl.algorithms.ssl`: SSL-backbone FL (federated SimCLR, then task heads).
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
from qfl.algorithms.fedavg import (
    ClientUpdate,
    FedAvg,
    FedAvgConfig,
    FedAvgResult,
    RoundRecord,
    aggregate,
    exit_accuracies,
    masked_average,
    payload_bytes,
    run_fedavg,
    star_transport,
)
from qfl.algorithms.ssl import (
    FedSimCLR,
    HeadConfig,
    SimCLRConfig,
    SSLClient,
    SupervisedConfig,
    pretrain_simclr,
    train_centralized,
    train_heads,
)

__all__ = [
    "ENGINES",
    "METHODS",
    "ClientData",
    "ClientUpdate",
    "DecentralizedLearner",
    "DecentralizedResult",
    "DefFDConfig",
    "FedAvg",
    "FedAvgConfig",
    "FedAvgResult",
    "FedSimCLR",
    "HeadConfig",
    "ModelPayload",
    "RoundMetrics",
    "RoundPlan",
    "RoundRecord",
    "SSLClient",
    "SimCLRConfig",
    "SupervisedConfig",
    "Transfer",
    "aggregate",
    "exit_accuracies",
    "masked_average",
    "payload_bytes",
    "plan_round",
    "pretrain_simclr",
    "run_decentralized",
    "run_fedavg",
    "run_round",
    "star_transport",
    "train_centralized",
    "train_heads",
]
