"""Exception hierarchy shared by every layer of the toolkit.

Every error raised for bad input names the parameter (or YAML path), the value that was
given and what is allowed, so that the command line can print it as one line.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ParameterError", "QflError", "UnknownNameError"]


def _rebuild(cls: type[QflError], args: tuple[Any, ...], state: dict[str, Any]) -> QflError:
    obj = cls.__new__(cls)
    Exception.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


class QflError(Exception):
    """Base class of every error raised by ``qkd``, ``network`` and ``qfl``.

    Errors survive pickling (worker processes, Ray) whatever their constructor's signature.

    Examples
    --------
    >>> import pickle
    >>> e = pickle.loads(pickle.dumps(ParameterError("length_km", -5, ">= 0")))
    >>> str(e), e.value
    ('length_km: must be >= 0, got -5', -5)
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ParameterError(QflError, ValueError):
    """A parameter is outside its allowed range.

    Parameters
    ----------
    name : str
        The parameter's name or dotted path (``"detector.efficiency"``).
    value : object
        The value that was given.
    allowed : str
        What is allowed, phrased to follow "must be" (``"in (0, 1]"``).

    Examples
    --------
    >>> str(ParameterError("length_km", -5, ">= 0"))
    'length_km: must be >= 0, got -5'
    """

    def __init__(self, name: str, value: Any, allowed: str) -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{name}: must be {allowed}, got {value!r}")


class UnknownNameError(ParameterError):
    """A name (preset, protocol, loss, method...) that is not among the known ones.

    Examples
    --------
    >>> str(UnknownNameError("preset", "gys", ["gys-2004", "toshiba-2018"]))
    "preset: must be one of 'gys-2004', 'toshiba-2018', got 'gys'"
    """

    def __init__(self, name: str, value: Any, choices: list[str] | tuple[str, ...]) -> None:
        self.choices = tuple(choices)
        super().__init__(name, value, "one of " + ", ".join(repr(c) for c in self.choices))
