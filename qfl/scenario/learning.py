"""The ``learning`` and ``compute`` sections: the learning job and its simulated compute time."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from network.topology import DEFAULT_FLOPS_PER_S
from qfl.scenario.base import Positive, _Frozen

__all__ = ["ComputeSpec", "Dataset", "LearningSpec", "Method"]

Method = Literal[
    "def-fd", "def-kt", "gossip-avg", "fedavg", "fedavg-multiexit", "ssl-backbone", "flower"
]
Dataset = Literal["fashion-mnist", "unimib-shar", "synthetic-har", "flowers102+intel"]


class LearningSpec(_Frozen):
    """The learning job: method, data, model and hyperparameters."""

    method: Method = Field(
        description="def-fd, def-kt, gossip-avg (decentralized), fedavg, fedavg-multiexit, "
        "ssl-backbone "
        "(with a server), flower (a Flower strategy and clients: strategy, client_fn, "
        "flower); see qfl.cosim.methods.",
    )
    dataset: Dataset | None = Field(
        None,
        description="fashion-mnist (decentralized and FedAvg), synthetic-har or unimib-shar "
        "(FedAvg: the "
        "LSTM), flowers102+intel (ssl-backbone); required by every method but flower (its "
        "clients hold their own data).",
    )
    model: Literal["cnn", "resnet-me", "lstm-me", "resnet18", "resnet50"] | None = Field(
        None,
        description="Must match the method and dataset: cnn (Def-FD family), resnet-me / lstm-me "
        "(FedAvg "
        "on images / HAR), resnet18 / resnet50 (SSL encoder); default: the method's.",
    )
    clients: tuple[str, ...] = Field((), description="Client nodes; default: every client node.")
    server: str | None = Field(None, description="FedAvg / SSL aggregator node.")
    partition: Literal["classes", "dirichlet"] | None = Field(
        None,
        description="How client data are split: classes (Def-FD family: classes_per_client "
        "classes each) or dirichlet (FedAvg family: label skew Dirichlet(alpha)); each method "
        "implements one, which this field may name.",
    )
    classes_per_client: Annotated[int, Field(ge=1, le=1000)] = Field(
        8,
        description="Def-FD family: classes each client holds (the paper: 8 of 10).",
    )
    alpha: Annotated[float, Field(gt=0, le=1000)] = Field(
        0.2,
        description="FedAvg family: Dirichlet concentration of the label skew (the paper: 0.2; "
        "smaller is"
        " more skewed).",
    )
    holdout_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.2,
        description="Share of each client's data held out for its local (personalized) accuracy.",
    )
    samples_per_client: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Keep at most this many samples per client (None: all)."
    )
    test_samples: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Global accuracy on the first N test samples (None: all)."
    )
    senders_per_round: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None, description="Decentralized methods: senders per round (None: half the clients)."
    )
    rounds: Annotated[int, Field(ge=1, le=100_000)] = Field(
        20,
        description="Rounds to run (at most 100000); the horizon may stop earlier.",
    )
    local_epochs: Annotated[int, Field(ge=1, le=1000)] = Field(
        1,
        description="Epochs of a client's local update per round.",
    )
    fusion_epochs: Annotated[int, Field(ge=1, le=1000)] = Field(
        1,
        description="Def-FD family: epochs of fusing a received model.",
    )
    batch_size: Annotated[int, Field(ge=1, le=65536)] = Field(
        32, description="Samples per training step."
    )
    lr: Annotated[float, Field(gt=0, le=10)] = Field(
        0.01, description="Learning rate (SGD; Adam for SSL pretraining)."
    )
    momentum: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.9,
        description="SGD momentum, in [0, 1).",
    )
    weight_decay: Annotated[float, Field(ge=0, le=1)] = Field(0.0, description="L2 weight decay.")
    gamma: Annotated[float, Field(ge=0, le=100)] = Field(
        0.03, description="Def-FD feature-loss weight."
    )
    feature_loss: Literal["l2", "cos", "mse"] = Field(
        "mse",
        description="Def-FD feature-map loss: l2, cos or mse.",
    )
    temperature: Annotated[float, Field(gt=0, le=100)] | Literal["adaptive"] = Field(
        3.0,
        description="Distillation temperature; 'adaptive' (multi-exit) follows Phuong & Lampert.",
    )
    width: Annotated[int, Field(ge=1, le=1024)] = Field(
        16, description="Model base width (multi-exit, SSL)."
    )
    round_budget_s: Positive | None = Field(
        None,
        description="Multi-exit: a client trains the deepest exit whose local update fits this "
        "many simulated seconds (None: every client trains all exits).",
    )
    distill_c: Annotated[float, Field(ge=0, le=100)] = Field(
        0.5, description="Multi-exit distillation weight C."
    )
    image_size: Annotated[int, Field(ge=8, le=1024)] = Field(
        32,
        description="SSL: side of the square images, pixels.",
    )
    target_accuracy: Annotated[float, Field(gt=0, le=1)] = Field(
        0.75,
        description="Accuracy whose first crossing gives the summary's rounds and time to target.",
    )
    eval_every: Annotated[int, Field(ge=1, le=100_000)] = Field(
        1,
        description="Evaluate every N rounds (and after the last).",
    )
    engine: Literal["auto", "batched", "sequential"] = Field(
        "auto",
        description="Training engine: clients vectorized (batched) or one after another; "
        "auto = batched on a GPU, and on a CPU where every model has a stacked CPU route (the "
        "Def-FD CNN's fused kernels, the multi-exit ResNet and LSTM); sequential otherwise "
        "(faster there, see benchmarks/README.md).",
    )

    strategy: str | None = Field(
        None,
        description="flower: the Flower Strategy, as 'package.module:attr' (a Strategy "
        "subclass or factory, called with the flower section's arguments, or a Strategy "
        "instance).",
    )
    client_fn: str | None = Field(
        None,
        description="flower: 'package.module:attr' of the function that builds client i "
        "(client_fn(context) with node_config partition-id / num-partitions, or "
        "client_fn(cid)), returning a NumPyClient or Client; client i runs on the i-th client "
        "node.",
    )
    flower: dict[str, Any] = Field(
        default_factory=dict,
        description="flower: keyword arguments of the strategy (fraction_fit, "
        "min_fit_clients, accept_failures, proximal_mu, eta, ...); a string 'package.module:"
        "attr' under a key ending in _fn is imported (evaluate_fn, on_fit_config_fn, ...).",
    )
    round_timeout_s: Positive | None = Field(
        None,
        description="flower: simulated deadline of a round's fit phase and of its evaluate "
        "phase (Flower's round_timeout); a client whose result misses it is one of the "
        "round's failures (None: wait for every client).",
    )
    seconds_per_sample: Positive | None = Field(
        None,
        description="flower: simulated seconds of local training per sample and epoch on "
        "every client (default: FLOPs counted from the client's torch model over its node's "
        "flops_per_s).",
    )


class ComputeSpec(_Frozen):
    """How learning steps take simulated time."""

    default_flops_per_s: Positive = Field(
        DEFAULT_FLOPS_PER_S, description="Node speed when a node sets none."
    )
    backward_factor: Annotated[float, Field(ge=1)] = Field(
        3.0, description="A training step costs this many forward passes."
    )
