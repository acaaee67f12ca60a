"""Matchers: Alertmanager's ``=``, ``!=``, ``=~``, ``!~`` plus numeric ``>``, ``>=``, ``<``, ``<=``.

A matcher is written as one string, ``name OP value``, the value optionally double-quoted.
Regexes are fully anchored (``=~"shop"`` matches ``shop`` only, not ``shopping``) and compiled by
RE2, which runs in linear time: no rule can hang the pipeline. A missing label matches as the empty
string (as in Alertmanager); a numeric comparison on a missing or non-numeric value is false.

>>> m = parse_matcher('service=~"shop|pay.*"')
>>> m.matches({"service": "payments"}), m.matches({"service": "shopping"})
(True, False)
>>> parse_matcher("values.duration_s>=600").matches({"values.duration_s": "612.5"})
True
>>> parse_matcher('team!=""').matches({})
False
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

__all__ = ["OPERATORS", "Matcher", "compile_regex", "parse_matcher"]

#: Operators, longest first so that ``>=`` is not read as ``>``.
OPERATORS = ("=~", "!~", "!=", ">=", "<=", "=", ">", "<")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

_CACHE_SIZE = 4096
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


def compile_regex(pattern: str) -> Any:
    """Compile ``pattern`` with RE2, anchored at both ends. Raises ``ValueError`` quoting it."""
    try:
        re2.compile(pattern, options=_OPTIONS)  # errors then quote the pattern as written
        return re2.compile(f"^(?:{pattern})$", options=_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"invalid regex {pattern!r}: {detail}") from exc


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Matcher:
    """One compiled matcher. ``matches(values)`` looks ``name`` up in a flat string mapping."""

    name: str
    op: str
    value: str
    _test: Callable[[str | None], bool] = field(repr=False, compare=False, default=lambda _v: False)

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'

    def matches(self, values: Mapping[str, str]) -> bool:
        return self._test(values.get(self.name))


def _build(name: str, op: str, value: str) -> Matcher:
    test: Callable[[str | None], bool]
    if op == "=":
        test = lambda v: (v or "") == value  # noqa: E731
    elif op == "!=":
        test = lambda v: (v or "") != value  # noqa: E731
    elif op in ("=~", "!~"):
        rx = compile_regex(value)
        want = op == "=~"
        seen: dict[str, bool] = {}  # label values repeat a lot: remember the last few thousand answers

        def test(v: str | None) -> bool:
            s = v or ""
            hit = seen.get(s)
            if hit is None:
                hit = rx.match(s) is not None
                if len(seen) >= _CACHE_SIZE:
                    seen.clear()
                if len(s) <= 256:
                    seen[s] = hit
            return hit == want
    else:
        bound = _number(value)
        if bound is None:
            raise ValueError(f"{op!r} needs a number, got {value!r}")
        cmp: Callable[[float, float], bool] = {
            ">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__,
        }[op]

        def test(v: str | None) -> bool:
            x = _number(v) if v is not None else None
            return x is not None and cmp(x, bound)

    return Matcher(name, op, value, test)


def parse_matcher(text: str) -> Matcher:
    """Parse ``name OP value``. Raises ``ValueError`` with the bad text quoted."""
    if not isinstance(text, str):
        raise ValueError(f"a matcher must be a string like 'service=\"shop\"', got {text!r}")
    s = text.strip()
    i = 0
    while i < len(s) and s[i] in _NAME_CHARS:
        i += 1
    name = s[:i]
    rest = s[i:].lstrip()
    op = next((o for o in OPERATORS if rest.startswith(o)), None)
    if not name or op is None:
        raise ValueError(
            f"cannot parse matcher {text!r}: expected NAME OP VALUE with OP one of {' '.join(OPERATORS)}"
        )
    raw = rest[len(op):].strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    elif raw.startswith('"'):
        raise ValueError(f"cannot parse matcher {text!r}: unterminated quote")
    return _build(name, op, raw)
