"""QKD physics: key-rate models, protocol simulation, post-processing and key accounting.

Depends on numpy and scipy only (``qkd.circuits`` also on qiskit, imported on demand).
"""

from qkd.amplify import final_key_length, phase_error_upper_bound, toeplitz_hash
from qkd.bb84 import (
    Detections,
    IntensityStats,
    QberEstimate,
    SiftedKey,
    estimate_qber,
    gains_and_errors,
    sift,
    simulate,
)
from qkd.cascade import CascadeResult, cascade_block_sizes, reconcile
from qkd.errors import ParameterError, QflError, UnknownNameError
from qkd.finite import (
    FINITE_PROTOCOLS,
    FiniteKey,
    asymptotic_key,
    asymptotic_limit,
    finite_key,
    finite_max_distance,
)
from qkd.keypool import InsufficientKeyError, KeyMaterial, KeyPool, KeySlice
from qkd.params import PRESETS, Detector, Fibre, QKDSystem, Source, get_preset
from qkd.pipeline import DistillResult, distill, generate_key, simulate_and_distill
from qkd.rates import (
    ABORT_QBER,
    PROTOCOLS,
    attack_rate_factor,
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
    "ABORT_QBER",
    "FINITE_PROTOCOLS",
    "PRESETS",
    "PROTOCOLS",
    "CascadeResult",
    "Detections",
    "Detector",
    "DistillResult",
    "Fibre",
    "FiniteKey",
    "InsufficientKeyError",
    "IntensityStats",
    "KeyMaterial",
    "KeyPool",
    "KeySlice",
    "ParameterError",
    "QKDSystem",
    "QberEstimate",
    "QflError",
    "SiftedKey",
    "Source",
    "UnknownNameError",
    "asymptotic_key",
    "asymptotic_limit",
    "attack_rate_factor",
    "binary_entropy",
    "cascade_block_sizes",
    "distill",
    "estimate_qber",
    "final_key_length",
    "finite_key",
    "finite_max_distance",
    "gain_and_qber",
    "gains_and_errors",
    "generate_key",
    "get_preset",
    "key_rate_and_mu",
    "key_rate_bps",
    "key_rate_per_pulse",
    "max_distance",
    "optimal_mu",
    "phase_error_upper_bound",
    "plob_bound",
    "reconcile",
    "sift",
    "simulate",
    "simulate_and_distill",
    "single_photon_gain_and_qber",
    "tgw_bound",
    "toeplitz_hash",
]
