"""``qfl validate`` for ``learning.method: flower``: the objects exist and are of the right kind.

Checked without building a client or training: Flower is installed; ``learning.strategy``
imports and is a ``Strategy`` (instance, subclass) or a callable factory, and the
``learning.flower`` arguments fit its signature; ``learning.client_fn`` imports and is a
function; ``dataset`` and ``model`` are left out (the clients hold their own). A
``client_fn`` that raises, or clients of the wrong kind, are found when the job is built
(``qfl simulate``), with the same one-line errors.
"""

from __future__ import annotations

import inspect
from typing import Any

from qfl.flower.loading import import_flower, import_object, strategy_arguments
from qfl.scenario import ScenarioError

__all__ = ["check_scenario"]


def check_scenario(sc: Any) -> None:
    """Check the ``learning`` section of a ``flower`` scenario.

    Raises
    ------
    ScenarioError
        Naming the first bad field.
    """
    lr = sc.learning
    for fld in ("dataset", "model", "partition"):
        if getattr(lr, fld) is not None:
            raise ScenarioError(
                f"learning.{fld}",
                f"method 'flower' takes its data and model from its clients (client_fn); "
                f"leave {fld} out, got {getattr(lr, fld)!r}",
            )
    for fld in ("strategy", "client_fn"):
        if getattr(lr, fld) is None:
            raise ScenarioError(
                f"learning.{fld}", "required by method 'flower': give 'package.module:attr'"
            )
    import_flower()
    from flwr.server.strategy import Strategy

    strategy = import_object(lr.strategy, "learning.strategy")
    args = strategy_arguments(lr.flower)
    if isinstance(strategy, Strategy):
        if args:
            raise ScenarioError(
                "learning.flower",
                f"{lr.strategy} is a Strategy instance, which takes no arguments; name its "
                "class or a factory",
            )
    elif isinstance(strategy, type) and not issubclass(strategy, Strategy):
        raise ScenarioError(
            "learning.strategy",
            f"{lr.strategy} must be a flwr.server.strategy.Strategy, got class {strategy.__name__}",
        )
    elif not callable(strategy):
        raise ScenarioError(
            "learning.strategy",
            f"{lr.strategy} must be a Flower Strategy (class, instance or factory), got "
            f"{type(strategy).__name__}",
        )
    else:
        _check_arguments(strategy, lr.strategy, args)
    fn = import_object(lr.client_fn, "learning.client_fn")
    if not callable(fn) or isinstance(fn, type):
        raise ScenarioError(
            "learning.client_fn",
            f"{lr.client_fn} must be a function building a client, got {type(fn).__name__}",
        )


def _check_arguments(factory: Any, path: str, args: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    given = dict(args)
    p = sig.parameters.get("initial_parameters")
    if p is not None and p.default is p.empty:
        given.setdefault("initial_parameters", None)  # qfl supplies it
    try:
        sig.bind(**given)
    except TypeError as exc:
        names = [
            n
            for n, q in sig.parameters.items()
            if q.kind in (q.KEYWORD_ONLY, q.POSITIONAL_OR_KEYWORD)
        ]
        raise ScenarioError(
            "learning.flower",
            f"{path} rejects these arguments ({exc}); it takes {', '.join(names)}",
        ) from None
