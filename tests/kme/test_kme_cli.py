"""``qfl kme serve|certs`` on the command line: bad input is one line with exit status 2."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from clihelp import run_bad
from cryptography import x509

from qfl.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "--certs: must be a folder of certificates, or --insecure"),
        (["--insecure", "--speed", "0"], "--speed: must be a finite number > 0, got 0.0"),
        (["--insecure", "--sae", "x"], "--sae: must be NAME=NODE"),
        (["--insecure", "--sae", "x=nowhere"], "a NODE among a, b, c, r"),
        (["--insecure", "--sae", "a=b"], "--sae: must be a NAME other than a default SAE's"),
        (["--insecure", "--key-size", "12"], "--key-size: must be a multiple of 8"),
        (["--insecure", "--duration", "-1"], "--duration"),
        (["--insecure", "--replay"], "FILE: must be a finished run folder with --replay"),
        (["--insecure", "--port", "70000"], "--port"),
        (["--certs", "/nonexistent"], "--certs: must be a folder with ca.pem"),
        (["--insecure", "--set", "qkd.rate_scale=-1"], "--set qkd.rate_scale"),
    ],
)
def test_bad_serve_options(capsys, kme_scenario, extra: list[str], fragment: str) -> None:
    msg = run_bad(capsys, ["kme", "serve", str(kme_scenario()), *extra])
    assert fragment in msg


def test_busy_port_is_one_line(capsys, kme_scenario) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        msg = run_bad(capsys, ["kme", "serve", str(kme_scenario()), "--insecure",
                               "--port", str(port)])  # fmt: skip
    assert msg.startswith("--host/--port: must be free to listen on")
    assert msg.endswith(f"got '127.0.0.1:{port}'")


def test_serve_announces_insecure_mode_and_stops(capsys, kme_scenario, tmp_path: Path) -> None:
    state = str(tmp_path / "st")
    args = ["--insecure", "--port", str(_free_port()), "--duration", "0.3", "--state", state]
    status = main(["kme", "serve", str(kme_scenario()), *args])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "serving 4 KMEs of kmenet for 3 SAEs (a, b, c)" in out
    assert "WARNING --insecure: plain HTTP" in out and "For testing only" in out
    assert (tmp_path / "st" / "accounting.json").is_file()


def test_certs_make_a_ca_and_one_certificate_per_sae(capsys, kme_scenario, tmp_path) -> None:
    out = tmp_path / "certs"
    assert main(["kme", "certs", str(kme_scenario()), "--out", str(out),
                 "--sae", "a2=a"]) == 0  # fmt: skip
    assert "4 SAE certificates (a, b, c, a2)" in capsys.readouterr().out
    for sae in ("a", "b", "c", "a2"):
        cert = x509.load_pem_x509_certificate((out / f"{sae}.pem").read_bytes())
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == sae
        assert (out / f"{sae}.key").stat().st_mode & 0o077 == 0
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(out / "ca.pem"))
        ctx.load_cert_chain(out / f"{sae}.pem", out / f"{sae}.key")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(out / "kme.pem", out / "kme.key")


def test_serve_replays_a_run_folder(capsys, kme_scenario, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "scenario.yaml").write_text(kme_scenario().read_text())
    (run / "keypools.csv").write_text(
        "sim_time_s,link,event,bits,level_bits\n0.0,a-r,start,1000,0\n0.1,a-r,take,50,50\n"
    )
    args = ["--insecure", "--port", str(_free_port()), "--duration", "0.3", "--speed", "10"]
    assert main(["kme", "serve", str(run), "--replay", *args]) == 0
    assert f"replaying {run}" in capsys.readouterr().out
    msg = run_bad(capsys, ["kme", "serve", str(run), "--replay", "--insecure", "--set", "seed=1"])
    assert msg.startswith("--set: must be not given with --replay")
    (run / "keypools.csv").write_text("sim_time_s,link,event,bits\n1,x-y,take,5\n")
    msg = run_bad(capsys, ["kme", "serve", str(run), "--replay", "--insecure"])
    assert "--replay keypools.csv link: must be a link of the run, got 'x-y'" in msg
