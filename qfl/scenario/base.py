"""What every section of the schema shares: the error, the frozen base model, number types.

Every schema error is a :class:`ScenarioError` naming the YAML path of the bad field, the
value and what is allowed (``topology.links[3].length_km: must be >= 0, got -5``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field

from qkd.errors import QflError

__all__ = ["NonNegative", "Positive", "ScenarioError", "check_folder_name"]

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class ScenarioError(QflError, ValueError):
    """A scenario file (or an override) is invalid.

    Parameters
    ----------
    path : str
        The YAML path of the bad field (``topology.links[3].length_km``), or the file.
    message : str
        What is wrong: the value and what is allowed.
    """

    __module__ = "qfl.scenario"  # its public home (reprs, pickles, doctests)

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from (path, message) when pickled: worker processes, Ray, SimPy.
        return (type(self), (self.path, self.message))


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_folder_name(name: str, where: str) -> str:
    """Check that ``name`` can name a folder under an output directory: one path component
    of letters, digits, ``_``, ``.`` and ``-``, not starting with a dot (so not ``.`` or
    ``..``, which would write outside the output directory).

    Raises
    ------
    ScenarioError
        On ``where`` (the YAML path or option that carried the name).

    Examples
    --------
    >>> check_folder_name("metro-2", "name")
    'metro-2'
    >>> check_folder_name("..", "name")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qfl.scenario.ScenarioError: name: must be one folder name (...), got '..'
    """
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 200:
        shown = repr(name) if len(str(name)) <= 80 else repr(str(name)[:77] + "...")
        raise ScenarioError(
            where,
            "must be one folder name (letters, digits, '_', '.', '-', not starting with '.'), "
            f"got {shown}",
        )
    return name


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
