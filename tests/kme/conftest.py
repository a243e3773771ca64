"""Fixtures of the KME tests: a small relayed network with exact key rates, trustme certs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# a --[1000 b/s]-- r --[2000 b/s]-- b ; c --[500 b/s]-- r ; fluid pools, empty at t = 0
KME_NET: dict[str, Any] = {
    "name": "kmenet",
    "seed": 3,
    "topology": {
        "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "r", "role": "relay"}],
        "links": [
            {"a": "a", "b": "r", "length_km": 5, "skr_bps": 1000},
            {"a": "b", "b": "r", "length_km": 8, "skr_bps": 2000},
            {"a": "c", "b": "r", "length_km": 12, "skr_bps": 500},
        ],
    },
    "qkd": {
        "preset": "toshiba-2018",
        "key_model": "asymptotic-fluid",
        "pool_capacity_bits": 1.0e5,
        "initial_fill_bits": 0,
    },
    "learning": {"method": "def-fd", "dataset": "fashion-mnist"},
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``patch`` merged in."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@pytest.fixture(scope="module")
def kme_scenario(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``kme_scenario(patch=None)`` -> path of the KME test scenario (deep-merged)."""
    folder = tmp_path_factory.mktemp("kmenet")
    count = iter(range(1 << 30))

    def write(patch: dict[str, Any] | None = None) -> Path:
        p = folder / f"kmenet-{next(count)}.yaml"
        p.write_text(yaml.safe_dump(merge(KME_NET, patch or {})))
        return p

    return write


class Pki:
    """A trustme CA, the KME's server certificate, and client certificates by SAE ID."""

    def __init__(self, folder: Path) -> None:
        import trustme

        self.folder = folder
        self._issued: dict[str, tuple[str, str]] = {}
        self.ca = trustme.CA()
        self.ca_pem = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        server.cert_chain_pems[0].write_to_path(str(folder / "kme.pem"))
        server.private_key_pem.write_to_path(str(folder / "kme.key"))

    def client(self, sae: str, ca: Any = None) -> tuple[str, str]:
        """(cert, key) paths of a client certificate with common name ``sae``."""
        if ca is None and sae in self._issued:
            return self._issued[sae]
        issued = (ca or self.ca).issue_cert(f"{sae}.sae.test", common_name=sae)
        stem = sae if ca is None else f"{sae}-foreign-{id(ca)}"
        cert, key = self.folder / f"{stem}.pem", self.folder / f"{stem}.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        if ca is None:
            self._issued[sae] = (str(cert), str(key))
        return str(cert), str(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """One CA and server certificate per test module."""
    yield Pki(tmp_path_factory.mktemp("pki"))
