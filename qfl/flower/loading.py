"""Find a scenario's Flower objects: the strategy and the clients, from ``module:attr`` paths.

Every problem is a :class:`~qfl.scenario.ScenarioError` naming the scenario field and what
went wrong, in one line: a path that does not import, an object of the wrong kind, a
``client_fn`` that raises or returns something that is not a Flower client. Flower itself is
imported here, inside the functions (``qfl[flower]`` is an optional extra).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qfl.registry import _short, import_object
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


def build_clients(
    path: str, names: Sequence[str], seed: int, only: Sequence[int] | None = None
) -> list[Any]:
    """The Flower clients (as ``flwr.client.Client``), client ``i`` for node ``names[i]``
    (with ``only``: just those indices, the others ``None``).

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
    clients: list[Any] = []
    for i, name in enumerate(names):
        if only is not None and i not in only:
            clients.append(None)
            continue
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
