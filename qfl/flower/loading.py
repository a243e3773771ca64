"""Find a scenario's Flower objects: the strategy and the clients, from ``module:attr`` paths.

Every problem is a :class:`~qfl.scenario.ScenarioError` naming the scenario field and what
went wrong, in one line: a path that does not import, an object of the wrong kind, a
``client_fn`` that raises or returns something that is not a Flower client. Flower itself is
imported here, inside the functions (``qfl[flower]`` is an optional extra).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qfl.scenario import ScenarioError

__all__ = [
    "build_clients",
    "build_strategy",
    "import_flower",
    "import_object",
    "strategy_arguments",
]

_INSTALL = "pip install 'qfl[flower]'"


def import_flower(field: str = "learning.method") -> Any:
    """The ``flwr`` package, or a :class:`ScenarioError` on ``field`` saying how to get it."""
    try:
        import flwr
    except ImportError:
        raise ScenarioError(
            field, f"'flower' needs Flower (flwr), which is not installed: {_INSTALL}"
        ) from None
    return flwr


def import_object(path: Any, field: str) -> Any:
    """The object a ``package.module:attr`` string names.

    The module is imported as the environment finds it, else from the current directory.

    Raises
    ------
    ScenarioError
        On ``field``: not a ``module:attr`` string, a module that does not import (with the
        import's own error), or no such attribute.

    Examples
    --------
    >>> import_object("math:pi", "learning.strategy")
    3.141592653589793
    >>> import_object("math:tau2", "learning.strategy")
    Traceback (most recent call last):
    ...
    qfl.scenario.ScenarioError: learning.strategy: module 'math' has no attribute 'tau2'
    """
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ScenarioError(field, f"must be 'package.module:attr', got {path!r}")
    mod_name, attr = path.split(":")
    try:
        module = _import(mod_name)
    except ScenarioError:
        raise
    except ModuleNotFoundError as exc:
        raise ScenarioError(
            field, f"cannot import {mod_name!r} ({exc}); is it on the path or installed?"
        ) from None
    except Exception as exc:
        raise ScenarioError(
            field, f"importing {mod_name!r} raised {type(exc).__name__}: {_short(exc)}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ScenarioError(field, f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = str(Path.cwd())
        if exc.name is None or not name.startswith(exc.name) or cwd in sys.path:
            raise
        sys.path.insert(0, cwd)  # like `python -m`: the working directory's modules
        return importlib.import_module(name)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def strategy_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """The ``learning.flower`` arguments, with ``module:attr`` strings under keys ending in
    ``_fn`` imported (``evaluate_fn``, ``on_fit_config_fn``, ...)."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key.endswith("_fn") and isinstance(value, str):
            value = import_object(value, f"learning.flower.{key}")
            if not callable(value):
                raise ScenarioError(
                    f"learning.flower.{key}", f"must name a callable, got {type(value).__name__}"
                )
        out[key] = value
    return out


def _initial_parameters_needed(factory: Any, args: Mapping[str, Any]) -> bool:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    p = sig.parameters.get("initial_parameters")
    return p is not None and "initial_parameters" not in args and p.default is p.empty


def build_strategy(
    path: str,
    args: Mapping[str, Any],
    initial: Callable[[], Any] | None = None,
) -> Any:
    """A fresh Flower ``Strategy`` from ``learning.strategy`` and ``learning.flower``.

    Parameters
    ----------
    path : str
        ``module:attr`` of a Strategy subclass or factory (called with ``args``), or of a
        Strategy instance (deep-copied; ``args`` must then be empty).
    args : mapping
        The strategy's keyword arguments.
    initial : callable, optional
        Returns the initial ``Parameters``; passed as ``initial_parameters`` when the
        strategy requires them and ``args`` has none (FedAdam, FedYogi, ...).

    Raises
    ------
    ScenarioError
        On ``learning.strategy`` (not a Strategy, the constructor raised) or
        ``learning.flower`` (arguments the strategy does not take).
    """
    from flwr.server.strategy import Strategy

    obj = import_object(path, "learning.strategy")
    if isinstance(obj, Strategy):
        if args:
            raise ScenarioError(
                "learning.flower",
                f"{path} is a Strategy instance, which takes no arguments; name its class or "
                f"a factory to pass {', '.join(sorted(args))}",
            )
        return copy.deepcopy(obj)
    if not callable(obj):
        raise ScenarioError(
            "learning.strategy",
            f"{path} must be a Flower Strategy (class, instance or factory), got "
            f"{type(obj).__name__}",
        )
    kwargs = strategy_arguments(args)
    if initial is not None and _initial_parameters_needed(obj, kwargs):
        kwargs["initial_parameters"] = initial()
    try:
        strategy = obj(**kwargs)
    except TypeError as exc:
        raise ScenarioError("learning.flower", f"{path}: {_short(exc)}") from None
    except Exception as exc:
        raise ScenarioError(
            "learning.strategy", f"{path} raised {type(exc).__name__}: {_short(exc)}"
        ) from None
    if not isinstance(strategy, Strategy):
        raise ScenarioError(
            "learning.strategy",
            f"{path} must be or return a flwr.server.strategy.Strategy, got "
            f"{type(strategy).__name__}",
        )
    return strategy


def _takes_context(fn: Any) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    if not params:
        return True
    first = params[0]
    return not (first.name == "cid" or first.annotation in (str, "str"))


def build_clients(path: str, names: Sequence[str], seed: int) -> list[Any]:
    """The Flower clients (as ``flwr.client.Client``), client ``i`` for node ``names[i]``.

    ``client_fn`` gets a ``flwr.common.Context`` whose ``node_config`` holds
    ``partition-id`` (``i``), ``num-partitions``, ``node-name`` and ``seed``, as in Flower's
    simulation; a legacy ``client_fn(cid)`` (first parameter named ``cid``) gets ``str(i)``.

    Raises
    ------
    ScenarioError
        On ``learning.client_fn``: not callable, raised, or returned no Flower client.
    """
    from flwr.client import Client, NumPyClient
    from flwr.common import Context, RecordDict

    fn = import_object(path, "learning.client_fn")
    if not callable(fn) or isinstance(fn, type):
        raise ScenarioError(
            "learning.client_fn",
            f"{path} must be a function building a client, got {type(fn).__name__}",
        )
    context = _takes_context(fn)
    clients = []
    for i, name in enumerate(names):
        node_config: dict[str, Any] = {
            "partition-id": i,
            "num-partitions": len(names),
            "node-name": name,
            "seed": seed,
        }
        arg: Any = str(i)
        if context:
            arg = Context(
                run_id=0, node_id=i, node_config=node_config, state=RecordDict(), run_config={}
            )
        try:
            client = fn(arg)
        except Exception as exc:
            raise ScenarioError(
                "learning.client_fn",
                f"{path} raised {type(exc).__name__} building client {i} ({name!r}): {_short(exc)}",
            ) from None
        if isinstance(client, NumPyClient):
            client = client.to_client()
        if not isinstance(client, Client):
            raise ScenarioError(
                "learning.client_fn",
                f"{path} must return a flwr NumPyClient or Client, got "
                f"{type(client).__name__} for client {i} ({name!r})",
            )
        clients.append(client)
    return clients
