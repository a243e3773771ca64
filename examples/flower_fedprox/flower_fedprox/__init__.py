"""flower_fedprox: a Flower app (FedProx on Fashion-MNIST), written for Flower alone."""
