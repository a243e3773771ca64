"""The learning half's memory budget: how many clients train in one chunk.

A batched round holds, for every client of a chunk, its parameters, their gradients, the
optimizer's state (SGD momentum: one more copy) and the trained copy it uploads, plus the
activations of one mini-batch kept for the backward pass. :func:`client_working_set`
estimates those bytes for one client, and :func:`chunk_clients` turns a budget into the
most clients per chunk. Idle clients (not sampled this round) hold nothing but their data:
FedAvg's clients keep no state between rounds (a fresh optimizer every round).

The budget comes from ``--memory`` (``qfl simulate``), else ``$QFL_MEMORY``, else a safe
share of the machine (:func:`default_budget`: half of the memory available now). Values
are bytes with an optional unit: ``512M``, ``4G``, ``1.5GB``, ``2GiB``.

Examples
--------
>>> parse_memory("4G", "--memory")
4294967296
>>> parse_memory("512MiB", "--memory") == 512 * 2**20
True
>>> chunk_clients(10 * 2**20, 2**20, where="--memory")
10
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from qfl.scenario import ScenarioError

__all__ = [
    "ENV",
    "OPTION",
    "activation_bytes_per_sample",
    "chunk_clients",
    "client_working_set",
    "default_budget",
    "parse_memory",
    "resolve_memory",
]

ENV = "QFL_MEMORY"
OPTION = "--memory"
#: Set (to ``--memory``) when a command put its option's value in ``$QFL_MEMORY``, so that
#: errors found later name the option the user gave.
SOURCE_ENV = "QFL_MEMORY_SOURCE"

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_memory(value: object, where: str) -> int:
    """``value`` as bytes (``4G``, ``512M``, ``1.5GB``, ``2GiB``, ``1000000``), else a
    one-line :class:`~qfl.scenario.ScenarioError` naming ``where``, the value and what is
    allowed."""
    m = _PATTERN.match(str(value))
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if m else 0
    if n < 1:
        raise ScenarioError(
            where, f"must be a size in bytes > 0 such as 512M, 4G or 2GiB, got {value!r}"
        )
    return n


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def default_budget() -> int:
    """Half of the memory available now (Linux ``MemAvailable``, else half the RAM)."""
    return max(1, _available_bytes() // 2)


def resolve_memory(
    option: object | None = None, environ: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """The budget in bytes and where it came from: ``--memory`` (``option``), else
    ``$QFL_MEMORY`` (ignored when empty), else :func:`default_budget`."""
    if option is not None:
        return parse_memory(option, OPTION), OPTION
    env = os.environ if environ is None else environ
    raw = env.get(ENV, "")
    if raw.strip():
        where = env.get(SOURCE_ENV, "") or ENV
        return parse_memory(raw, where), where
    return default_budget(), "default"


def activation_bytes_per_sample(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Bytes of every module's output for one sample (what a backward pass keeps), counted
    with forward hooks on one forward pass of a zero sample (the model is not changed)."""
    total = 0

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        outs = out if isinstance(out, tuple | list) else (out,)
        for o in outs:
            if isinstance(o, torch.Tensor):
                total += o.numel() * o.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return int(total)


def client_working_set(
    model: nn.Module, input_shape: Sequence[int], batch_size: int, *, state_copies: int = 1
) -> int:
    """Estimated bytes one training client holds in a batched round.

    Parameters, gradients, ``state_copies`` optimizer buffers (SGD momentum: 1) and the
    trained copy (4 + ``state_copies`` - 1 copies of the parameters), plus twice the
    activations of one mini-batch (kept for backward, and their gradients). An upper bound
    for the stacked CPU routes, which hold activations for one pass of a few clients at a
    time (:data:`qfl.engine.stacked.CHUNK`): 100 sampled ResNet clients estimated at 5.6 GB
    peaked at 2.15 GB for the whole process (benchmarks/README.md).
    """
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    acts = activation_bytes_per_sample(model, input_shape) * batch_size
    return int(param_bytes * (3 + state_copies) + 2 * acts)


def chunk_clients(budget: int, per_client: int, *, where: str, reserved: int = 0) -> int:
    """The most clients whose working sets fit ``budget`` bytes after ``reserved``.

    Raises
    ------
    ScenarioError
        Naming ``where`` when not even one client fits.
    """
    room = budget - reserved
    if room < per_client:
        raise ScenarioError(
            where,
            f"must be at least one client's working set, {_fmt(per_client + reserved)} "
            f"(e.g. {_fmt(per_client + reserved, up=True)}), got {_fmt(budget)}",
        )
    return int(room // per_client)


def _fmt(n: int, *, up: bool = False) -> str:
    for unit, size in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= size:
            v = n / size
            return f"{-(-n // size)}{unit}" if up else f"{v:.3g}{unit}"
    return f"{n}"
