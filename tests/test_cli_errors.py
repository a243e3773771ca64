"""One line, never a traceback: bad files, bad options, hostile YAML (issue 11).

Every case runs the CLI and expects exit status 2 and a single ``qfl: error:`` line that
names the file, field or option, the value and what is allowed.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from clihelp import run_bad

from qfl.cli import main

Tiny = Callable[..., dict[str, Any]]


def file_scenario(tiny: Tiny, tmp_path: Path, name: str) -> Path:
    d = tiny()
    d["topology"] = {"file": name}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(d), encoding="utf-8")
    return path


GML_NODES = 'node [ id 0 label "a" Latitude {lat} Longitude 1 ] node [ id 1 label "b" '
GML_NODES += "Latitude 1 Longitude 1 ] edge [ source 0 target 1 ]"


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("empty.graphml", "", "no element found"),
        ("bad.graphml", "<graphml><graph", "unclosed token"),
        ("folder.graphml", None, "Is a directory"),
        ("coord.gml", "graph [ " + GML_NODES.format(lat='"north"') + " ]", "'north'"),
        ("cut.gml", "graph [ node [ id 0 ", "expected ']'"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "simulate"])
def test_unreadable_topology_files(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | None,
    why: str,
    command: str,
) -> None:
    if content is None:
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_text(content, encoding="utf-8")
    msg = run_bad(capsys, [command, str(file_scenario(tiny, tmp_path, name))])
    assert f"topology.file: cannot read {str(tmp_path / name)!r} as GraphML/GML" in msg, msg
    assert why in msg


@pytest.mark.parametrize(
    ("qkd", "link", "path"),
    [
        ({"block_bits": 1.0e12}, {}, "qkd.block_bits"),
        ({"initial_fill_bits": 5.0e9}, {}, "qkd.initial_fill_bits"),
        ({}, {"initial_fill_bits": 5.0e9}, "topology.links[0].initial_fill_bits"),
        ({}, {"pool_capacity_bits": 10.0}, "topology.links[0].pool_capacity_bits"),
    ],
)
def test_values_are_reported_at_their_own_yaml_path(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    qkd: dict[str, Any],
    link: dict[str, Any],
    path: str,
) -> None:
    d = tiny({"qkd": qkd})
    d["topology"]["links"][0].update(link)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(d), encoding="utf-8")
    msg = run_bad(capsys, ["validate", str(f)])
    assert msg.startswith(f"{f}: {path}: "), msg


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("qkd.rate_scale", ".inf", r"qkd\.rate_scale: must be finite, got inf"),
        ("learning.rounds", "10000000", r"learning\.rounds: must be <= 100000, got 10000000"),
        ("cipher.rekey_bytes", ".inf", r"cipher\.rekey_bytes: must be finite, got inf"),
    ],
)
def test_numbers_are_finite_and_bounded(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: str,
    expected: str,
) -> None:
    import re

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(tiny()), encoding="utf-8")
    msg = run_bad(capsys, ["simulate", str(f), "--set", f"{field}={value}"])
    assert re.search(expected, msg), msg


def test_alias_bomb_and_huge_files_are_refused(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = yaml.safe_dump(tiny())
    bomb = "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    bomb += "".join(f"x{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 9))
    f = tmp_path / "bomb.yaml"
    f.write_text(base + f"quick:\n  {bomb.replace(chr(10), chr(10) + '  ')}", encoding="utf-8")
    msg = run_bad(capsys, ["validate", str(f)])
    assert "expands to more than 100000 values" in msg, msg
    big = tmp_path / "big.yaml"
    big.write_text(base + "description: '" + "x" * (2 << 20) + "'\n", encoding="utf-8")
    msg = run_bad(capsys, ["simulate", str(big)])
    assert "may hold at most 1048576 bytes" in msg
    long_list = tmp_path / "list.yaml"  # a bad value of ~100 KB is not echoed whole
    long_list.write_text(yaml.safe_dump(tiny({"seed": list(range(20_000))})), encoding="utf-8")
    msg = run_bad(capsys, ["validate", str(long_list)])
    assert len(msg) < 300 and msg.startswith(f"{long_list}: seed: "), msg[:400]


def test_validate_checks_quick_overrides_and_every_file(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny()), encoding="utf-8")
    quick = tmp_path / "quick.yaml"
    quick.write_text(yaml.safe_dump(tiny({"quick": {"learning.rounds": 0}})), encoding="utf-8")
    status = main(["validate", str(quick), str(good)])
    out = capsys.readouterr()
    assert status == 2
    assert out.err.strip() == f"qfl: error: {quick}: quick: learning.rounds: must be >= 1, got 0"
    assert f"{good}: ok" in out.out  # the file after the bad one was checked too


def test_plot_names_the_malformed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny: Tiny
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("sim_time_s,round\n1,2,3\n", encoding="utf-8")
    msg = run_bad(capsys, ["plot", str(run)])
    assert msg.startswith(f"{run / 'metrics.csv'}: malformed CSV"), msg
    (run / "metrics.csv").write_text("x,y\n1,2\n", encoding="utf-8")
    (run / "summary.json").write_text("{", encoding="utf-8")
    msg = run_bad(capsys, ["plot", str(run)])
    assert msg.startswith(f"{run / 'summary.json'}: malformed JSON"), msg
    (run / "summary.json").write_text(json.dumps({}), encoding="utf-8")
    msg = run_bad(capsys, ["plot", str(run)])
    assert msg.startswith(f"{run}: cannot redraw its plots"), msg
    shutil.rmtree(run)
    assert run_bad(capsys, ["plot", str(run)]).startswith(f"{run}: not a folder")


def test_sweep_options_are_checked_before_any_work(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(tiny()), encoding="utf-8")
    out = tmp_path / "sw"
    args = ["sweep", str(f), "--set", "learning.lr=0.1,0.2", "--out", str(out)]
    assert run_bad(capsys, [*args, "--jobs", "0"]) == "--jobs: must be an integer >= 1, got 0"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    msg = run_bad(capsys, [*args, "--executor", "ray"])
    assert msg == "--executor: 'ray' needs the ray extra: pip install 'qfl[ray]'"
    assert not out.exists()  # nothing was created
