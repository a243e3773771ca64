"""Registries of the things a scenario names by string: models and datasets of one's own.

A scenario's ``learning.model`` and ``learning.dataset`` name a built-in (``cnn``,
``fashion-mnist``...), a name registered here (:func:`register_model`,
:func:`register_dataset`, or an entry point of the group ``qfl.models`` / ``qfl.datasets``
of an installed package), or a ``"package.module:attr"`` string, imported when the scenario
is checked. Methods have their registry in :mod:`qfl.cosim.methods`.

A **model factory** is a callable returning a ``torch.nn.Module`` whose forward maps a batch
of inputs ``[B, *input_shape]`` to logits ``[B, num_classes]`` (Def-FD: ``(logits,
feature_maps)``); it is called with those of ``input_shape``, ``num_classes`` and ``seed``
that its signature names (a ``torch.nn.Module`` class is a factory too).

A **dataset factory** is a callable returning a :class:`qfl.data.TensorDataset` (the pool
the clients' data are split from; the clients' held-out parts pooled are then the test
set), a pair ``(train, test)`` of them, or a pair ``(x, y)`` of tensors (float inputs, int
labels); it is called with ``seed`` if its signature names it.

Examples
--------
>>> reg = Registry("learning.model", "qfl.models", builtin=("cnn",))
>>> _ = reg.register("linear", lambda num_classes: None)
>>> reg.names(), reg.is_own("cnn"), reg.is_own("linear"), reg.is_own("math:sqrt")
(('cnn', 'linear'), False, True, True)
>>> reg.lookup("math:sqrt")(9.0)
3.0
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from qfl.scenario.base import ScenarioError

__all__ = [
    "DATASETS",
    "MODELS",
    "Registry",
    "call_with",
    "import_object",
    "register_dataset",
    "register_model",
]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = str(Path.cwd())
        if exc.name is None or not name.startswith(exc.name) or cwd in sys.path:
            raise
        sys.path.insert(0, cwd)  # like `python -m`: the working directory's modules
        return importlib.import_module(name)


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


def call_with(factory: Callable[..., Any], **available: Any) -> Any:
    """Call ``factory`` with those of ``available`` that its signature names (all of them if
    it takes ``**kwargs``; none if its signature cannot be read).

    Examples
    --------
    >>> call_with(lambda seed: seed + 1, seed=1, num_classes=3)
    2
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory()
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return factory(**available)
    return factory(**{k: v for k, v in available.items() if k in params})


class Registry:
    """Names of one kind of thing a scenario field takes, each mapped to a factory.

    Parameters
    ----------
    field : str
        The scenario field (``learning.model``), named by every error.
    group : str
        The entry-point group an installed package can register names in.
    builtin : tuple of str
        Names the built-in jobs build themselves (listed, not looked up here).
    """

    def __init__(self, field: str, group: str, builtin: tuple[str, ...] = ()) -> None:
        self.field, self.group, self.builtin = field, group, tuple(builtin)
        self._own: dict[str, Callable[..., Any]] = {}

    def register(
        self, name: str, factory: Callable[..., Any] | str, *, replace: bool = False
    ) -> Callable[..., Any] | str:
        """Add ``factory`` (a callable, or the ``package.module:attr`` string of one) as
        ``name``; returns it (usable as a decorator's body)."""
        if not isinstance(name, str) or not name or ":" in name:
            raise ScenarioError(self.field, f"a registered name must be a non-empty string "
                                            f"without ':', got {name!r}")  # fmt: skip
        if name in self.builtin:
            raise ScenarioError(self.field, f"{name!r} is a built-in name; choose another")
        if name in self._own and not replace:
            raise ScenarioError(
                self.field, f"{name!r} is already registered; pass replace=True to replace it"
            )
        if not (callable(factory) or isinstance(factory, str)):
            raise ScenarioError(
                self.field, f"{name!r} must be a callable or 'package.module:attr', "
                f"got {type(factory).__name__}"
            )  # fmt: skip
        self._own[name] = factory  # type: ignore[assignment]
        return factory

    def unregister(self, name: str) -> None:
        """Remove a registered name (nothing if it is not there)."""
        self._own.pop(name, None)

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> tuple[str, ...]:
        """Built-in names, then registered ones and entry points, sorted within each."""
        own = sorted(set(self._own) | set(self._entry_points()))
        return self.builtin + tuple(n for n in own if n not in self.builtin)

    def is_own(self, ref: str) -> bool:
        """Whether ``ref`` is a user's (registered, an entry point, or ``module:attr``)."""
        return ref not in self.builtin

    def in_process(self, ref: str) -> bool:
        """Whether ``ref`` names an object registered in this process only (a fresh
        process, such as a sweep's worker, does not know it)."""
        return ref in self._own and not isinstance(self._own[ref], str)

    def lookup(self, ref: str) -> Callable[..., Any]:
        """The factory ``ref`` names (imported now).

        Raises
        ------
        ScenarioError
            On :attr:`field`: an unknown name (listing the known ones), an import path that
            does not import, or something that is not callable.
        """
        if ":" in ref:
            obj = import_object(ref, self.field)
        elif ref in self._own:
            obj = self._own[ref]
            if isinstance(obj, str):
                obj = import_object(obj, self.field)
        else:
            eps = self._entry_points()
            if ref not in eps:
                known = ", ".join(repr(n) for n in self.names())
                raise ScenarioError(
                    self.field,
                    f"unknown name {ref!r}; give one of {known}, a registered name or "
                    "'package.module:attr'",
                )
            try:
                obj = eps[ref].load()
            except Exception as exc:
                raise ScenarioError(
                    self.field, f"entry point {ref!r} does not load: {_short(exc)}"
                ) from None
        if not callable(obj):
            raise ScenarioError(
                self.field, f"{ref} must name a callable (a factory), got {type(obj).__name__}"
            )
        return obj


MODELS = Registry(
    "learning.model", "qfl.models", builtin=("cnn", "resnet-me", "lstm-me", "resnet18", "resnet50")
)
"""Model factories by name (the built-in models are built by their methods' jobs)."""

DATASETS = Registry(
    "learning.dataset",
    "qfl.datasets",
    builtin=("fashion-mnist", "unimib-shar", "synthetic-har", "flowers102+intel"),
)
"""Dataset factories by name (the built-in datasets are loaded by their methods' jobs)."""


def register_model(
    name: str, factory: Callable[..., Any] | str, *, replace: bool = False
) -> Callable[..., Any] | str:
    """Make ``name`` a value of ``learning.model``.

    Parameters
    ----------
    name : str
        The name a scenario gives (not a built-in's, no ``:``).
    factory : callable or str
        Returns a ``torch.nn.Module`` mapping a batch ``[B, *input_shape]`` to logits
        ``[B, num_classes]`` (Def-FD: ``(logits, feature_maps)``); called with those of
        ``input_shape``, ``num_classes`` and ``seed`` it names. Or the
        ``"package.module:attr"`` of one (then a sweep's worker processes find it too).
    replace : bool
        Replace a name registered before (else that is an error).

    Returns
    -------
    callable or str
        ``factory``.

    Examples
    --------
    >>> from torch import nn
    >>> _ = register_model("linear", lambda input_shape, num_classes:
    ...                    nn.Linear(input_shape[0], num_classes), replace=True)
    >>> "linear" in MODELS.names()
    True
    """
    return MODELS.register(name, factory, replace=replace)


def register_dataset(
    name: str, factory: Callable[..., Any] | str, *, replace: bool = False
) -> Callable[..., Any] | str:
    """Make ``name`` a value of ``learning.dataset``.

    Parameters
    ----------
    name : str
        The name a scenario gives (not a built-in's, no ``:``).
    factory : callable or str
        Returns a :class:`qfl.data.TensorDataset` (the pool the clients' data are split
        from), a pair ``(train, test)`` of them, or a pair ``(x, y)`` of tensors; called
        with ``seed`` if it names it. Or the ``"package.module:attr"`` of one.
    replace : bool
        Replace a name registered before (else that is an error).

    Returns
    -------
    callable or str
        ``factory``.

    Examples
    --------
    >>> import torch
    >>> _ = register_dataset("four", lambda: (torch.randn(4, 2), torch.tensor([0, 1, 0, 1])),
    ...                      replace=True)
    >>> "four" in DATASETS.names()
    True
    """
    return DATASETS.register(name, factory, replace=replace)
