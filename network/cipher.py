"""Cipher policies: how much key a message costs on a link, and real encryption for bit-exact runs.

A policy is a small frozen object with ``init() -> state`` and
``plan(state, n_bytes, now) -> KeyPlan`` (the new state is in the plan), in the manner of
optax's ``(init, update)`` pairs; the network keeps one state per link.

* :class:`OneTimePad`: one key bit per payload bit, plus ``auth_bits`` per message for a
  one-time Wegman-Carter authenticator. The default, 256 bits, is the one-time key of
  Poly1305 (a 128-bit polynomial-hash key ``r`` and a 128-bit pad ``s``), which is
  information-theoretically secure when its key is used once.
* :class:`AesGcm`: AES-256-GCM whose key is replaced every ``rekey_bytes`` bytes and/or every
  ``rekey_s`` seconds; each new key costs 256 bits from the link's pool.
* :class:`NoCipher`: no key at all (the classical baseline).

In bit-exact mode a policy also carries each hop's payload: ``carry`` seals it with key bits
drawn from the link's :class:`BitStore` (:func:`otp_encrypt`, :func:`aes_encrypt`), sends it
over the link and opens it at the far end (:func:`otp_decrypt`, :func:`aes_decrypt`), keeping
the link's session (``session()``: the live AES key and nonce counter) up to date.

References
----------
M. N. Wegman and J. L. Carter, "New hash functions and their use in authentication and set
equality", J. Comput. Syst. Sci. 22, 265 (1981).
D. J. Bernstein, "The Poly1305-AES message-authentication code", FSE 2005.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.poly1305 import Poly1305
from numpy.typing import NDArray

from network.errors import NetworkError

if TYPE_CHECKING:
    from qkd.keypool import KeyMaterial
from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "AES_KEY_BITS",
    "POLY1305_KEY_BITS",
    "AesGcm",
    "AesSession",
    "AesState",
    "BitStore",
    "CipherPolicy",
    "Hop",
    "IntegrityError",
    "KeyPlan",
    "NoCipher",
    "OneTimePad",
    "aes_decrypt",
    "aes_encrypt",
    "get_cipher",
    "otp_decrypt",
    "otp_encrypt",
    "random_key_source",
]

AES_KEY_BITS = 256
POLY1305_KEY_BITS = 256


class IntegrityError(NetworkError):
    """A ciphertext failed its authentication check (tampered, or the wrong key)."""


@dataclass(frozen=True)
class KeyPlan:
    """What one message costs on one link.

    Attributes
    ----------
    bits : int
        Key bits to take from the link's pool.
    segments : tuple of (int, bool)
        ``(n_bytes, new_key)`` pieces of the message: for AES, which bytes start under a fresh
        key; for OTP a single piece.
    state : object
        The link's cipher state after this message.
    """

    bits: int
    segments: tuple[tuple[int, bool], ...]
    state: Any


class CipherPolicy(Protocol):
    """The interface of a cipher policy."""

    @property
    def name(self) -> str:
        """Short name for records."""
        ...

    def init(self) -> Any:
        """The state of a link that has carried nothing yet."""
        ...

    def plan(self, state: Any, n_bytes: int, now: float) -> KeyPlan:
        """Key bits for an ``n_bytes`` message sent at ``now``, and the new state."""
        ...

    def max_chunk_bytes(self, capacity_bits: float) -> int | None:
        """Largest message whose key fits in a pool of ``capacity_bits`` (None: no limit)."""
        ...

    def session(self) -> Any:
        """The bit-exact session of a link that has carried nothing yet."""
        ...

    def carry(
        self, session: Any, store: BitStore, plan: KeyPlan, data: bytes, *, hop: Hop
    ) -> bytes:
        """Bit-exact mode: seal ``data`` with key from ``store`` as ``plan`` says, send it
        through ``hop.deliver`` and open it; raises :class:`IntegrityError` if it was altered."""
        ...


@dataclass(frozen=True)
class Hop:
    """One hop of a bit-exact message.

    Attributes
    ----------
    direction : int
        0 from the link's end ``a``, 1 from ``b`` (keeps the two directions' nonces apart).
    aad : bytes
        Associated data bound to every ciphertext (the link's name).
    deliver : callable
        ``deliver(ciphertext) -> bytes`` as received (an attacker may alter it).
    """

    direction: int
    aad: bytes
    deliver: Callable[[bytes], bytes]


def _int_param(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(name, value, f"an integer >= {minimum}")
    return value


@dataclass(frozen=True)
class OneTimePad:
    """One-time pad: ``8 * n_bytes + auth_bits`` key bits per message on every hop.

    Parameters
    ----------
    auth_bits : int
        One-time authentication key per message (``>= 0``; 256 = Poly1305's key).

    Examples
    --------
    >>> OneTimePad().plan(None, 1000, 0.0).bits
    8256
    """

    auth_bits: int = POLY1305_KEY_BITS
    name: str = field(default="otp", init=False)

    def __post_init__(self) -> None:
        _int_param("otp.auth_bits", self.auth_bits, 0)

    def init(self) -> None:
        return None

    def plan(self, state: None, n_bytes: int, now: float) -> KeyPlan:
        return KeyPlan(8 * n_bytes + self.auth_bits, ((n_bytes, True),), None)

    def max_chunk_bytes(self, capacity_bits: float) -> int | None:
        return int((capacity_bits - self.auth_bits) // 8)

    def session(self) -> None:
        return None

    def carry(
        self, session: None, store: BitStore, plan: KeyPlan, data: bytes, *, hop: Hop
    ) -> bytes:
        bits, _ = store.take(plan.bits)
        sealed = otp_encrypt(data, bits, self.auth_bits)
        return otp_decrypt(hop.deliver(sealed), bits, self.auth_bits)


@dataclass
class AesSession:
    """A link's live AES-256-GCM key and the count of messages sent under it (bit-exact)."""

    key: bytes | None = None
    counter: int = 0


@dataclass(frozen=True)
class AesState:
    """A link's AES session: bytes under the current key, when it was installed, key count."""

    used_bytes: int = 0
    installed_at: float = -math.inf
    n_keys: int = 0


@dataclass(frozen=True)
class AesGcm:
    """AES-256-GCM, re-keyed every ``rekey_bytes`` bytes and/or ``rekey_s`` seconds.

    A link without a key, or whose key has expired, takes a fresh 256-bit key for the next
    message; a message that would carry the key past ``rekey_bytes`` is split across keys.
    Key age is checked when a message starts.

    Parameters
    ----------
    rekey_bytes : int, optional
        Bytes per key (``>= 1``); None for no byte limit.
    rekey_s : float, optional
        Key lifetime in seconds (``> 0``); None for no time limit.

    Examples
    --------
    >>> aes = AesGcm(rekey_bytes=1000)
    >>> p = aes.plan(aes.init(), 2500, 0.0)
    >>> p.bits, p.segments
    (768, ((1000, True), (1000, True), (500, True)))
    >>> aes.plan(p.state, 600, 1.0).segments  # 500 bytes left on the key, then a new one
    ((500, False), (100, True))
    """

    rekey_bytes: int | None = 1 << 30
    rekey_s: float | None = None
    name: str = field(default="aes-256-gcm", init=False)

    def __post_init__(self) -> None:
        if self.rekey_bytes is not None:
            _int_param("aes.rekey_bytes", self.rekey_bytes, 1)
        if self.rekey_s is not None:
            t = self.rekey_s
            if (
                isinstance(t, bool)
                or not isinstance(t, int | float)
                or not t > 0
                or not (math.isfinite(t))
            ):
                raise ParameterError("aes.rekey_s", t, "> 0")

    def init(self) -> AesState:
        return AesState()

    def plan(self, state: AesState, n_bytes: int, now: float) -> KeyPlan:
        used, installed, keys = state.used_bytes, state.installed_at, state.n_keys
        expired = keys == 0 or (self.rekey_s is not None and now - installed >= self.rekey_s)
        cap = self.rekey_bytes
        segments: list[tuple[int, bool]] = []
        left = n_bytes
        if not expired and (cap is None or used < cap) and left > 0:
            first = left if cap is None else min(left, cap - used)
            segments.append((first, False))
            used += first
            left -= first
        new_keys = 0
        if left > 0 or (expired and n_bytes == 0):
            per = left if cap is None else cap
            while True:
                piece = min(left, per)
                segments.append((piece, True))
                new_keys += 1
                used = piece
                left -= piece
                if left <= 0:
                    break
            installed = now
        return KeyPlan(
            AES_KEY_BITS * new_keys, tuple(segments), AesState(used, installed, keys + new_keys)
        )

    def max_chunk_bytes(self, capacity_bits: float) -> int | None:
        keys = int(capacity_bits // AES_KEY_BITS)
        if self.rekey_bytes is None:
            return None if keys >= 1 else 0
        return keys * self.rekey_bytes

    def session(self) -> AesSession:
        return AesSession()

    def carry(
        self, session: AesSession, store: BitStore, plan: KeyPlan, data: bytes, *, hop: Hop
    ) -> bytes:
        out = bytearray()
        pos = 0
        for n, new_key in plan.segments:
            if new_key or session.key is None:
                bits, _ = store.take(AES_KEY_BITS)
                session.key = key_bytes(bits)
                session.counter = 0
            session.counter += 1
            nonce = bytes([hop.direction]) + session.counter.to_bytes(11, "big")
            sealed = aes_encrypt(session.key, nonce, data[pos : pos + n], hop.aad)
            out += aes_decrypt(session.key, nonce, hop.deliver(sealed), hop.aad)
            pos += n
        return bytes(out)


@dataclass(frozen=True)
class NoCipher:
    """No encryption and no key (the classical baseline)."""

    name: str = field(default="none", init=False)

    def init(self) -> None:
        return None

    def plan(self, state: None, n_bytes: int, now: float) -> KeyPlan:
        return KeyPlan(0, ((n_bytes, False),), None)

    def max_chunk_bytes(self, capacity_bits: float) -> int | None:
        return None

    def session(self) -> None:
        return None

    def carry(
        self, session: None, store: BitStore, plan: KeyPlan, data: bytes, *, hop: Hop
    ) -> bytes:
        if hop.deliver(data) != data:
            raise IntegrityError("message altered on an unauthenticated link was detected")
        return data


_CIPHERS: dict[str, Callable[..., CipherPolicy]] = {
    "aes-256-gcm": AesGcm,
    "none": NoCipher,
    "otp": OneTimePad,
}


def get_cipher(name: str, **params: Any) -> CipherPolicy:
    """A policy by name (``"otp"``, ``"aes-256-gcm"``, ``"none"``) with its parameters.

    Examples
    --------
    >>> get_cipher("aes-256-gcm", rekey_bytes=4096).rekey_bytes
    4096
    """
    if name not in _CIPHERS:
        raise UnknownNameError("cipher", name, sorted(_CIPHERS))
    factory: Callable[..., CipherPolicy] = _CIPHERS[name]
    return factory(**params)


# -- bit-exact mode ----------------------------------------------------------------------

KeySource = Callable[[int], NDArray[np.uint8]]
"""``source(n_bits) -> uint8 array of at least n_bits key bits (0/1)``."""


def random_key_source(seed: int | np.random.SeedSequence | np.random.Generator) -> KeySource:
    """Uniform random bits standing in for a QKD link's final key (for tests and studies
    where the BB84 pipeline is not wanted)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def source(n_bits: int) -> NDArray[np.uint8]:
        return rng.integers(0, 2, size=n_bits, dtype=np.uint8)

    return source


class BitStore:
    """The real key bits shared by the two ends of a link, each handed out once.

    A thin layer over :class:`qkd.keypool.KeyPool` (blocks with IDs, FIFO hand-out, no
    reuse): when the store runs short it asks its source for another block. Timing and
    capacity are the fluid pool's business; this store only supplies the bits.

    Parameters
    ----------
    source : callable
        ``source(n_bits)`` returns at least one new key bit (see :data:`KeySource`).
    seed : int or SeedSequence
        For the block IDs.
    """

    def __init__(
        self, source: KeySource, *, seed: int | np.random.SeedSequence = 0, name: str = "link"
    ) -> None:
        from qkd.keypool import KeyPool

        self.name = name
        self._source = source
        self.keys = KeyPool(1 << 62, seed=seed)
        self.issued: list[KeyMaterial] = []

    def take(self, n_bits: int) -> tuple[NDArray[np.uint8], KeyMaterial]:
        """The next ``n_bits`` key bits and the :class:`~qkd.keypool.KeyMaterial` record."""
        while self.keys.level < n_bits:
            more = np.asarray(self._source(n_bits - self.keys.level), dtype=np.uint8)
            if more.size == 0:
                raise NetworkError(f"link {self.name}: the key source produced no bits")
            self.keys.add(more & 1)
        km = self.keys.take(n_bits)
        self.issued.append(km)
        if km.bits is None:  # cannot happen: every block added here carries bits
            raise NetworkError(f"link {self.name}: key material without bits")
        return np.asarray(km.bits), km


def _pack(bits: NDArray[np.uint8]) -> bytes:
    return np.packbits(bits).tobytes()


def otp_encrypt(payload: bytes, key_bits: NDArray[np.uint8], auth_bits: int = 256) -> bytes:
    """One-time-pad encrypt ``payload`` and append a Poly1305 one-time tag.

    ``key_bits`` holds ``8 * len(payload)`` pad bits followed by ``auth_bits`` (256) bits of
    authentication key. Returns ``ciphertext || tag`` (no tag when ``auth_bits == 0``).

    Examples
    --------
    >>> key = np.tile(np.array([1, 0], dtype=np.uint8), (8 * 3 + 256) // 2)
    >>> ct = otp_encrypt(b"abc", key)
    >>> otp_decrypt(ct, key)
    b'abc'
    """
    n = 8 * len(payload)
    if key_bits.size != n + auth_bits or auth_bits not in (0, POLY1305_KEY_BITS):
        raise ParameterError(
            "key_bits.size",
            key_bits.size,
            f"8 * len(payload) + auth_bits = {n + auth_bits} (auth 0 or 256)",
        )
    pad = np.frombuffer(_pack(key_bits[:n]), dtype=np.uint8)
    ct = (np.frombuffer(payload, dtype=np.uint8) ^ pad).tobytes()
    if auth_bits == 0:
        return ct
    return ct + Poly1305.generate_tag(_pack(key_bits[n:]), ct)


def otp_decrypt(data: bytes, key_bits: NDArray[np.uint8], auth_bits: int = 256) -> bytes:
    """Check the tag and decrypt; raises :class:`IntegrityError` if the data was altered."""
    tag_len = 16 if auth_bits else 0
    ct, tag = data[: len(data) - tag_len], data[len(data) - tag_len :]
    n = 8 * len(ct)
    if key_bits.size != n + auth_bits:
        raise IntegrityError(f"ciphertext length {len(ct)} does not match the key")
    if auth_bits:
        try:
            Poly1305.verify_tag(_pack(key_bits[n:]), ct, tag)
        except Exception as exc:  # cryptography raises InvalidSignature
            raise IntegrityError("one-time-pad message failed its Poly1305 check") from exc
    pad = np.frombuffer(_pack(key_bits[:n]), dtype=np.uint8)
    return (np.frombuffer(ct, dtype=np.uint8) ^ pad).tobytes()


def aes_encrypt(key: bytes, nonce: bytes, payload: bytes, aad: bytes = b"") -> bytes:
    """AES-256-GCM encryption (ciphertext with its 16-byte tag)."""
    return AESGCM(key).encrypt(nonce, payload, aad)


def aes_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    """AES-256-GCM decryption; raises :class:`IntegrityError` if the data was altered."""
    try:
        return AESGCM(key).decrypt(nonce, data, aad)
    except InvalidTag as exc:
        raise IntegrityError("AES-256-GCM message failed its authentication tag") from exc


def key_bytes(bits: NDArray[np.uint8]) -> bytes:
    """Pack 0/1 key bits into bytes (most significant bit first)."""
    return _pack(bits)
