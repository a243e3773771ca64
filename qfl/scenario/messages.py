"""pydantic's validation errors as one line: the YAML path, the value, what is allowed."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from qfl.scenario.base import ScenarioError, _model_in

__all__: list[str] = []

_UNION_TAGS = {"float", "int", "str", "bool", "none", "list", "tuple", "dict"}


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """``loc`` without pydantic's union-member and validator tags (``constrained-float``).

    A key of a mapping field (``qkd.systems.my-system``) is kept whatever its spelling.
    """
    out: list[int | str] = []
    keyed = False
    for p in loc:
        if keyed or isinstance(p, int) or (str(p).isidentifier() and str(p) not in _UNION_TAGS):
            out.append(p)
        keyed = not keyed and str(p) in _MAPPING_FIELDS
    return tuple(out)


_MAPPING_FIELDS = {"systems"}  # fields of type dict[str, Model]: the next part is a key


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in _clean_loc(loc):
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _allowed_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model that holds the (unknown) key at ``loc``."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            continue  # a key of a mapping field (qkd.systems.<name>)
        model = None if info is None else _model_in(info.annotation)
    return list(model.model_fields) if model is not None else []


def _description(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The schema's description of the field at ``loc`` ('' if none)."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            continue  # a key of a mapping field (qkd.systems.<name>)
        model = None if info is None else _model_in(info.annotation)
    info = model.model_fields.get(str(loc[-1])) if model is not None and loc else None
    return " ".join((info.description or "").split()) if info is not None else ""


# pydantic error types -> what is allowed, phrased to follow the path
_TYPE_MESSAGES = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be finite",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a bad 1 MB list is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"[:5]


def _format_error(root: type[BaseModel], err: Mapping[str, Any]) -> tuple[str, str]:
    loc = _clean_loc(tuple(err.get("loc", ())))
    path = _loc_to_path(loc)
    typ = str(err.get("type", ""))
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if typ == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = _allowed_keys(root, loc)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return path, f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}"
    if typ == "missing":
        if loc and isinstance(loc[-1], int):  # a tuple with too few items
            return _loc_to_path(loc[:-1]), f"must have {loc[-1] + 1} items, got {_short(value)}"
        about = _description(root, loc)
        return path, "missing; this field is required" + (f" ({about})" if about else "")
    if typ in _TYPE_MESSAGES:
        msg = _TYPE_MESSAGES[typ]
        if typ == "model_type" and ctx.get("class_name"):
            keys = list(_model_fields(root, str(ctx["class_name"])))
            if keys:
                msg += f" with keys {', '.join(keys)}"
        return path, f"{msg}, got {_short(value)}"
    if typ == "string_pattern_mismatch":
        return path, f"must match the pattern {ctx.get('pattern')}, got {_short(value)}"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    msg = msg.replace("Input should be", "must be").replace("input should be", "must be")
    msg = msg.replace("String should", "must").replace("Tuple should", "must")
    for words, sym in _COMPARISONS:
        msg = msg.replace(words, sym)
    if msg:
        msg = msg[0].lower() + msg[1:]
    if typ in _BOUNDS and isinstance(value, str):
        # a number YAML 1.1 read as text (``1e308``: no dot, no exponent sign), compared as
        # a number: shown as written
        msg = f"{msg}, got {_short(value)[1:-1]}"
    elif not isinstance(value, dict | list):
        msg = f"{msg}, got {_short(value)}" if msg else f"got {_short(value)}"
    elif typ == "too_long" or typ == "too_short":
        msg = f"{msg.split(' after validation')[0]}, got {_short(value)}"
    return path, msg


def _model_fields(root: type[BaseModel], class_name: str) -> list[str]:
    stack: list[type[BaseModel]] = [root]
    seen: set[type[BaseModel]] = set()
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        if model.__name__ == class_name:
            return list(model.model_fields)
        for info in model.model_fields.values():
            sub = _model_in(info.annotation)
            if sub is not None:
                stack.append(sub)
    return []


_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}

_COMPARISONS = (
    ("greater than or equal to", ">="),
    ("less than or equal to", "<="),
    ("greater than", ">"),
    ("less than", "<"),
)


def _from_validation_error(exc: ValidationError, root: type[BaseModel]) -> ScenarioError:
    """One :class:`ScenarioError` for ``exc``, raised validating the model ``root`` (the
    first error, with the members of a union merged and the others counted)."""
    errors = exc.errors()
    path, msg = _format_error(root, errors[0])
    same = [_format_error(root, e)[1] for e in errors[1:] if _format_error(root, e)[0] == path]
    if same:  # the members of a union (``3.0`` or ``"adaptive"``): one line for all
        got = msg.rpartition(", got ")[2]
        options = [m.rpartition(", got ")[0].removeprefix("must be ") for m in [msg, *same]]
        msg = f"must be {' or '.join(options)}, got {got}"
    more = len(errors) - 1 - len(same)
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return ScenarioError(path, msg)
