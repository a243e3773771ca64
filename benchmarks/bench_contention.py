"""``qfl simulate`` on a busy machine: idle vs next to one busy process.

Runs ``qfl simulate scenarios/metro.yaml --quick --no-plots`` (a fresh process, into a temp
folder, as a user runs it) with the default thread setting, alternately idle and next to
one process spinning a pure-Python loop on one core, ``--repeat`` times each, and reports
the median of each condition and their ratio. ``--compare`` adds the old default (torch's
thread count, one per core, with the OpenMP runtime's default spin-waiting), and
``--candidate NAME:ARGS`` any other setting (``ARGS``: extra ``qfl simulate`` options and
``VAR=value`` environment settings, space separated), measured in the same run.

The last line is JSON: ``idle_s``, ``contended_s``, ``ratio`` of the default (target
``ratio <= 1.6`` on the 2-core development machine), and every candidate's numbers.

    python benchmarks/bench_contention.py [--repeat 3] [--compare] [--candidate ...] [--smoke]

``--smoke`` runs each condition once on a much smaller job (one round, two clients, a few
samples: ``SMOKE``): a seconds-long check that the script runs, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "metro.yaml"
SPIN = "while True:\n    pass\n"
# The old default: torch's own thread count (one per core) and libgomp's default spinning
# (OMP_WAIT_POLICY unset spins ~300,000 times before sleeping; GOMP_SPINCOUNT overrides the
# passive policy qfl now sets, so this reproduces it).
OLD = f"--threads {os.cpu_count() or 1} GOMP_SPINCOUNT=300000"
SMOKE = ["--set", "learning.rounds=1", "--set", "learning.samples_per_client=20",
         "--set", "learning.test_samples=100", "--set", "learning.clients=[hospital, bank]",
         "--set", "learning.engine=sequential"]  # fmt: skip


def parse_candidate(text: str) -> tuple[str, list[str], dict[str, str]]:
    name, _, spec = text.partition(":")
    args: list[str] = []
    env: dict[str, str] = {}
    for word in spec.split():
        if "=" in word and not word.startswith("-"):
            key, _, value = word.partition("=")
            env[key] = value
        else:
            args.append(word)
    return name, args, env


def simulate(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds one ``qfl simulate`` takes, and its metrics.csv."""
    full_env = dict(os.environ, MPLBACKEND="Agg", **env)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "qfl.cli", "simulate", str(SCENARIO), "--quick",
               "--no-plots", "--out", str(out), *args]  # fmt: skip
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"qfl simulate failed ({res.returncode}): {res.stderr[-2000:]}")
        return wall, (out / "metrics.csv").read_text(encoding="utf-8")


def busy() -> subprocess.Popen[bytes]:
    """One process spinning a pure-Python loop (one core) until killed."""
    return subprocess.Popen([sys.executable, "-c", SPIN])


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare", action="store_true", help=f"also the old default ({OLD})")
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME:ARGS")
    ap.add_argument("--smoke", action="store_true", help="seconds-long check, not a measurement")
    opts = ap.parse_args()
    if opts.smoke:
        opts.repeat = 1
    cands: list[tuple[str, list[str], dict[str, str]]] = [("default", [], {})]
    if opts.compare:
        cands.append(parse_candidate(f"old:{OLD}"))
    cands += [parse_candidate(c) for c in opts.candidate]
    times: dict[str, dict[str, list[float]]] = {n: {"idle": [], "contended": []} for n, *_ in cands}
    metrics: dict[str, set[str]] = {n: set() for n, *_ in cands}
    load0 = loadavg()
    print(f"{os.cpu_count()} cores, load {load0:.2f}; {SCENARIO.name} --quick", flush=True)
    for rep in range(opts.repeat):
        for name, args, env in cands:
            order = ("idle", "contended") if rep % 2 == 0 else ("contended", "idle")
            for cond in order:
                spinner = busy() if cond == "contended" else None
                try:
                    wall, m = simulate([*args, *SMOKE] if opts.smoke else args, env)
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                times[name][cond].append(wall)
                metrics[name].add(m)
                print(f"  {name:>12} {cond:>9} {wall:6.1f} s  (load {loadavg():.2f})", flush=True)
    result: dict[str, object] = {}
    for name, *_ in cands:
        idle = statistics.median(times[name]["idle"])
        cont = statistics.median(times[name]["contended"])
        same = len(metrics[name]) == 1
        print(f"{name:>12}: idle {idle:.1f} s, contended {cont:.1f} s, ratio {cont / idle:.2f}"
              f", metrics identical across runs: {same}")  # fmt: skip
        runs = {k: [round(x, 2) for x in v] for k, v in times[name].items()}
        result[name] = {"idle_s": round(idle, 2), "contended_s": round(cont, 2),
                        "ratio": round(cont / idle, 3), "deterministic": same,
                        "runs": runs}  # fmt: skip
    main_res = result["default"]
    assert isinstance(main_res, dict)
    summary = {"idle_s": main_res["idle_s"], "contended_s": main_res["contended_s"],
               "ratio": main_res["ratio"], "cores": os.cpu_count(), "repeat": opts.repeat,
               "smoke": opts.smoke,
               "load_before": load0, "load_after": loadavg(), "candidates": result}  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
