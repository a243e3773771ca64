"""How many CPU threads the learning half uses, and how idle threads wait.

The learning half runs torch's CPU kernels (and the fused kernels of
:mod:`qfl.engine.kernels`, which split their loops with ``at::parallel_for``) on torch's
intra-op OpenMP pool. Two choices, measured in ``benchmarks/bench_contention.py``:

- **the thread count**: ``--threads N`` on ``qfl simulate`` / ``qfl sweep``, else the
  environment variable ``QFL_THREADS``, else :func:`default_threads` (one per physical
  core this process may use: torch's own default, bounded by the CPU affinity). It is
  never derived from the machine's current load, because float sums split over a different
  number of threads give different numbers: the same scenario and seed give the same
  numbers for a given thread count (and CPU kind, torch version), so the count used is
  part of the run's record.
- **how idle OpenMP threads wait**: ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set it),
  applied by :func:`prepare_env` before torch loads its OpenMP runtime (libgomp reads it
  once, when it is loaded). Spinning threads steal a busy machine's cores from the thread
  that still has work; passive ones sleep at once. It changes no number.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from qfl.scenario import ScenarioError

__all__ = [
    "ENV",
    "OPTION",
    "default_threads",
    "in_use",
    "parse_threads",
    "physical_cores",
    "prepare_env",
    "resolve_threads",
    "threads_env",
    "usable_cores",
    "using_threads",
]

ENV = "QFL_THREADS"
OPTION = "--threads"
MAX_THREADS = 1024


def prepare_env(environ: os._Environ[str] | None = None) -> None:
    """Make idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``),
    unless the variable is already set. Call it before ``import torch``: the OpenMP runtime
    reads the variable once, when torch loads it. Worker processes inherit it."""
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_threads(value: object, where: str) -> int:
    """``value`` as a thread count (an integer 1..1024), else a one-line error naming
    ``where`` (the option or the variable), the value and what is allowed."""
    text = str(value).strip()
    try:
        n = int(text)
    except ValueError:
        n = 0
    if str(n) != text.lstrip("+") or not 1 <= n <= MAX_THREADS:
        raise ScenarioError(where, f"must be an integer from 1 to {MAX_THREADS}, got {value!r}")
    return n


def resolve_threads(
    option: int | str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """The thread count to use and where it came from: ``--threads`` (``option``), else
    ``$QFL_THREADS`` (ignored when empty), else the default."""
    if option is not None:
        return parse_threads(option, OPTION), OPTION
    env = os.environ if environ is None else environ
    raw = env.get(ENV, "")
    if raw.strip():
        return parse_threads(raw, ENV), ENV
    return default_threads(), "default"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; all cores where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical cores among the usable ones (hyperthread siblings counted once), from
    ``/sys/devices/system/cpu``; the usable logical CPUs where that is unreadable."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return usable_cores()
    cores = set()
    for c in cpus:
        topo = f"/sys/devices/system/cpu/cpu{c}/topology"
        try:
            with open(f"{topo}/physical_package_id") as pkg, open(f"{topo}/core_id") as core:
                cores.add((pkg.read().strip(), core.read().strip()))
        except OSError:
            return usable_cores()
    return max(1, len(cores))


def default_threads() -> int:
    """The default thread count: one per physical core this process may use (torch's own
    default, bounded by the CPU affinity: ``taskset``, a container's CPU set). With idle
    threads waiting passively (:func:`prepare_env`) this measured fastest idle and did not
    collapse next to a busy process (``benchmarks/README.md``, contention)."""
    return physical_cores()


def in_use() -> int:
    """torch's intra-op thread count in this process (what a run's summary records)."""
    import torch

    return int(torch.get_num_threads())


@contextlib.contextmanager
def using_threads(n: int) -> Iterator[int]:
    """Run the block on ``n`` torch threads, then restore the previous count (a command
    run in-process, as the tests do, leaves the process as it found it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield int(torch.get_num_threads())
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def threads_env(n: int) -> Iterator[None]:
    """Set ``$QFL_THREADS`` to ``n`` for the block (what a sweep's executors and worker
    processes read), then restore it."""
    before = os.environ.get(ENV)
    os.environ[ENV] = str(n)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
