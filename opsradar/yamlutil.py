"""YAML loading that remembers where every value came from.

``load_with_lines`` parses with PyYAML's safe loader and returns the data plus a map from each
YAML path (a tuple of keys and indexes) to its 1-based line, so that errors can say
``file:line: a.b[2].c: message``.

>>> data, lines = load_with_lines("a:\\n  b: [1, 2]\\n  c: x\\n")
>>> data
{'a': {'b': [1, 2], 'c': 'x'}}
>>> lines[("a", "c")], format_path(("a", "b", 1))
(3, 'a.b[1]')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["YamlPath", "format_path", "line_of", "load_with_lines"]

YamlPath = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """``("a", "b", 1, "c")`` → ``a.b[1].c``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Loader(yaml.SafeLoader):
    """The safe loader, with duplicate mapping keys rejected."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[arg-type]


def _walk(node: yaml.Node, path: YamlPath, lines: dict[YamlPath, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


def load_with_lines(text: str) -> tuple[Any, dict[YamlPath, int]]:
    """Parse ``text``; return the data and the line of each YAML path.

    Raises ``yaml.YAMLError`` (with a ``problem_mark``) on a syntax error or a duplicate key.
    """
    node = yaml.compose(text, Loader=_Loader)
    if node is None:
        return None, {}
    lines: dict[YamlPath, int] = {}
    _walk(node, (), lines)
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    return data, lines


def line_of(lines: dict[YamlPath, int], path: Sequence[str | int]) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get(())
