"""QKD physics: key-rate models, protocol simulation, post-processing and key accounting.

Depends on numpy and scipy only (``qkd.circuits`` also on qiskit, imported on demand).
"""

from qkd.errors import ParameterError, QflError, UnknownNameError
from qkd.params import PRESETS, Detector, Fibre, QKDSystem, Source, get_preset
from qkd.rates import (
    PROTOCOLS,
    binary_entropy,
    gain_and_qber,
    key_rate_and_mu,
    key_rate_bps,
    key_rate_per_pulse,
    max_distance,
    optimal_mu,
    plob_bound,
    single_photon_gain_and_qber,
    tgw_bound,
)

__all__ = [
    "PRESETS",
    "PROTOCOLS",
    "Detector",
    "Fibre",
    "ParameterError",
    "QKDSystem",
    "QflError",
    "Source",
    "UnknownNameError",
    "binary_entropy",
    "gain_and_qber",
    "get_preset",
    "key_rate_and_mu",
    "key_rate_bps",
    "key_rate_per_pulse",
    "max_distance",
    "optimal_mu",
    "plob_bound",
    "single_photon_gain_and_qber",
    "tgw_bound",
]
