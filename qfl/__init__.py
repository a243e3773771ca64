"""Federated learning over a QKD network: learning methods, scenarios, co-simulation, CLI.

Importing ``qfl`` is cheap: torch is imported by the submodules that need it, and the
public API below is loaded on first use.

The public API
--------------
:func:`load_scenario`, :func:`build_scenario`
    A scenario from a YAML file or a mapping (validated; overrides by dotted path).
:func:`run`, :func:`sweep`
    Run a scenario (network timeline, then learning), or a grid of them.
:func:`register_model`, :func:`register_dataset`, :func:`register_method`
    Make a model factory, a dataset factory or a learning method a value the scenario's
    ``learning.model``, ``learning.dataset`` or ``learning.method`` takes (see
    :mod:`qfl.registry`; a ``"package.module:attr"`` string works without registering).

Examples
--------
>>> import qfl
>>> sorted(qfl.__all__)[:3]
['__version__', 'build_scenario', 'load_scenario']
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "build_scenario",
    "load_scenario",
    "register_dataset",
    "register_method",
    "register_model",
    "run",
    "sweep",
]

_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from qfl import api

        return getattr(api, name)
    raise AttributeError(f"module 'qfl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
