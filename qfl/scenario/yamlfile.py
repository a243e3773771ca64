"""Reading a scenario or sweep file: bounded size, plain data, no alias bombs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qfl.scenario.base import ScenarioError

__all__ = ["MAX_FILE_BYTES", "MAX_YAML_VALUES", "load_yaml", "read_text"]

MAX_FILE_BYTES = 1 << 20
"""Largest scenario or sweep file read (1 MiB; the shipped ones are a few KiB)."""
MAX_YAML_VALUES = 100_000
"""Most values a YAML document may expand to, aliases counted at every use."""


def load_yaml(text: str, source: str) -> Any:
    r"""Parse one YAML document safely: plain data only (the C loader where present), at most
    :data:`MAX_FILE_BYTES`, and at most :data:`MAX_YAML_VALUES` values once aliases are
    expanded (an "alias bomb" of a few lines would otherwise expand to gigabytes).

    Raises
    ------
    ScenarioError
        On ``source``: malformed YAML (with its line and column), too large, too many values.

    Examples
    --------
    >>> load_yaml("a: &x [1, 2]\nb: *x", "doc")
    {'a': [1, 2], 'b': [1, 2]}
    >>> bomb = "a: &a [x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}]\n"
    ...     for p, c in zip("abcdefghijklmnopqrst", "bcdefghijklmnopqrstu"))
    >>> load_yaml(bomb, "doc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qfl.scenario.ScenarioError: doc: the YAML expands to more than 100000 values ...
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise ScenarioError(source, f"{size} bytes; a scenario or sweep file may hold at most "
                            f"{MAX_FILE_BYTES} bytes")  # fmt: skip
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_values(node) > MAX_YAML_VALUES:
            raise ScenarioError(
                source,
                f"the YAML expands to more than {MAX_YAML_VALUES} values (anchors and aliases "
                "repeated inside each other); write the values out",
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ScenarioError(source, f"malformed YAML at {where}: {problem}") from None
    finally:
        loader.dispose()


def _expanded_values(root: yaml.Node) -> int:
    """How many values the node graph holds with every alias expanded (a recursive alias:
    infinitely many). Linear in the number of distinct nodes."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            size[id(node)] = min(1 + sum(size[id(c)] for c in children), MAX_YAML_VALUES + 1)
            continue
        if id(node) in size:
            continue
        if any(size.get(id(c)) == -1 for c in children) or size.get(id(node)) == -1:
            return MAX_YAML_VALUES + 1  # an alias to an enclosing node: a recursive document
        size[id(node)] = -1  # in progress
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)]


def read_text(path: Path) -> str:
    """A scenario or sweep file's text; a missing, unreadable, too large or non-UTF-8 file
    is a :class:`ScenarioError` on the file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError(str(path), f"{path.stat().st_size} bytes; a scenario or sweep "
                                f"file may hold at most {MAX_FILE_BYTES} bytes")  # fmt: skip
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), f"cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "not a text file (it is not UTF-8)") from None
