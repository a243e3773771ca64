"""Where the learning half of ``qfl simulate`` trains, and within what memory.

``qfl simulate --executor ray [--address ADDR] [--workers N] [--memory 4G]`` puts these in
the environment for the run (:func:`learning_env`), where the learning job reads them
(:func:`learning_executor`, :func:`qfl.engine.memory.resolve_memory`): so sweep worker
processes, which inherit the environment, see the same settings. ``local`` (the default)
trains in this process; ``ray`` trains each round's sampled clients on ``N`` Ray workers
(:class:`qfl.engine.raypool.RayTrainerPool`; a local Ray cluster unless ``ADDR`` names one).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence

from qfl.engine.memory import ENV as MEMORY_ENV
from qfl.engine.memory import OPTION as MEMORY_OPTION
from qfl.engine.memory import SOURCE_ENV as MEMORY_SOURCE_ENV
from qfl.engine.memory import resolve_memory
from qfl.scenario import ScenarioError

__all__ = [
    "EXECUTORS",
    "check_executor_choice",
    "check_learning_options",
    "learning_env",
    "learning_executor",
]

EXECUTORS: tuple[str, ...] = ("local", "ray")
ENV_EXECUTOR = "QFL_LEARNING_EXECUTOR"
ENV_ADDRESS = "QFL_RAY_ADDRESS"
ENV_WORKERS = "QFL_RAY_WORKERS"


def check_learning_options(executor: str, workers: int | None, memory: str | None) -> None:
    """Check ``--executor``, ``--workers`` and ``--memory`` before any work (exit 2)."""
    check_executor_choice(executor, EXECUTORS, "--workers", workers)
    resolve_memory(memory)


def check_executor_choice(
    executor: str, allowed: Sequence[str], count_option: str, count: int | None
) -> None:
    """Check ``--executor`` against ``allowed``, the process count given as ``count_option``
    (``>= 1`` or ``None``), and that Ray is installed where ``executor`` is ``"ray"``.

    Raises
    ------
    ScenarioError
        Naming the option, the bad value and what is allowed (exit status 2).
    """
    if executor not in allowed:
        raise ScenarioError("--executor", f"must be one of {', '.join(allowed)}, got {executor!r}")
    if count is not None and count < 1:
        raise ScenarioError(count_option, f"must be an integer >= 1, got {count}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ScenarioError(
                "--executor", "'ray' needs the ray extra: pip install 'qfl[ray]'"
            ) from None


def learning_executor(environ: Mapping[str, str] | None = None) -> tuple[str, str | None, int]:
    """``(executor, ray address or None, workers)`` from the environment (default:
    ``local``, a local cluster, one worker per usable core)."""
    from qfl.threads import usable_cores

    env = os.environ if environ is None else environ
    executor = env.get(ENV_EXECUTOR, "").strip() or "local"
    if executor not in EXECUTORS:
        raise ScenarioError(
            ENV_EXECUTOR, f"must be one of {', '.join(EXECUTORS)}, got {executor!r}"
        )
    address = env.get(ENV_ADDRESS, "").strip() or None
    raw = env.get(ENV_WORKERS, "").strip()
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise ScenarioError(ENV_WORKERS, f"must be an integer >= 1, got {raw!r}")
    return executor, address, int(raw) if raw else usable_cores()


@contextlib.contextmanager
def learning_env(
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    memory: str | None = None,
) -> Iterator[None]:
    """Set the learning half's executor and memory budget in the environment for the block,
    then restore it."""
    values = {
        ENV_EXECUTOR: executor,
        ENV_ADDRESS: address,
        ENV_WORKERS: None if workers is None else str(workers),
        MEMORY_ENV: memory,
        MEMORY_SOURCE_ENV: None if memory is None else MEMORY_OPTION,
    }
    before = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is not None:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
