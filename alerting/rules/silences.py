"""Silences: matchers with a start and an end, a creator and a comment. They expire by themselves.

Silences come from the rule files (read-only, replaced on each reload) and from the API or Slack
through :class:`SilenceStore` (``add`` / ``list`` / ``expire``). API silences are persisted in the
store as one checkpoint blob (key ``alerting/silences``) and every change is audited
(``silence.add``, ``silence.expire``), so they survive a restart. Replicas sharing a store re-read
the blob before each change and every ``refresh_interval`` seconds (two replicas changing
silences in the same instant may still lose one change: the blob is last-writer-wins).

>>> from datetime import datetime, timedelta, timezone
>>> t = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
>>> silences = SilenceStore()
>>> s = silences.add(['service="shop"'], starts_at=t, ends_at=t + timedelta(hours=1),
...                  created_by="ana", comment="DB migration", now=t)
>>> silences.silenced_by({"service": "shop"}, t + timedelta(minutes=5)) == [s.id]
True
>>> silences.silenced_by({"service": "shop"}, t + timedelta(hours=2))
[]
"""

from __future__ import annotations

import builtins
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opsradar.alerting.rules.matchers import Matcher, parse_matcher
from opsradar.alerting.rules.model import SilenceSpec
from opsradar.models import utcnow
from opsradar.store import Store

__all__ = ["CHECKPOINT_KEY", "Silence", "SilenceStore"]

CHECKPOINT_KEY = "alerting/silences"


@dataclass
class Silence:
    id: str
    matchers: list[str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    origin: str = "api"
    _compiled: list[Matcher] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._compiled = [parse_matcher(m) for m in self.matchers]

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self._compiled)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_compiled")
        d["starts_at"] = self.starts_at.isoformat()
        d["ends_at"] = self.ends_at.isoformat()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Silence:
        return cls(**{**d, "starts_at": datetime.fromisoformat(d["starts_at"]),
                      "ends_at": datetime.fromisoformat(d["ends_at"])})


class SilenceStore:
    """API and Slack silences (persisted when given a store) plus the rule files' silences."""

    def __init__(self, store: Store | None = None, *, retention: timedelta = timedelta(days=7),
                 refresh_interval: float = 10.0) -> None:
        self.store = store
        self.retention = retention
        self.refresh_interval = refresh_interval
        self._lock = threading.RLock()
        self._api: dict[str, Silence] = {}
        self._yaml: list[Silence] = []
        self._refreshed = 0.0
        self.refresh()

    def refresh(self) -> None:
        """Re-read the API silences from the store (other replicas may have changed them)."""
        if self.store is None:
            return
        got = self.store.load_checkpoint(CHECKPOINT_KEY)
        with self._lock:
            self._api = {}
            for d in json.loads(got[0]) if got is not None else []:
                s = Silence.from_json(d)
                self._api[s.id] = s
            self._refreshed = time.monotonic()

    def _maybe_refresh(self) -> None:
        if self.store is not None and time.monotonic() - self._refreshed >= self.refresh_interval:
            self.refresh()

    def _save(self) -> None:
        if self.store is not None:
            blob = json.dumps([s.to_json() for s in self._api.values()]).encode()
            self.store.save_checkpoint(CHECKPOINT_KEY, blob)

    def set_from_rules(self, silences: builtins.list[tuple[str, SilenceSpec]]) -> None:
        """Replace the rule files' silences (on each successful reload)."""
        with self._lock:
            self._yaml = [Silence(id=f"yaml:{sid}", matchers=list(s.matchers), starts_at=s.starts_at,
                                  ends_at=s.ends_at, created_by=s.created_by, comment=s.comment, origin="yaml")
                          for sid, s in silences]

    def add(self, matchers: builtins.list[str], *, starts_at: datetime | None = None, ends_at: datetime,
            created_by: str, comment: str, origin: str = "api", now: datetime | None = None) -> Silence:
        """Add a silence; ``ValueError`` quoting the bad matcher or times."""
        now = now or utcnow()
        starts_at = starts_at or now
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        if ends_at <= starts_at:
            raise ValueError(f"ends_at {ends_at.isoformat()} is not after starts_at {starts_at.isoformat()}")
        if not created_by or not comment:
            raise ValueError("a silence needs created_by and a comment")
        s = Silence(id=uuid.uuid4().hex[:12], matchers=list(matchers), starts_at=starts_at, ends_at=ends_at,
                    created_by=created_by, comment=comment, origin=origin)
        with self._lock:
            self.refresh()
            self._gc(now)
            self._api[s.id] = s
            self._save()
        if self.store is not None:
            self.store.audit(created_by, "silence.add", s.id, s.to_json())
        return s

    def expire(self, silence_id: str, *, actor: str, now: datetime | None = None) -> Silence:
        """End a silence now. ``KeyError`` if there is no such API silence."""
        now = now or utcnow()
        with self._lock:
            self.refresh()
            s = self._api.get(silence_id)
            if s is None:
                raise KeyError(f"no silence {silence_id!r} (rule-file silences are removed by editing the file)")
            s.ends_at = min(s.ends_at, now)
            s.starts_at = min(s.starts_at, s.ends_at)
            self._save()
        if self.store is not None:
            self.store.audit(actor, "silence.expire", silence_id, {"ends_at": s.ends_at.isoformat()})
        return s

    def list(self, *, now: datetime | None = None, include_expired: bool = False) -> builtins.list[Silence]:
        """Every silence (rule files first), active or pending unless ``include_expired``."""
        now = now or utcnow()
        self._maybe_refresh()
        with self._lock:
            every = self._yaml + sorted(self._api.values(), key=lambda s: s.starts_at)
        return [s for s in every if include_expired or s.ends_at > now]

    def silenced_by(self, labels: Mapping[str, str], now: datetime) -> builtins.list[str]:
        """The ids of the silences active at ``now`` that match ``labels``."""
        self._maybe_refresh()
        with self._lock:
            every = self._yaml + list(self._api.values())
        return [s.id for s in every if s.active(now) and s.matches(labels)]

    def _gc(self, now: datetime) -> None:
        for sid in [sid for sid, s in self._api.items() if s.ends_at + self.retention < now]:
            del self._api[sid]
