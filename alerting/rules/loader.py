"""Load rule files strictly and report **every** problem, each as ``file:line: yaml.path: message``.

``load_rules(paths)`` reads files and folders (``*.yaml``/``*.yml``; folders named ``tests`` hold
rule tests and are skipped), validates each file with the pydantic models, then checks what spans
files: duplicate names, more than one ``route``, undefined receivers, time intervals and rules.
The references are checked on the raw YAML, so a file with a bad regex still gets its undefined
receivers reported. Any problem raises :class:`~opsradar.errors.RuleError` with all of them.

>>> rs = load_texts({"a.yaml": "receivers: [{name: sre}]\\nroute: {receiver: sre}\\n"})
>>> [r.name for r in rs.receivers]
['sre']
>>> try:
...     load_texts({"b.yaml": "route: {receiver: nobody}\\n"})
... except RuleError as exc:
...     print(exc.problems[0])
b.yaml:1: route.receiver: undefined receiver 'nobody'
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from opsradar.alerting.rules.model import (
    EventRule,
    FilterRule,
    InhibitRule,
    Receiver,
    Route,
    RuleFile,
    SilenceSpec,
    TimeInterval,
)
from opsradar.config import validation_message
from opsradar.errors import Problem, RuleError
from opsradar.yamlutil import YamlPath, format_path, line_of, load_with_lines

__all__ = ["RuleSet", "collect_files", "load_rules", "load_texts"]

_TRIGGER_TYPES = {"pattern", "frequency", "new_term", "flatline", "sequence"}


@dataclass
class RuleSet:
    """The validated union of rule files, in file order. ``texts`` keeps each file's source."""

    texts: dict[str, str] = field(default_factory=dict)
    receivers: list[Receiver] = field(default_factory=list)
    time_intervals: list[TimeInterval] = field(default_factory=list)
    route: Route | None = None
    filters: list[FilterRule] = field(default_factory=list)
    event_rules: list[EventRule] = field(default_factory=list)
    silences: list[tuple[str, SilenceSpec]] = field(default_factory=list)
    inhibit_rules: list[InhibitRule] = field(default_factory=list)

    @property
    def rule_names(self) -> list[str]:
        return [r.name for r in self.filters] + [r.name for r in self.event_rules]

    @property
    def digest(self) -> str:
        """A short hash of the files' contents: two rule sets with the same digest are the same."""
        h = hashlib.sha256()
        for name in sorted(self.texts):
            h.update(name.encode() + b"\0" + self.texts[name].encode() + b"\0")
        return h.hexdigest()[:12]


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Problem]]:
    """The rule files under ``paths`` (sorted within each folder), and problems for missing paths."""
    files: list[Path] = []
    problems: list[Problem] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*")
                if f.suffix in (".yaml", ".yml") and f.is_file() and "tests" not in f.relative_to(p).parts[:-1]
            )
            files += found
        elif p.is_file():
            files.append(p)
        else:
            problems.append(Problem("", "no such file or directory", file=str(p)))
    return files, problems


def _clean_loc(loc: tuple[Any, ...]) -> YamlPath:
    # A discriminated union puts the tag in the location: event_rules[0].trigger.frequency.count
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and i > 0 and loc[i - 1] == "trigger" and part in _TRIGGER_TYPES:
            continue
        if isinstance(part, str) and part.startswith("function-"):
            continue
        out.append(part)
    return tuple(out)


def _message(err: Any) -> str:
    if err["type"] == "union_tag_invalid":
        bad = err.get("input")
        tag = bad.get("type") if isinstance(bad, dict) else bad
        return f"unknown trigger type {tag!r}: use one of {', '.join(sorted(_TRIGGER_TYPES))}"
    return validation_message(err)


def _parse_file(name: str, text: str) -> tuple[Any, dict[YamlPath, int], RuleFile | None, list[Problem]]:
    try:
        data, lines = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, {}, None, [Problem("", f"invalid YAML: {problem}", file=name, line=line)]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, lines, None, [Problem("", "the top level must be a mapping", file=name, line=1)]
    try:
        return data, lines, RuleFile.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _clean_loc(tuple(err["loc"]))
            problems.append(Problem(format_path(loc), _message(err), file=name, line=line_of(lines, loc)))
        return data, lines, None, problems


def _items(data: Any, section: str) -> list[tuple[int, dict[str, Any]]]:
    seq = data.get(section) if isinstance(data, dict) else None
    if not isinstance(seq, list):
        return []
    return [(i, item) for i, item in enumerate(seq) if isinstance(item, dict)]


def _names(value: Any) -> list[tuple[int | None, str]]:
    if isinstance(value, str):
        return [(None, value)]
    if isinstance(value, list):
        return [(i, v) for i, v in enumerate(value) if isinstance(v, str)]
    return []


def _walk_routes(route: Any, path: YamlPath) -> Iterable[tuple[YamlPath, dict[str, Any]]]:
    if isinstance(route, dict):
        yield path, route
        for i, child in enumerate(route.get("routes") or [] if isinstance(route.get("routes"), list) else []):
            yield from _walk_routes(child, (*path, "routes", i))


def _cross_check(parsed: list[tuple[str, Any, dict[YamlPath, int]]]) -> list[Problem]:
    problems: list[Problem] = []
    defined: dict[str, dict[str, tuple[str, int | None]]] = {"receiver": {}, "time interval": {}, "rule": {}}
    sections = {"receiver": ["receivers"], "time interval": ["time_intervals"], "rule": ["filters", "event_rules"]}

    def add(file: str, lines: dict[YamlPath, int], path: YamlPath, message: str) -> None:
        problems.append(Problem(format_path(path), message, file=file, line=line_of(lines, path)))

    for file, data, lines in parsed:
        for kind, secs in sections.items():
            for sec in secs:
                for i, item in _items(data, sec):
                    name = item.get("name")
                    if not isinstance(name, str):
                        continue
                    if name in defined[kind]:
                        f0, line0 = defined[kind][name]
                        add(file, lines, (sec, i, "name"), f"duplicate {kind} name {name!r} (first defined at {f0}:{line0})")
                    else:
                        defined[kind][name] = (file, line_of(lines, (sec, i, "name")))

    route_files = [(f, lines) for f, data, lines in parsed if isinstance(data, dict) and data.get("route") is not None]
    for f, lines in route_files[1:]:
        add(f, lines, ("route",), f"a second routing tree (the first is in {route_files[0][0]}): define 'route' once")

    def ref(file: str, lines: dict[YamlPath, int], path: YamlPath, value: Any, kind: str) -> None:
        for i, name in _names(value):
            if name not in defined[kind]:
                p = path if i is None else (*path, i)
                add(file, lines, p, f"undefined {kind} {name!r}")

    for file, data, lines in parsed:
        if not isinstance(data, dict):
            continue
        for path, node in _walk_routes(data.get("route"), ("route",)):
            ref(file, lines, (*path, "receiver"), node.get("receiver"), "receiver")
        for sec in ("filters", "event_rules"):
            for i, item in _items(data, sec):
                for key in ("active_time_intervals", "outside_time_intervals"):
                    ref(file, lines, (sec, i, key), item.get(key), "time interval")
                if sec == "filters":
                    ref(file, lines, (sec, i, "receivers"), item.get("receivers"), "receiver")
        for i, item in _items(data, "inhibit_rules"):
            ref(file, lines, ("inhibit_rules", i, "source_rules"), item.get("source_rules"), "rule")
    return problems


def load_texts(texts: dict[str, str]) -> RuleSet:
    """Validate rule files given as ``{file name: text}``; raises :class:`RuleError` with every problem."""
    problems: list[Problem] = []
    parsed: list[tuple[str, Any, dict[YamlPath, int]]] = []
    models: list[tuple[str, RuleFile]] = []
    for name, text in texts.items():
        data, lines, model, probs = _parse_file(name, text)
        problems += probs
        parsed.append((name, data, lines))
        if model is not None:
            models.append((name, model))
    problems += _cross_check(parsed)
    if problems:
        raise RuleError(sorted(problems, key=lambda p: (p.file or "", p.line or 0, p.path)))
    rs = RuleSet(texts=dict(texts))
    for name, m in models:
        rs.receivers += m.receivers
        rs.time_intervals += m.time_intervals
        rs.route = rs.route or m.route
        rs.filters += m.filters
        rs.event_rules += m.event_rules
        rs.silences += [(f"{name}#{i}", s) for i, s in enumerate(m.silences)]
        rs.inhibit_rules += m.inhibit_rules
    return rs


def _read(paths: Sequence[str | os.PathLike[str]]) -> tuple[dict[str, str], list[Problem]]:
    files, problems = collect_files(paths)
    texts: dict[str, str] = {}
    for f in files:
        try:
            texts[str(f)] = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem("", f"cannot read the file: {exc}", file=str(f)))
    return texts, problems


def read_texts(paths: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    """Read the rule files under ``paths``; raises :class:`RuleError` for missing or unreadable ones."""
    texts, problems = _read(paths)
    if problems:
        raise RuleError(problems)
    return texts


def load_rules(paths: Sequence[str | os.PathLike[str]]) -> RuleSet:
    """Load and validate the rule files under ``paths``; raises :class:`RuleError` with every problem."""
    texts, problems = _read(paths)
    try:
        rs = load_texts(texts)
    except RuleError as exc:
        problems += exc.problems
    if problems:
        raise RuleError(sorted(problems, key=lambda p: (p.file or "", p.line or 0, p.path)))
    return rs
