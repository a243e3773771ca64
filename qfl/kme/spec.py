"""ETSI GS QKD 014 v1.1.1 data formats: the request checks and the response bodies.

Pure functions, no I/O: the HTTP layer (:mod:`qfl.kme.server`) hands them query strings and
decoded JSON, and turns a :class:`KmeError` into the spec's error body
``{"message": ..., "details": [...]}`` with its status code (400, 401 or 503).

Sizes are in bits (the spec's unit), multiples of 8, within ``[min_key_size,
max_key_size]``; ``number`` within ``[1, max_key_per_request]``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qkd.errors import ParameterError

__all__ = [
    "KeyRequest",
    "KmeError",
    "Limits",
    "error_body",
    "key_container",
    "parse_dec_query",
    "parse_enc_query",
    "parse_key_ids",
    "parse_key_request",
]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class KmeError(Exception):
    """A request the KME refuses: the spec's status code, ``message`` and ``details``.

    Examples
    --------
    >>> e = KmeError(400, "size must be a multiple of 8", [{"size": 12}])
    >>> e.status, error_body(e)
    (400, {'message': 'size must be a multiple of 8', 'details': [{'size': 12}]})
    """

    def __init__(
        self, status: int, message: str, details: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = [dict(d) for d in details]


def error_body(exc: KmeError) -> dict[str, Any]:
    """The spec's Error data format (``details`` only when there are some)."""
    body: dict[str, Any] = {"message": exc.message}
    if exc.details:
        body["details"] = exc.details
    return body


@dataclass(frozen=True)
class Limits:
    """What one KME serves (the Status fields that do not depend on the pools).

    Parameters
    ----------
    key_size : int
        Default key size, bits.
    min_key_size, max_key_size : int
        Range of ``size``, bits (multiples of 8).
    max_key_per_request : int
        Largest ``number``.
    max_sae_id_count : int
        Additional slave SAEs a request may name (0: key multicast is not offered).
    max_held_per_pair : int
        Keys a master SAE may hold for one slave SAE before the slave fetches some (a bound
        on the KME's memory; beyond it, ``enc_keys`` answers 503).
    """

    key_size: int = 256
    min_key_size: int = 64
    max_key_size: int = 8192
    max_key_per_request: int = 128
    max_sae_id_count: int = 0
    max_held_per_pair: int = 100_000

    def __post_init__(self) -> None:
        for name in ("key_size", "min_key_size", "max_key_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 8 or v % 8:
                raise ParameterError(name, v, "a multiple of 8, >= 8")
        if not self.min_key_size <= self.key_size <= self.max_key_size:
            raise ParameterError(
                "key_size",
                self.key_size,
                f"in [min_key_size, max_key_size] = [{self.min_key_size}, {self.max_key_size}]",
            )
        if self.max_key_per_request < 1:
            raise ParameterError("max_key_per_request", self.max_key_per_request, ">= 1")
        if self.max_held_per_pair < self.max_key_per_request:
            raise ParameterError(
                "max_held_per_pair", self.max_held_per_pair, ">= max_key_per_request"
            )
        if self.max_sae_id_count != 0:
            raise ParameterError("max_sae_id_count", self.max_sae_id_count, "0 (no multicast)")


@dataclass(frozen=True)
class KeyRequest:
    """A checked Key request: ``number`` keys of ``size`` bits."""

    number: int
    size: int


def _int_field(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KmeError(400, f"{name} must be an integer", [{name: value}])
    return value


def _checked(number: int, size: int, limits: Limits) -> KeyRequest:
    lo, hi = limits.min_key_size, limits.max_key_size
    if not 1 <= number <= limits.max_key_per_request:
        raise KmeError(
            400,
            f"number must be in [1, {limits.max_key_per_request}] (max_key_per_request), "
            f"got {number}",
            [{"number": number}],
        )
    if size % 8 or not lo <= size <= hi:
        raise KmeError(
            400,
            f"size must be a multiple of 8 bits in [{lo}, {hi}] (min_key_size, max_key_size), "
            f"got {size}",
            [{"size": size}],
        )
    return KeyRequest(number, size)


def parse_key_request(body: Any, limits: Limits) -> KeyRequest:
    """Check a Key request JSON body (``None`` or ``{}``: the defaults).

    Raises
    ------
    KmeError
        400 for a body that is not an object, an unknown field, a bad ``number`` or ``size``,
        additional slave SAEs (no multicast here) or any ``extension_mandatory`` (none is
        supported, so every one must be refused).

    Examples
    --------
    >>> parse_key_request({"number": 2, "size": 512}, Limits())
    KeyRequest(number=2, size=512)
    >>> parse_key_request(None, Limits())
    KeyRequest(number=1, size=256)
    >>> try:
    ...     parse_key_request({"size": 12}, Limits())
    ... except KmeError as e:
    ...     print(e.status, e.message[:40])
    400 size must be a multiple of 8 bits in [64
    """
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise KmeError(400, "the Key request must be a JSON object")
    known = {
        "number",
        "size",
        "additional_slave_SAE_IDs",
        "extension_mandatory",
        "extension_optional",
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise KmeError(
            400,
            f"unknown field in the Key request: {unknown[0]!r}",
            [{"field": u} for u in unknown],
        )
    number = _int_field("number", body.get("number", 1))
    size = _int_field("size", body.get("size", limits.key_size))
    extra = body.get("additional_slave_SAE_IDs")
    if extra not in (None, []):
        raise KmeError(
            400,
            f"additional_slave_SAE_IDs: this KME offers no key multicast "
            f"(max_SAE_ID_count = {limits.max_sae_id_count})",
            [{"additional_slave_SAE_IDs": extra}],
        )
    mandatory = body.get("extension_mandatory")
    if mandatory not in (None, []):
        if not isinstance(mandatory, list):
            raise KmeError(400, "extension_mandatory must be an array of objects")
        names = [n for ext in mandatory for n in (ext if isinstance(ext, dict) else [ext])]
        raise KmeError(
            400,
            "not all extension_mandatory parameters are supported",
            [{"extension_mandatory_unsupported": names}],
        )
    optional = body.get("extension_optional")
    if optional is not None and not isinstance(optional, list):
        raise KmeError(400, "extension_optional must be an array of objects")
    return _checked(number, size, limits)


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise KmeError(400, f"query parameter {name} given {len(values)} times", [{name: values}])
    return values[0]


def _query_int(query: Mapping[str, list[str]], name: str, default: int) -> int:
    raw = _one(query, name)
    if raw is None:
        return default
    if not re.fullmatch(r"[+-]?\d{1,18}", raw.strip()):
        raise KmeError(400, f"query parameter {name} must be an integer, got {raw[:40]!r}")
    return int(raw)


def _no_other(query: Mapping[str, list[str]], allowed: set[str]) -> None:
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise KmeError(
            400,
            f"unknown query parameter {unknown[0][:40]!r}; allowed: {', '.join(sorted(allowed))}",
        )


def parse_enc_query(query: Mapping[str, list[str]], limits: Limits) -> KeyRequest:
    """Check the query of ``GET enc_keys`` (``number``, ``size``; both optional).

    Examples
    --------
    >>> parse_enc_query({"number": ["3"]}, Limits())
    KeyRequest(number=3, size=256)
    """
    _no_other(query, {"number", "size"})
    return _checked(
        _query_int(query, "number", 1), _query_int(query, "size", limits.key_size), limits
    )


def _key_id(value: Any) -> str:
    if not isinstance(value, str) or not _UUID.match(value.lower()):
        shown = value[:60] if isinstance(value, str) else value
        raise KmeError(400, "key_ID must be a UUID", [{"key_ID": shown}])
    return value.lower()


def parse_dec_query(query: Mapping[str, list[str]], limits: Limits) -> list[str]:
    """Check the query of ``GET dec_keys``: one ``key_ID`` (a UUID)."""
    _no_other(query, {"key_ID"})
    raw = _one(query, "key_ID")
    if raw is None:
        raise KmeError(400, "query parameter key_ID is required")
    return [_key_id(raw)]


def parse_key_ids(body: Any, limits: Limits) -> list[str]:
    """Check a Key IDs JSON body: ``{"key_IDs": [{"key_ID": uuid}, ...]}``.

    Examples
    --------
    >>> parse_key_ids({"key_IDs": [{"key_ID": "550E8400-E29B-41D4-A716-446655440000"}]},
    ...               Limits())
    ['550e8400-e29b-41d4-a716-446655440000']
    """
    if not isinstance(body, dict):
        raise KmeError(400, "the Key IDs request must be a JSON object with key_IDs")
    unknown = sorted(set(body) - {"key_IDs", "key_IDs_extension"})
    if unknown:
        raise KmeError(400, f"unknown field in the Key IDs request: {unknown[0][:40]!r}")
    items = body.get("key_IDs")
    if not isinstance(items, list) or not items:
        raise KmeError(400, "key_IDs must be a non-empty array of {key_ID: UUID} objects")
    if len(items) > limits.max_key_per_request:
        raise KmeError(
            400,
            f"key_IDs: at most {limits.max_key_per_request} per request (max_key_per_request), "
            f"got {len(items)}",
        )
    ids = []
    for item in items:
        if not isinstance(item, dict) or "key_ID" not in item:
            raise KmeError(400, "each entry of key_IDs must be an object with key_ID")
        ids.append(_key_id(item["key_ID"]))
    if len(set(ids)) != len(ids):
        raise KmeError(400, "key_IDs names a key twice")
    return ids


def key_container(keys: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """The spec's Key container: ``{"keys": [{"key_ID": ..., "key": base64}, ...]}``."""
    return {
        "keys": [{"key_ID": kid, "key": base64.b64encode(key).decode("ascii")} for kid, key in keys]
    }
