"""The ``cipher`` section: how model transfers are encrypted, hence how much key they take."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from network.cipher import GCM_MAX_KEY_BYTES
from qfl.scenario.base import Positive, _Frozen

__all__ = ["CipherSpec"]


class CipherSpec(_Frozen):
    """How model transfers are encrypted, hence how much key they take."""

    policy: Literal["otp", "aes-256-gcm", "none"] = Field(
        "aes-256-gcm",
        description="otp (one key bit per payload bit, information-theoretic), aes-256-gcm (256 "
        "key bits "
        "per re-key) or none.",
    )
    rekey_bytes: Positive | None = Field(1e6, description="AES: a new 256-bit key every N bytes.")
    rekey_seconds: Positive | None = Field(None, description="AES: and/or every T seconds.")

    @field_validator("rekey_bytes")
    @classmethod
    def _key_bytes(cls, v: float | None) -> float | None:
        """A whole number of bytes within AES-GCM's limit per key (NIST SP 800-38D)."""
        allowed = f"a whole number of bytes in [1, {GCM_MAX_KEY_BYTES}] (GCM's limit per key)"
        if v is None:  # no limit but GCM's (infinite values are refused as not finite)
            return v
        if v != int(v) or not 1 <= int(v) <= GCM_MAX_KEY_BYTES:
            raise ValueError(f"must be {allowed}")
        return v
