"""flower_fedprox: the strategy (FedProx) and its ServerApp."""

from __future__ import annotations

from flwr.common import Context, Metrics
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedProx


def weighted_average(metrics: list[tuple[int, Metrics]]) -> Metrics:
    """Accuracy over every client's examples."""
    total = sum(n for n, _ in metrics)
    return {"accuracy": sum(n * float(m["accuracy"]) for n, m in metrics) / total}


def fit_config(server_round: int) -> dict:
    return {"lr": 0.05 if server_round < 4 else 0.02}


strategy = FedProx(
    fraction_fit=1.0,
    fraction_evaluate=1.0,
    min_fit_clients=4,
    min_available_clients=4,
    proximal_mu=0.1,
    on_fit_config_fn=fit_config,
    evaluate_metrics_aggregation_fn=weighted_average,
)


def server_fn(context: Context) -> ServerAppComponents:
    rounds = int(context.run_config.get("num-server-rounds", 5))
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


app = ServerApp(server_fn=server_fn)
