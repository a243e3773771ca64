"""The ``qkd`` section: the QKD system and key-store defaults of every link."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from network.topology import DEFAULT_BANDWIDTH_BPS, DEFAULT_POOL_BITS, DEFAULT_SYSTEM
from qfl.scenario.base import NonNegative, Positive, _Frozen

__all__ = ["Protocol", "QKDSpec"]

Protocol = Literal["decoy-bb84", "decoy-vacuum-weak", "decoy-1", "bb84-no-decoy", "single-photon"]


class QKDSpec(_Frozen):
    """QKD defaults for every link; links may override them."""

    preset: str = Field(DEFAULT_SYSTEM, description="QKD system preset (qkd.params.PRESETS).")
    protocol: Protocol = Field(
        "decoy-bb84",
        description="Key-rate model of the links' systems. With key_model finite-blocks: "
        "decoy-bb84 is the three-intensity finite-key bound of Lim et al. 2014 (weakest "
        "intensity 2e-4), decoy-vacuum-weak the same with a true vacuum, decoy-1 the one-decoy "
        "bound of Rusca et al. 2018. With asymptotic-fluid: "
        "decoy-bb84 (infinitely many decoys), decoy-vacuum-weak (vacuum + one weak decoy), "
        "bb84-no-decoy (GLLP), single-photon (Ma et al. 2005).",
    )
    key_model: Literal["finite-blocks", "asymptotic-fluid"] = Field(
        "finite-blocks",
        description="finite-blocks: a link collects block_size pulses, post-processes them for "
        "postprocess_s, then the block's finite-key length lands in its pool at once (minus "
        "auth_bits_per_block); asymptotic-fluid: key flows in continuously at the asymptotic "
        "rate (the small-block limit, optimistic).",
    )
    block_size: Positive | None = Field(
        None,
        description="Pulses per post-processing block N (finite-blocks); default: the "
        "preset's, else 1e10.",
    )
    eps_sec: Annotated[float, Field(gt=0, lt=1)] = Field(
        1e-10, description="Secrecy parameter of each block (finite-blocks)."
    )
    eps_cor: Annotated[float, Field(gt=0, lt=1)] = Field(
        1e-15, description="Correctness parameter of each block (finite-blocks)."
    )
    postprocess_s: NonNegative | None = Field(
        None,
        description="Seconds from the end of a block's collection until its key lands "
        "(sifting, estimation, error correction, privacy amplification); default: one block "
        "time (the next block is collected while this one is processed).",
    )
    auth_bits_per_block: NonNegative = Field(
        1024.0,
        description="Key bits QKD's own classical channel spends per block to authenticate "
        "its post-processing messages (a few Wegman-Carter tags per block; finite-blocks).",
    )
    rate_scale: NonNegative = Field(1.0, description="Multiplies every link's secret key rate.")
    pool_capacity_bits: Positive = Field(DEFAULT_POOL_BITS, description="Key store per link.")
    initial_fill_bits: NonNegative = Field(0.0, description="Key in each store at t = 0.")
    bandwidth_bps: Positive = Field(DEFAULT_BANDWIDTH_BPS, description="Classical bandwidth.")
    misalignment: Annotated[float, Field(ge=0, le=0.5)] | None = Field(
        None,
        description="Overrides the preset's optical misalignment error e_d, in [0, 0.5].",
    )
    detector_efficiency: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None,
        description="Overrides the preset's Bob efficiency eta_Bob, in (0, 1].",
    )
    dark_count_prob: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None,
        description="Overrides the preset's dark-count probability per gate Y0, in [0, 1).",
    )
    attenuation_db_per_km: NonNegative | None = Field(
        None,
        description="Overrides every link's fibre loss, dB/km.",
    )
