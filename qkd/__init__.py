"""QKD physics: key-rate models, protocol simulation, post-processing and key accounting.

Depends on numpy and scipy only (``qkd.circuits`` also on qiskit, imported on demand).
"""

from qkd.errors import ParameterError, QflError, UnknownNameError
from qkd.params import PRESETS, Detector, Fibre, QKDSystem, Source, get_preset

__all__ = [
    "PRESETS",
    "Detector",
    "Fibre",
    "ParameterError",
    "QKDSystem",
    "QflError",
    "Source",
    "UnknownNameError",
    "get_preset",
]
