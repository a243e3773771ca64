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

The plan is the only state transition: it decides, when a message asks a link for key, which
of the link's AES keys (by index) and which GCM nonces each byte of the message will use, and
charges 256 bits for each key it creates. Sending then uses exactly what the plan says,
whatever the order in which concurrent messages reach the link, so the bytes under one key
never exceed ``rekey_bytes``, no nonce repeats, and the key bits charged are the bits used.
A key is charged to the message that creates it; a message planned on that key may be sent
before the creator's key request is served (the bits are counted once, at that request).

In bit-exact mode a policy also carries each hop's payload: ``carry`` seals it with key bits
drawn from the link's :class:`BitStore` (:func:`otp_encrypt`, :func:`aes_encrypt`), sends it
over the link and opens it at the far end (:func:`otp_decrypt`, :func:`aes_decrypt`). The
link's session (``session()``) holds its AES keys by index, each drawn from the store the
first time it is used, and every encryption is logged as an :class:`Encryption` (the key bits
and nonce it used) so that tests can check the bits, not the bookkeeping.

References
----------
M. N. Wegman and J. L. Carter, "New hash functions and their use in authentication and set
equality", J. Comput. Syst. Sci. 22, 265 (1981).
D. J. Bernstein, "The Poly1305-AES message-authentication code", FSE 2005.
M. Dworkin, "Recommendation for Block Cipher Modes of Operation: Galois/Counter Mode (GCM)
and GMAC", NIST SP 800-38D (2007), sections 5.2.1.1 and 8.3.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.poly1305 import Poly1305
from numpy.typing import NDArray

from network.errors import NetworkError

if TYPE_CHECKING:
    from qkd.keypool import KeyMaterial, KeySlice
from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "AES_KEY_BITS",
    "GCM_MAX_INVOCATIONS",
    "GCM_MAX_INVOCATION_BYTES",
    "GCM_MAX_KEY_BYTES",
    "POLY1305_KEY_BITS",
    "AesGcm",
    "AesSession",
    "AesState",
    "BitStore",
    "CipherPolicy",
    "Encryption",
    "Hop",
    "IntegrityError",
    "KeyPlan",
    "NoCipher",
    "OneTimePad",
    "Segment",
    "aes_decrypt",
    "aes_encrypt",
    "gcm_nonce",
    "get_cipher",
    "otp_decrypt",
    "otp_encrypt",
    "random_key_source",
]

AES_KEY_BITS = 256
POLY1305_KEY_BITS = 256
GCM_MAX_INVOCATION_BYTES = ((1 << 39) - 256) // 8
"""Most plaintext one GCM invocation may protect: 2**39 - 256 bits (SP 800-38D, 5.2.1.1)."""
GCM_MAX_INVOCATIONS = 1 << 32
"""Most GCM invocations under one key: 2**32 (SP 800-38D, 8.3, binding for random 96-bit
IVs; the counter nonces used here would allow more, the smaller limit is enforced anyway)."""
GCM_MAX_KEY_BYTES = GCM_MAX_INVOCATIONS * GCM_MAX_INVOCATION_BYTES
"""Most bytes one key may protect: ``GCM_MAX_INVOCATIONS * GCM_MAX_INVOCATION_BYTES``."""


class IntegrityError(NetworkError):
    """A ciphertext failed its authentication check (tampered, or the wrong key)."""


class Segment(NamedTuple):
    """A piece of a message under one key.

    Attributes
    ----------
    n_bytes : int
        Bytes of the message in this piece.
    new_key : bool
        The piece starts a key that this message pays for (256 bits for AES).
    key : int
        AES: index of the link's key (0, 1, ... in order of creation).
    nonce : int
        AES: GCM invocation counter of the piece's first invocation under that key; the
        piece takes ``max(1, ceil(n_bytes / invocation_bytes))`` consecutive counters.
    """

    n_bytes: int
    new_key: bool
    key: int = 0
    nonce: int = 0


@dataclass(frozen=True)
class KeyPlan:
    """What one message costs on one link.

    Attributes
    ----------
    bits : int
        Key bits to take from the link's pool.
    segments : tuple of Segment
        The pieces of the message: for AES, the key and nonces of each byte; for OTP a single
        piece.
    state : object
        The link's cipher state after this message.
    """

    bits: int
    segments: tuple[Segment, ...]
    state: Any


@dataclass(frozen=True)
class Encryption:
    """One encryption in bit-exact mode, as it happened (see :attr:`Hop.log`).

    Attributes
    ----------
    direction : int
        0 from the link's end ``a``, 1 from ``b``.
    key : tuple of KeySlice
        The key bits used: the AES key, or the one-time pad and its authentication key.
    nonce : bytes
        The GCM nonce (empty for a one-time pad).
    n_bytes : int
        Plaintext bytes encrypted.
    """

    direction: int
    key: tuple[KeySlice, ...]
    nonce: bytes
    n_bytes: int


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
    log : list of Encryption, optional
        Where to record each encryption (the link's :attr:`~network.link.Link.encryptions`).
    """

    direction: int
    aad: bytes
    deliver: Callable[[bytes], bytes]
    log: list[Encryption] | None = None

    def record(self, key: KeyMaterial, nonce: bytes, n_bytes: int) -> None:
        """Log one encryption under ``key`` (if this hop keeps a log)."""
        if self.log is not None:
            self.log.append(Encryption(self.direction, key.slices, nonce, n_bytes))


def _int_param(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    bad = isinstance(value, bool) or not isinstance(value, int) or value < minimum
    if bad or (maximum is not None and value > maximum):
        allowed = f"an integer >= {minimum}"
        if maximum is not None:
            allowed = f"an integer in [{minimum}, {maximum}]"
        raise ParameterError(name, value, allowed)
    return int(value)


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
        return KeyPlan(8 * n_bytes + self.auth_bits, (Segment(n_bytes, True),), None)

    def max_chunk_bytes(self, capacity_bits: float) -> int | None:
        return int((capacity_bits - self.auth_bits) // 8)

    def session(self) -> None:
        return None

    def carry(
        self, session: None, store: BitStore, plan: KeyPlan, data: bytes, *, hop: Hop
    ) -> bytes:
        bits, km = store.take(plan.bits)
        sealed = otp_encrypt(data, bits, self.auth_bits)
        hop.record(km, b"", len(data))
        return otp_decrypt(hop.deliver(sealed), bits, self.auth_bits)


@dataclass
class AesSession:
    """A link's AES-256-GCM keys by index (bit-exact mode).

    Key ``i`` is drawn from the link's :class:`BitStore` the first time a message uses it,
    whichever message that is, so every key a plan creates is drawn once and only once.
    """

    keys: dict[int, tuple[bytes, KeyMaterial]] = field(default_factory=dict)

    def key(self, index: int, store: BitStore) -> tuple[bytes, KeyMaterial]:
        """The key ``index`` (bytes and the key material it came from)."""
        got = self.keys.get(index)
        if got is None:
            bits, km = store.take(AES_KEY_BITS)
            got = self.keys[index] = (key_bytes(bits), km)
        return got


@dataclass(frozen=True)
class AesState:
    """A link's AES planning state: the current key's bytes and GCM invocations so far, when
    it was installed, and how many keys the link has had (the current one is ``n_keys - 1``)."""

    used_bytes: int = 0
    installed_at: float = -math.inf
    n_keys: int = 0
    nonces: int = 0


def gcm_nonce(direction: int, counter: int) -> bytes:
    """The 96-bit GCM nonce of invocation ``counter`` under a key: one byte for the direction,
    then the counter on 88 bits (the deterministic construction of SP 800-38D, 8.2.1)."""
    return bytes([direction]) + counter.to_bytes(11, "big")


@dataclass(frozen=True)
class AesGcm:
    """AES-256-GCM, re-keyed every ``rekey_bytes`` bytes and/or ``rekey_s`` seconds.

    A link without a key, or whose key has expired, takes a fresh 256-bit key for the next
    message; a message that would carry the key past ``rekey_bytes`` bytes (or past
    :data:`GCM_MAX_INVOCATIONS` invocations) is split across keys, and a piece longer than
    ``invocation_bytes`` into several GCM invocations, each with its own nonce. Key age is
    checked when a message is planned (when it asks the link for key).

    Parameters
    ----------
    rekey_bytes : int, optional
        Bytes per key, an integer in ``[1, GCM_MAX_KEY_BYTES]``; None for no limit but GCM's.
        The limit enforced is NIST SP 800-38D's: at most 2**32 invocations per key (section
        8.3, the limit for random 96-bit IVs, applied here to counter nonces too), each
        protecting at most 2**39 - 256 bits of plaintext (section 5.2.1.1), so
        ``GCM_MAX_KEY_BYTES = 2**32 * (2**36 - 32)``.
    rekey_s : float, optional
        Key lifetime in seconds (``> 0``); None for no time limit.
    invocation_bytes : int
        Most plaintext bytes per GCM invocation, in ``[1, GCM_MAX_INVOCATION_BYTES]``
        (default: the SP 800-38D limit, ``2**36 - 32`` bytes).

    Examples
    --------
    >>> aes = AesGcm(rekey_bytes=1000)
    >>> p = aes.plan(aes.init(), 2500, 0.0)
    >>> p.bits, [(s.n_bytes, s.key) for s in p.segments]
    (768, [(1000, 0), (1000, 1), (500, 2)])
    >>> p2 = aes.plan(p.state, 600, 1.0)  # 500 bytes left on key 2, then key 3
    >>> p2.bits, p2.segments[0]
    (256, Segment(n_bytes=500, new_key=False, key=2, nonce=1))
    """

    rekey_bytes: int | None = 1 << 30
    rekey_s: float | None = None
    invocation_bytes: int = GCM_MAX_INVOCATION_BYTES
    name: str = field(default="aes-256-gcm", init=False)

    def __post_init__(self) -> None:
        if self.rekey_bytes is not None:
            _int_param("aes.rekey_bytes", self.rekey_bytes, 1, GCM_MAX_KEY_BYTES)
        _int_param("aes.invocation_bytes", self.invocation_bytes, 1, GCM_MAX_INVOCATION_BYTES)
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
        cap = GCM_MAX_KEY_BYTES if self.rekey_bytes is None else self.rekey_bytes
        step = self.invocation_bytes
        key, used, nonces, installed = (
            state.n_keys - 1,
            state.used_bytes,
            state.nonces,
            state.installed_at,
        )
        expired = key < 0 or (self.rekey_s is not None and now - installed >= self.rekey_s)
        segments: list[Segment] = []
        new_keys = 0
        left = n_bytes
        while True:
            new = expired or nonces >= GCM_MAX_INVOCATIONS or (left > 0 and used >= cap)
            if new:
                key, used, nonces, installed, expired = key + 1, 0, 0, now, False
                new_keys += 1
            piece = min(left, cap - used, (GCM_MAX_INVOCATIONS - nonces) * step)
            segments.append(Segment(piece, new, key, nonces))
            used += piece
            nonces += max(1, -(-piece // step))
            left -= piece
            if left <= 0:
                break
        return KeyPlan(
            AES_KEY_BITS * new_keys, tuple(segments), AesState(used, installed, key + 1, nonces)
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
        step = self.invocation_bytes
        for seg in plan.segments:
            key, km = session.key(seg.key, store)
            end = pos + seg.n_bytes
            for i, start in enumerate(range(pos, max(end, pos + 1), step)):
                piece = data[start : min(start + step, end)]
                nonce = gcm_nonce(hop.direction, seg.nonce + i)
                sealed = aes_encrypt(key, nonce, piece, hop.aad)
                hop.record(km, nonce, len(piece))
                out += aes_decrypt(key, nonce, hop.deliver(sealed), hop.aad)
            pos = end
        return bytes(out)


@dataclass(frozen=True)
class NoCipher:
    """No encryption and no key (the classical baseline)."""

    name: str = field(default="none", init=False)

    def init(self) -> None:
        return None

    def plan(self, state: None, n_bytes: int, now: float) -> KeyPlan:
        return KeyPlan(0, (Segment(n_bytes, False),), None)

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
