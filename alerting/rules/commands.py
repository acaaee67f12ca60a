"""The logic of ``opsradar rules check|test|backtest`` (the CLI only parses arguments).

Each function prints to the given stream and returns the exit code: 0 success, 1 errors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from opsradar.errors import RuleError

if TYPE_CHECKING:
    from opsradar.alerting.rules.backtest import BacktestReport
    from opsradar.config import Config
    from opsradar.store import Store

__all__ = ["backtest_command", "check_command", "run_backtest", "test_command"]


def check_command(paths: Sequence[str | os.PathLike[str]], out: TextIO) -> int:
    """Validate rule files strictly; print every problem as ``file:line: path: message``."""
    from opsradar.alerting.rules.loader import load_rules

    try:
        rs = load_rules(paths or ["rules"])
    except RuleError as exc:
        for p in exc.problems:
            print(p, file=out)
        n = len(exc.problems)
        print(f"{n} error{'s' if n != 1 else ''}", file=out)
        return 1
    print(f"rules OK: {len(rs.texts)} files, {len(rs.filters)} filters, {len(rs.event_rules)} event rules, "
          f"{len(rs.receivers)} receivers, {len(rs.inhibit_rules)} inhibit rules, {len(rs.silences)} silences "
          f"(digest {rs.digest})", file=out)
    return 0


def test_command(files: Sequence[str | os.PathLike[str]], out: TextIO) -> int:
    """Run rule unit tests (default: ``rules/tests/*.yaml``); print failures with a diff."""
    from opsradar.alerting.rules.testing import default_test_files, run_test_files

    targets = list(files) or list(default_test_files())
    if not targets:
        print("no rule test files found (rules/tests/*.yaml)", file=out)
        return 1
    try:
        results = run_test_files(targets)
    except RuleError as exc:
        for p in exc.problems:
            print(p, file=out)
        return 1
    failed = [r for r in results if r.status == "fail"]
    for r in results:
        print(r, file=out)
    if results.untested:
        print(f"warning: no test makes these rules match: {', '.join(results.untested)}", file=out)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed", file=out)
    return 1 if failed else 0


def _time(value: str | datetime | None, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        t = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"--{name}: cannot parse time {value!r}: use ISO 8601, e.g. 2026-03-01T00:00:00Z") from exc
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def run_backtest(store: Store, cand_texts: dict[str, str], *, since: datetime | None, until: datetime | None,
                 cfg: Config, baseline: Sequence[str | os.PathLike[str]] | None = None) -> BacktestReport:
    """Replay ``store``'s history through the candidate rule files (``{name: text}``) and the rules in
    force (the snapshot the owner keeps in the store; else ``baseline``'s files). Raises
    :class:`RuleError` for invalid candidate files. The CLI and ``POST /v1/rules/backtest`` share it."""
    from opsradar.alerting.rules.backtest import backtest, describe
    from opsradar.alerting.rules.loader import load_texts, read_texts
    from opsradar.alerting.rules.reload import load_in_force

    candidate = load_texts(cand_texts)
    in_force_texts = load_in_force(store)
    label = "snapshot in the store"
    if in_force_texts is None and baseline:
        in_force_texts = read_texts(baseline)
        label = f"baseline {', '.join(map(str, baseline))}"
    in_force = load_texts(in_force_texts) if in_force_texts is not None else None
    return backtest(store, candidate, in_force=in_force,
                    in_force_label=f"{describe(in_force_texts, 'no rules (nothing in force yet)')} ({label})"
                    if in_force_texts is not None else "no rules (nothing in force yet)",
                    candidate_label=describe(cand_texts, ""), since=since, until=until, graph=cfg.entities,
                    correlation=cfg.correlation)


def backtest_command(paths: Sequence[str | os.PathLike[str]], *, since: str | datetime | None,
                     until: str | datetime | None,
                     config: Path | None, baseline: Sequence[str | os.PathLike[str]] | None, out: TextIO) -> int:
    """Replay stored history through candidate rules and the rules in force; print the diff."""
    from opsradar.alerting.rules.loader import read_texts
    from opsradar.config import load_config
    from opsradar.store import Store

    try:
        t0, t1 = _time(since, "since"), _time(until, "until")
    except ValueError as exc:
        print(f"error: {exc}", file=out)
        return 2
    cfg = load_config(config, check_secrets=False)
    try:
        cand_texts = read_texts(paths or cfg.rules.paths)
        store = Store(cfg.store.resolved_url())
        try:
            report = run_backtest(store, cand_texts, since=t0, until=t1, cfg=cfg, baseline=baseline)
        finally:
            store.close()
    except RuleError as exc:
        for p in exc.problems:
            print(p, file=out)
        return 1
    print(report.render(), file=out)
    return 0
