"""Every shipped scenario in ``--quick`` gives the same files as the recorded golden run.

A refactor must not change behaviour or numbers: ``qfl simulate SCENARIO --quick`` is run as
a user runs it (a fresh process, the default thread count) and its run folder is compared,
byte for byte, with ``tests/golden/<scenario>/`` (``summary.json`` without the wall times).

The network half (``transfers.csv``, ``keypools.csv``, ``faults.csv``, ``ops.csv``,
``topology.json``) is pure Python arithmetic and is compared everywhere. The learning half
(``metrics.csv`` and the accuracies in ``summary.json``) depends on the CPU's instruction
set (the fused kernels are built with ``-march=native``), the torch version and the thread
count, so it is compared on the machine kind the golden files were recorded on
(``tests/golden/MACHINE.json``) and skipped, with the reason printed, elsewhere.

To record new golden files after an intended change of numbers::

    python tests/test_golden.py --regenerate
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
SCENARIOS = ("metro", "secoqc-vienna", "tokyo-qkd", "cambridge-ring", "multiexit-metro",
             "ssl-backbone")  # fmt: skip
NETWORK_FILES = ("transfers.csv", "keypools.csv", "faults.csv", "ops.csv", "topology.json")
LEARNING_FILES = ("metrics.csv",)
# ``threads`` is the machine's (the thread count of the learning half): compared with it.
LEARNING_KEYS = ("final_global_acc", "final_local_acc", "final_exit_acc", "rounds_to_target",
                 "time_to_target_s", "rounds_evaluated", "final_round", "threads")  # fmt: skip


def _machine() -> dict[str, object]:
    code = (
        "import hashlib, json, torch; from qfl.engine.kernels import _cpu_id; "
        "print(json.dumps({'cpu': hashlib.sha256(_cpu_id().encode()).hexdigest()[:16], "
        "'threads': torch.get_num_threads(), 'torch': torch.__version__}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _simulate(name: str, out: Path) -> None:
    env = dict(os.environ, MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "qfl.cli", "simulate", str(REPO / "scenarios" / f"{name}.yaml"),
           "--quick", "--no-plots", "--out", str(out)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]


def _summary(folder: Path) -> dict[str, object]:
    data = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    data.pop("wall_s", None)
    return data


@pytest.fixture(scope="module")
def same_machine() -> str:
    """'' when the learning half can be compared here, else the reason it cannot."""
    want = json.loads((GOLDEN / "MACHINE.json").read_text(encoding="utf-8"))
    have = _machine()
    diff = [f"{k} {have.get(k)} (golden: {v})" for k, v in want.items() if have.get(k) != v]
    return "; ".join(diff)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", SCENARIOS)
def test_quick_run_matches_golden(name: str, tmp_path: Path, same_machine: str) -> None:
    if not (REPO.parent / "shared" / "data").is_dir() and not os.environ.get("QFL_DATA_DIR"):
        pytest.skip("the shipped scenarios need the data sets (QFL_DATA_DIR)")
    out = tmp_path / name
    _simulate(name, out)
    want_dir = GOLDEN / name
    for f in NETWORK_FILES:
        assert (out / f).read_bytes() == (want_dir / f).read_bytes(), f"{name}/{f} changed"
    got, want = _summary(out), _summary(want_dir)
    net_keys = [k for k in want if k not in LEARNING_KEYS]  # keys added since are not compared
    assert {k: got.get(k) for k in net_keys} == {k: want[k] for k in net_keys}
    if same_machine:
        print(f"learning half of {name} not compared: {same_machine}")
        return
    for f in LEARNING_FILES:
        assert (out / f).read_bytes() == (want_dir / f).read_bytes(), f"{name}/{f} changed"
    assert {k: got.get(k) for k in LEARNING_KEYS} == {k: want.get(k) for k in LEARNING_KEYS}


def _regenerate() -> None:
    for name in SCENARIOS:
        tmp = GOLDEN / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _simulate(name, tmp)
        dest = GOLDEN / name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for f in (*NETWORK_FILES, *LEARNING_FILES, "summary.json"):
            shutil.copy(tmp / f, dest / f)
        shutil.rmtree(tmp)
    machine = _machine()
    (GOLDEN / "MACHINE.json").write_text(json.dumps(machine, indent=2), encoding="utf-8")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(GOLDEN.rglob("*.csv"))))
    sys.stdout.write(f"golden files recorded ({digest.hexdigest()[:12]})\n")


if __name__ == "__main__" and "--regenerate" in sys.argv:
    _regenerate()
