"""flower_fedprox: the client (a NumPyClient) and its ClientApp."""

from __future__ import annotations

import torch
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context

from flower_fedprox.task import Net, get_weights, load_data, set_weights, test, train


class FlowerClient(NumPyClient):
    def __init__(self, net, trainloader, valloader, local_epochs):
        self.net = net
        self.trainloader = trainloader
        self.valloader = valloader
        self.local_epochs = local_epochs

    def get_parameters(self, config):
        return get_weights(self.net)

    def fit(self, parameters, config):
        set_weights(self.net, parameters)
        loss = train(
            self.net,
            self.trainloader,
            epochs=self.local_epochs,
            lr=float(config.get("lr", 0.05)),
            proximal_mu=float(config["proximal_mu"]),  # sent by FedProx
        )
        return get_weights(self.net), len(self.trainloader.dataset), {"train_loss": loss}

    def evaluate(self, parameters, config):
        set_weights(self.net, parameters)
        loss, accuracy = test(self.net, self.valloader)
        return loss, len(self.valloader.dataset), {"accuracy": accuracy}


def client_fn(context: Context):
    torch.manual_seed(0)  # every client starts from the same weights
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    trainloader, valloader = load_data(partition_id, num_partitions)
    local_epochs = int(context.run_config.get("local-epochs", 1))
    return FlowerClient(Net(), trainloader, valloader, local_epochs).to_client()


app = ClientApp(client_fn=client_fn)
