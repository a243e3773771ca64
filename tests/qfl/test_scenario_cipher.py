"""The scenario's cipher section: ``rekey_bytes`` within AES-GCM's limit per key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from network.cipher import GCM_MAX_KEY_BYTES
from qfl.cli import main
from qfl.cosim.netbuild import build_cipher
from qfl.scenario import ScenarioError, parse_scenario


def _parse(d: dict[str, Any]) -> Any:
    return parse_scenario(yaml.safe_dump(d, sort_keys=False))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("inf"), r"must be finite, got inf$"),
        (1.5, r"must be a whole number of bytes in \[1, \d+\] \(GCM's limit per key\), got 1.5"),
        (float(2 * GCM_MAX_KEY_BYTES), r"must be a whole number of bytes"),
        (0, r"must be > 0, got 0"),
    ],
)
def test_rekey_bytes_is_checked(value: float, message: str, tiny: Callable[..., Any]) -> None:
    with pytest.raises(ScenarioError, match=rf"^cipher\.rekey_bytes: {message}"):
        _parse(tiny({"cipher": {"policy": "aes-256-gcm", "rekey_bytes": value}}))


def test_rekey_bytes_reaches_the_cipher(tiny: Callable[..., Any]) -> None:
    sc = _parse(tiny({"cipher": {"policy": "aes-256-gcm", "rekey_bytes": 4096.0}}))
    assert build_cipher(sc).rekey_bytes == 4096  # type: ignore[attr-defined]


def test_infinite_rekey_bytes_is_one_line_and_exit_2(
    tmp_path: Path, tiny: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    text = yaml.safe_dump(tiny({"cipher": {"policy": "aes-256-gcm"}}), sort_keys=False)
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("policy: aes-256-gcm", "policy: aes-256-gcm\n  rekey_bytes: .inf"))
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "cipher.rekey_bytes: must be finite" in lines[0], lines
