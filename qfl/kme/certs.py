"""Test certificates for the KMEs: a CA, a server certificate, one client certificate per SAE.

For testing only (keys are written unencrypted): a deployment uses its own PKI. The SAE ID
is the client certificate's common name (and its DNS subject alternative name).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["write_certs"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    sans: Sequence[x509.GeneralName] = (),
    usage: Sequence[x509.ObjectIdentifier] = (),
    days: int,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    return b.sign(issuer_key, hashes.SHA256())


def write_certs(
    out: str | Path,
    saes: Sequence[str],
    *,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 30,
) -> dict[str, Path]:
    """Write ``ca.pem``, ``kme.pem`` + ``kme.key`` (the server, valid for ``hosts``) and
    ``<sae>.pem`` + ``<sae>.key`` for every SAE into ``out``.

    Returns
    -------
    dict of str to Path
        Every file written, by name.
    """
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qfl kme test CA")])
    ca = _cert("qfl kme test CA", ca_key, ca_name, ca_key, ca=True, days=days)
    files = {"ca.pem": d / "ca.pem"}
    files["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    host_names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            host_names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            host_names.append(x509.DNSName(h))
    entries = [("kme", host_names, ExtendedKeyUsageOID.SERVER_AUTH)]
    entries += [(s, [x509.DNSName(s)], ExtendedKeyUsageOID.CLIENT_AUTH) for s in saes]
    for name, sans, usage in entries:
        key = _key()
        cert = _cert(name, key, ca_name, ca_key, ca=False, sans=sans, usage=[usage], days=days)
        files[f"{name}.pem"] = d / f"{name}.pem"
        files[f"{name}.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}.key"] = d / f"{name}.key"
        _write_key(files[f"{name}.key"], key)
    return files
