"""The QKD network: a SimPy discrete-event simulation over a NetworkX topology.

Depends on simpy, networkx and ``qkd``; never on torch.
"""

__all__: list[str] = []
