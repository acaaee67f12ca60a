"""Hot reload: :class:`RuleManager` keeps the rules in force and swaps them atomically.

A reload (file change, SIGHUP or an API call) validates the files first; one that fails is
rejected **as a whole**: the running engine stays, the error is kept (``last_error``), logged and
counted (``opsradar_rules_reloads_total{outcome="rejected"}``,
``opsradar_rules_last_reload_successful`` 0). A successful reload builds a new engine
(adopting the state of unchanged rules), swaps it in one assignment, and is audited in the store
(``rules.reload``: who, when, the unified diff of the files). The files of the rule set in force
are snapshotted in the store (checkpoint ``rules/in-force``): that is what
``opsradar rules backtest`` compares candidate rules with.

``checkpoint()`` saves the engine's runtime state (checkpoint ``rules/state``); a new manager on
the same store restores it for every event rule whose definition did not change.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from opsradar.alerting.rules.engine import RuleEngine
from opsradar.alerting.rules.loader import RuleSet, collect_files, load_texts, read_texts
from opsradar.alerting.rules.metrics import LAST_RELOAD_OK, RELOADS, RuleStats
from opsradar.alerting.rules.silences import SilenceStore
from opsradar.config import Config, EntityGraph
from opsradar.errors import RuleError
from opsradar.models import utcnow
from opsradar.store import Store

__all__ = ["IN_FORCE_KEY", "STATE_KEY", "ReloadResult", "RuleManager", "diff_texts", "load_in_force"]

log = logging.getLogger(__name__)
IN_FORCE_KEY = "rules/in-force"
STATE_KEY = "rules/state"


def diff_texts(old: dict[str, str], new: dict[str, str]) -> str:
    """A unified diff between two ``{file: text}`` rule sets."""
    out: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, ""), new.get(name, "")
        if a != b:
            out += difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                        fromfile=f"a/{name}" if name in old else "/dev/null",
                                        tofile=f"b/{name}" if name in new else "/dev/null")
    return "".join(out)


def load_in_force(store: Store) -> dict[str, str] | None:
    """The files of the rule set last loaded successfully by a running opsradar, if any."""
    got = store.load_checkpoint(IN_FORCE_KEY)
    return json.loads(got[0])["files"] if got else None


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    changed: bool
    digest: str
    error: RuleError | None = None
    diff: str = ""


class RuleManager:
    """The rules in force, reloadable. ``engine`` is always a complete, validated rule set."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], *, store: Store | None = None,
                 graph: EntityGraph | None = None, silences: SilenceStore | None = None,
                 stats: RuleStats | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.store = store
        self.graph = graph
        self.silences = silences or SilenceStore(store)
        self.stats = stats or RuleStats()
        self.last_error: RuleError | None = None
        self.last_reload: datetime | None = None
        self._lock = threading.Lock()
        self._mtimes: dict[str, float] = {}
        self._stop = threading.Event()
        texts = read_texts(self.paths)
        self.engine = self._build(load_texts(texts), None)  # the first load must succeed: raises RuleError
        if store is not None:
            saved = store.load_checkpoint(STATE_KEY)
            if saved is not None:
                restored = self.engine.restore(saved[0])
                log.info("rule state restored for %d event rules", len(restored))
        self._mtimes = self._scan()
        self._record(texts, actor="startup", diff="")

    @classmethod
    def from_config(cls, cfg: Config, store: Store | None = None, *, watch: bool | None = None) -> RuleManager:
        """The manager for ``cfg.rules.paths`` with the config's entity graph; watches the files when
        ``cfg.rules.watch`` (or ``watch``) is true."""
        mgr = cls(cfg.rules.paths, store=store, graph=cfg.entities)
        if cfg.rules.watch if watch is None else watch:
            mgr.watch()
        return mgr

    def _build(self, rules: RuleSet, previous: RuleEngine | None) -> RuleEngine:
        return RuleEngine(rules, graph=self.graph, silences=self.silences, stats=self.stats, previous=previous)

    def _scan(self) -> dict[str, float]:
        files, _ = collect_files(self.paths)
        out = {}
        for f in files:
            try:
                out[str(f)] = f.stat().st_mtime_ns
            except OSError:
                continue
        return out

    def _record(self, texts: dict[str, str], *, actor: str, diff: str) -> None:
        if self.store is None:
            return
        digest = self.engine.digest
        self.store.save_checkpoint(IN_FORCE_KEY, json.dumps({"digest": digest, "files": texts}).encode(),
                                   version=digest)
        if diff or actor == "startup":
            self.store.audit(actor, "rules.reload", digest, {"diff": diff, "files": sorted(texts)})

    def reload(self, *, actor: str = "api") -> ReloadResult:
        """Validate and swap in the rule files; on any error keep the running rules."""
        with self._lock:
            old = self.engine.rules.texts
            try:
                texts = read_texts(self.paths)
                rules = load_texts(texts)
                engine = self._build(rules, self.engine)
            except RuleError as exc:
                self.last_error = exc
                RELOADS.labels(outcome="rejected").inc()
                LAST_RELOAD_OK.set(0)
                log.error("rules reload rejected (%s); the running rules stay in force:\n%s", actor, exc)
                if self.store is not None:
                    self.store.audit(actor, "rules.reload_rejected", self.engine.digest,
                                     {"problems": [str(p) for p in exc.problems]})
                return ReloadResult(ok=False, changed=False, digest=self.engine.digest, error=exc)
            diff = diff_texts(old, texts)
            self.engine = engine
            self.last_error = None
            self.last_reload = utcnow()
            self._mtimes = self._scan()
            RELOADS.labels(outcome="ok").inc()
            LAST_RELOAD_OK.set(1)
            self._record(texts, actor=actor, diff=diff)
            log.info("rules reloaded by %s: %s", actor, engine.digest)
            return ReloadResult(ok=True, changed=bool(diff), digest=engine.digest, diff=diff)

    def status(self) -> dict[str, Any]:
        """For the API: the rules in force, the last reload, the last rejected reload's problems."""
        return {
            "digest": self.engine.digest,
            "files": sorted(self.engine.rules.texts),
            "rules": self.engine.rule_names,
            "last_reload": self.last_reload.isoformat() if self.last_reload else None,
            "last_error": [str(p) for p in self.last_error.problems] if self.last_error else None,
            "stats": self.stats.snapshot(self.engine.rule_names),
        }

    def checkpoint(self) -> None:
        """Save the engine's runtime state in the store (restored by the next start)."""
        if self.store is not None:
            self.store.save_checkpoint(STATE_KEY, self.engine.snapshot(), version=self.engine.digest)

    def reload_if_changed(self, *, actor: str = "file-watch") -> ReloadResult | None:
        """Reload when a rule file was added, removed or modified since the last reload."""
        if self._scan() == self._mtimes:
            return None
        return self.reload(actor=actor)

    def watch(self, interval: float = 2.0) -> threading.Thread:
        """Poll the files in a daemon thread and reload on change. ``stop()`` ends it."""
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reload_if_changed()
                except Exception:  # a watcher must never die
                    log.exception("rule file watcher failed")
        thread = threading.Thread(target=loop, name="rules-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def install_sighup(self) -> None:
        """Reload on SIGHUP (main thread only)."""
        def handler(_sig: int, _frame: FrameType | None) -> None:
            self.reload(actor="sighup")
        signal.signal(signal.SIGHUP, handler)
