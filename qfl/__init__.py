"""Federated learning over a QKD network: learning methods, scenarios, co-simulation, CLI.

Importing ``qfl`` is cheap: torch is imported by the submodules that need it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
