"""Bad input through the command line: exit status 2 and one line naming the YAML path, the
value and what is allowed, for ``qfl validate``, ``qfl simulate``, ``qfl sweep`` and
``qfl plot``. None of these cases trains anything."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from clihelp import run_bad

Writer = Callable[..., Path]
Tiny = Callable[..., dict[str, Any]]


def field_message(message: str, command: str, path: Path | str) -> str:
    """``validate`` names the file before a field's path (it checks several files)."""
    if command != "validate":
        return message
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def _link(i: int, **kw: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d["topology"]["links"][i].update(kw)

    return edit


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node = d
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value

    return edit


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node = d
        for k in head:
            node = node[k]
        del node[last]

    return edit


def _add_node(**kw: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["topology"]["nodes"].append(kw)


def _add_link(**kw: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["topology"]["links"].append(kw)


# (id, edit of the tiny scenario, regex the one-line message must match (path: ... value))
SCENARIO_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "unknown-top-level-key",
        _set("colour", "blue"),
        r"^colour: unknown key 'colour'; allowed keys: name, description, seed, topology, .*",
    ),
    (
        "unknown-nested-key",
        _link(3, lenght_km=3),
        r"^topology\.links\[3\]\.lenght_km: unknown key 'lenght_km' \(did you mean 'length_km'"
        r"\?\); allowed keys: a, b, length_km, ",
    ),
    ("wrong-type", _set("seed", "abc"), r"^seed: must be an integer, got 'abc'$"),
    (
        "fractional-rounds",
        _set("learning.rounds", 2.5),
        r"^learning\.rounds: must be a whole number, got 2\.5$",
    ),
    (
        "negative-length",
        _link(3, length_km=-5),
        r"^topology\.links\[3\]\.length_km: must be >= 0, got -5$",
    ),
    (
        "link-to-unknown-node",
        _link(3, b="zz"),
        r"^topology\.links\[3\]\.b: unknown node 'zz'; nodes are a, b, c, r$",
    ),
    (
        "duplicate-link",
        _add_link(a="b", b="a", length_km=3),
        r"^topology\.links\[4\]: duplicate link b-a: topology\.links\[3\] already joins them",
    ),
    (
        "duplicate-node",
        _add_node(name="a"),
        r"^topology\.nodes\[4\]\.name: duplicate node name 'a'$",
    ),
    (
        "unknown-preset",
        _set("qkd.preset", "nope"),
        r"^qkd\.preset: must be one of 'gys-2004', 'toshiba-2018', got 'nope'$",
    ),
    (
        "unknown-link-preset",
        _link(1, preset="nope"),
        r"^topology\.links\[1\]\.preset: must be one of 'gys-2004', 'toshiba-2018', got 'nope'$",
    ),
    (
        "unknown-method",
        _set("learning.method", "fedprox"),
        r"^learning\.method: must be 'def-fd', 'def-kt', .*'ssl-backbone'.*, got 'fedprox'$",
    ),
    (
        "method-dataset-mismatch",
        _set("learning.dataset", "unimib-shar"),
        r"^learning\.dataset: must be one of 'fashion-mnist' for method 'def-fd', "
        r"got 'unimib-shar'$",
    ),
    (
        "missing-dataset",
        _del("learning.dataset"),
        r"^learning\.dataset: missing; this field is required \(fashion-mnist .*\)$",
    ),
    ("missing-name", _del("name"), r"^name: missing; this field is required \(Names the run .*\)$"),
    (
        "unknown-server",
        _set("learning.server", "zz"),
        r"^learning\.server: unknown node 'zz'; nodes are a, b, c, r$",
    ),
    (
        "fault-on-unknown-node",
        _set("faults", [{"kind": "link-cut", "at_s": 1, "link": ["a", "zz"]}]),
        r"^faults\[0\]\.link\[1\]: unknown node 'zz'; nodes are a, b, c, r$",
    ),
    (
        "fault-on-missing-link",
        _set("faults", [{"kind": "link-cut", "at_s": 1, "link": ["a", "c"]}]),
        r"^faults\[0\]\.link: no link joins 'a' and 'c'; a link-cut fault must name the two",
    ),
    (
        "fault-link-too-short",
        _set("faults", [{"kind": "eavesdropper", "at_s": 1, "link": ["a"]}]),
        r"^faults\[0\]\.link: must have 2 items, got \['a'\]$",
    ),
    (
        "fault-repaired-before-it-starts",
        _set("faults", [{"kind": "link-cut", "at_s": 5, "until_s": 1, "link": ["a", "r"]}]),
        r"^faults\[0\]: until_s \(1\.0\) must be >= at_s \(5\.0\)",
    ),
    (
        "unknown-cipher",
        _set("cipher.policy", "rsa"),
        r"^cipher\.policy: must be 'otp', 'aes-256-gcm' or 'none', got 'rsa'$",
    ),
    (
        "union-field",
        _set("learning.temperature", -1),
        r"^learning\.temperature: must be > 0 or 'adaptive', got -1$",
    ),
    ("infinite-horizon", _set("horizon_s", float("inf")), r"^horizon_s: must be finite, got inf$"),
    (
        "bad-name",
        _set("name", "my run"),
        r"^name: must be one folder name \(letters.*\), got 'my run'$",
    ),
    (
        "section-not-a-mapping",
        _set("qkd", 3),
        r"^qkd: must be a mapping with keys preset, protocol, .*, got 3$",
    ),
    (
        "isolated-client",
        _add_node(name="island"),
        r"^topology\.links: node 'island' cannot reach 'a': no chain of links joins them",
    ),
    (
        "one-client-for-def-fd",
        _set("learning.clients", ["a"]),
        r"^learning\.clients: method 'def-fd' needs at least 2 clients, got 1: a$",
    ),
    (
        "pool-too-small-for-otp",
        lambda d: (_set("qkd.pool_capacity_bits", 100)(d), _set("cipher.policy", "otp")(d)),
        r"^qkd\.pool_capacity_bits: link a-r: capacity_bits: must be large enough for one "
        r"message of cipher 'otp', got 100\.0$",
    ),
    (
        "link-length-underivable",
        _link(0, length_km=None),
        r"^topology\.links\[0\]\.length_km: missing, and the ends have no latitude/longitude",
    ),
]


@pytest.mark.parametrize("command", ["validate", "simulate"])
@pytest.mark.parametrize(
    ("edit", "expected"), [c[1:] for c in SCENARIO_CASES], ids=[c[0] for c in SCENARIO_CASES]
)
def test_bad_scenario(
    command: str,
    edit: Callable[[dict[str, Any]], None],
    expected: str,
    tiny: Tiny,
    write_scenario: Writer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    d = tiny()
    edit(d)
    path = write_scenario(text=yaml.safe_dump(d, sort_keys=False))
    args = [command, str(path)]
    if command == "simulate":
        args += ["--out", str(tmp_path / "run")]
    message = field_message(run_bad(capsys, args), command, path)
    assert re.search(expected, message), message
    assert not (tmp_path / "run").exists()  # nothing was written


TEXT_CASES = [
    (
        "malformed-yaml",
        "name: x\ntopology: [\n",
        r"malformed YAML at line 3, column 1: (did not find )?expected",
    ),
    (
        "tab-indent",
        "name: x\n\tseed: 1\n",
        r"malformed YAML at line 2, column 1: found (a tab )?character",
    ),
    ("not-a-mapping", "- a\n- b\n", r"a scenario must be a mapping, got list"),
    ("empty-file", "", r"a scenario must be a mapping, got NoneType"),
]


@pytest.mark.parametrize("command", ["validate", "simulate"])
@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES]
)
def test_bad_file(
    command: str,
    text: str,
    expected: str,
    write_scenario: Writer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_scenario(text=text, name="bad.yaml")
    message = run_bad(capsys, [command, str(path)])
    assert message.startswith(f"{path}: ")  # the path here is the file
    assert re.search(expected, message), message


@pytest.mark.parametrize("command", ["validate", "simulate", "sweep"])
def test_missing_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    args = [command, str(missing)] + (["--set", "qkd.rate_scale=1,2"] if command == "sweep" else [])
    message = run_bad(capsys, args)
    assert message == f"{missing}: cannot read the file (No such file or directory)"


SET_CASES = [
    (
        ["learning.roundz=3"],
        r"^--set learning\.roundz: unknown field 'learning\.roundz' \(did you mean 'rounds'\?\); "
        r"fields of 'learning' are method, dataset, .*",
    ),
    (["learning.rounds=abc"], r"^--set learning\.rounds: must be an integer, got 'abc'$"),
    (["qkd.rate_scale=-1"], r"^--set qkd\.rate_scale: must be >= 0, got -1$"),
    (["learning.rounds"], r"^--set: must look like field\.path=value, got 'learning\.rounds'$"),
    (
        ["topology.links[9].length_km=3"],
        r"^--set topology\.links\[9\]\.length_km: no item 9: "
        r"'topology\.links' has 4 items \(0-3\)$",
    ),
    (["seed.x=1"], r"^--set seed\.x: 'seed' has no fields \(it is a value\)$"),
    (["cipher.policy=rsa"], r"^--set cipher\.policy: must be 'otp', 'aes-256-gcm' or 'none'"),
]


@pytest.mark.parametrize(("sets", "expected"), SET_CASES)
def test_bad_set_for_simulate(
    sets: list[str],
    expected: str,
    write_scenario: Writer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = write_scenario()
    args = ["simulate", str(path), "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    assert re.search(expected, run_bad(capsys, args))


SWEEP_CASES = [
    (["--set", "qkd.rate_scale="], r"^--set qkd\.rate_scale: needs at least one value$"),
    (
        ["--set", "qkd.rate_scale"],
        r"^--set: must look like field\.path=v1,v2,\.\.\., got 'qkd\.rate_scale'$",
    ),
    ([], r"^--set: give at least one field to vary \(field=v1,v2,\.\.\.\)$"),
    (
        ["--set", "qkd.rate_scale=1,2", "--executor", "dask"],
        r"^--executor: must be one of local, ray, inline, got 'dask'$",
    ),
    (
        ["--set", "qkd.rate_scael=1,2"],
        r"^--set qkd\.rate_scael: unknown field 'qkd\.rate_scael' \(did you mean 'rate_scale'",
    ),
    (["--set", "qkd.rate_scale=1,-2"], r"^--set qkd\.rate_scale: must be >= 0, got -2$"),
    (
        ["--set", "qkd.rate_scale=1,2", "--series", "cipher.policy"],
        r"^--series: must be one of the varied fields \['qkd\.rate_scale'\], got 'cipher\.policy'$",
    ),
]


@pytest.mark.parametrize(("args", "expected"), SWEEP_CASES)
def test_bad_sweep_options(
    args: list[str],
    expected: str,
    write_scenario: Writer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = write_scenario()
    message = run_bad(capsys, ["sweep", str(path), "--out", str(tmp_path / "sw"), *args])
    assert re.search(expected, message), message
    assert not (tmp_path / "sw" / "sweep.csv").exists()


def test_bad_sweep_file(
    write_scenario: Writer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_scenario()
    sweep = tmp_path / "grid.yaml"
    sweep.write_text("scenario: scenario.yaml\ngrid: {qkd.rate_scale: [1, 2]}\ncolour: red\n")
    message = run_bad(capsys, ["sweep", str(sweep)])
    assert re.search(
        r"colour: unknown key; allowed: grid, name, scenario, series, set, x$", message
    )
    sweep.write_text("grid: {qkd.rate_scale: [1, 2]}\nx: mean_skr_bps\n")
    message = run_bad(capsys, ["sweep", str(sweep)])
    assert re.search(r"scenario: missing \(a path to the base scenario\)$", message)


def test_simulate_refuses_a_folder_in_use(
    write_scenario: Writer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    message = run_bad(capsys, ["simulate", str(write_scenario()), "--out", str(out)])
    assert message == f"--out: folder {str(out)!r} exists and is not empty"
    assert (out / "keep.txt").read_text() == "precious"


def test_plot_of_a_folder_without_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = run_bad(capsys, ["plot", str(tmp_path)])
    assert "not a run folder (no metrics.csv) nor a sweep folder (no sweep.csv)" in message


def test_unknown_option_is_a_usage_error(
    write_scenario: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    message = run_bad(capsys, ["simulate", str(write_scenario()), "--bogus"])
    assert "No such option" in message and "--bogus" in message  # click's wording varies


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate"], r"topology\.links\[3\]\.length_km: must be >= 0, got -5"),
        (
            ["simulate", "--set", "learning.rouns=2"],
            r"--set learning\.rouns: unknown field 'learning\.rouns' \(did you mean 'rounds'\?\)",
        ),
    ],
)
def test_bad_input_in_a_subprocess(
    args: list[str], expected: str, tiny: Tiny, write_scenario: Writer, tmp_path: Path
) -> None:
    d = tiny()
    d["topology"]["links"][3]["length_km"] = -5 if args == ["validate"] else 20
    path = write_scenario(text=yaml.safe_dump(d))
    proc = subprocess.run(
        [sys.executable, "-m", "qfl.cli", args[0], str(path), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0]), proc.stderr
    assert proc.stdout == ""
