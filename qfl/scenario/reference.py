"""The schema for readers: JSON Schema (editor completion) and the Markdown field reference."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from qfl.scenario.base import _model_in
from qfl.scenario.document import Scenario

__all__ = ["scenario_json_schema", "scenario_reference"]


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files (for editor completion)."""
    return Scenario.model_json_schema()


def _type_text(ann: Any) -> str:
    """A field's type as a reader wants it: the allowed values, the number's range."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        bounds = []
        for meta in args[1:]:
            for m in getattr(meta, "metadata", [meta]):
                for op, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                    if getattr(m, op, None) is not None:
                        bounds.append(f"{sym} {getattr(m, op):g}")
        return _type_text(args[0]) + (f" ({', '.join(bounds)})" if bounds else "")
    if origin is Literal:
        return " / ".join(f"`{v}`" for v in args)
    if origin in (Union, UnionType):
        parts = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is tuple:
        return f"list of {_type_text(args[0])}"
    if origin is dict:
        return "mapping"
    names = {float: "number", int: "integer", str: "text", bool: "true / false"}
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "section"
    return names.get(ann, getattr(ann, "__name__", str(ann)))


def _default_text(info: Any) -> str:
    if info.is_required():
        return "required"
    d = info.get_default(call_default_factory=True)
    if isinstance(d, BaseModel) or d in ((), {}):
        return "—"
    if d == "":
        return "(empty)"
    return f"`{d}`" if d is not None else "null"


def scenario_reference() -> str:
    """``scenarios/REFERENCE.md``: every scenario field with its type or allowed values, its
    default and what it changes (from the schema's descriptions; a test keeps the file in
    sync: ``qfl schema --markdown -o scenarios/REFERENCE.md``)."""
    lines = [
        "# Scenario file reference",
        "",
        "Generated from the schema (`qfl schema --markdown`); every field of a scenario YAML "
        "file, by section. Unknown keys are refused.",
    ]
    sections: list[tuple[str, type[BaseModel]]] = [("(top level)", Scenario)]
    done: set[type[BaseModel]] = set()
    while sections:
        title, model = sections.pop(0)
        if model in done:
            continue
        done.add(model)
        lines += ["", f"## {title}", "", "| field | type / allowed | default | what it does |"]
        lines.append("|---|---|---|---|")
        for name, info in model.model_fields.items():
            desc = " ".join((info.description or "").split())
            typ = _type_text(Annotated[info.annotation, *info.metadata] if info.metadata
                             else info.annotation).replace("|", "or")  # fmt: skip
            lines.append(f"| `{name}` | {typ} | {_default_text(info)} | {desc} |")
            sub = _model_in(info.annotation)
            if sub is not None:
                sections.append((f"{title.replace('(top level)', '').strip('.')}.{name}".strip("."),
                                 sub))  # fmt: skip
    return "\n".join(lines) + "\n"
