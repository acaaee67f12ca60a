"""The ground truth of a simulated world: what was injected, when, where, and which change caused it.

Each :class:`InjectedIncident` says when it started and ended (simulated time), which services,
entities and sources it touched, which signals should end in one incident (``signals``), and its
root-cause change (``root_cause``: every :class:`ChangeRef` listed names the *same* change, e.g. a
commit and the deploy that shipped it; an empty list means no change caused it).

A change is recognised in the pipeline's data by what the collectors keep stable: the git commit
SHA, the Jenkins job and build number, the Jira issue key (see :meth:`ChangeRef.matches_event` and
:meth:`ChangeRef.matches_candidate`).

>>> from datetime import datetime, timezone
>>> from opsradar.models import Event
>>> ref = ChangeRef(source="jenkins", kind="deploy", entity="job:shop-deploy", job="shop-deploy", number=42)
>>> ev = Event.new(source="jenkins", native_id="shop-deploy#42", kind="deploy", entity="job:shop-deploy",
...                ts=datetime(2026, 3, 5, tzinfo=timezone.utc), attrs={"number": 42})
>>> ref.matches_event(ev), ref.matches_candidate({"event_id": ev.id})
(True, True)
>>> ref.matches_candidate({"entity": "job:shop-deploy", "summary": "shop-deploy #41 (SUCCESS)"})
False
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from opsradar.models import Event, UtcDatetime

__all__ = ["ChangeRef", "ExpectedSignal", "GroundTruth", "InjectedIncident"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _scalars(ev: Event) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = list(ev.labels.items()) + list(ev.values.items())
    for k, v in ev.attrs.items():
        if isinstance(v, str | int | float):
            out.append((k, v))
        elif isinstance(v, list) and k in ("shas", "commits", "commit_ids", "changes"):
            out += [(k, x) for x in v if isinstance(x, str)]
    return out


class ChangeRef(_Model):
    """One identity of a change: a commit (repo + SHA), a build or deploy (job + number), a Jira issue."""

    source: str = Field(description="the config source name: git, jenkins or jira in the demo")
    kind: Literal["commit", "deploy", "build", "issue", "release"]
    entity: str = Field(description="qualified entity: repo:x, job:x, project:X")
    summary: str = ""
    ts: UtcDatetime | None = None
    repo: str | None = None
    sha: str | None = None
    job: str | None = None
    number: int | None = None
    key: str | None = None

    def native_ids(self) -> list[str]:
        """The native ids the collectors may give this change (several conventions, all accepted)."""
        if self.sha and self.repo:
            return [f"{self.repo}@{self.sha}", f"{self.repo}:{self.sha}", self.sha]
        if self.job is not None and self.number is not None:
            return [f"{self.job}#{self.number}", f"{self.job}/{self.number}"]
        if self.key:
            return [self.key]
        return []

    def record_ids(self) -> set[str]:
        """The time-free ids (``Event.record_id``) of the records the collectors may give this change;
        ``Event.record_id_of`` maps an event id to one."""
        return {Event.record_id(self.source, n) for n in self.native_ids()}

    def matches_event(self, event: Event) -> bool:
        """Whether ``event`` (from any collector) is this change."""
        if Event.record_id_of(event.id) in self.record_ids():
            return True
        fields = _scalars(event)
        if self.sha:
            return event.entity in (self.entity, f"repo:{self.repo}") and any(
                isinstance(v, str) and len(v) >= 7 and self.sha.startswith(v) for _, v in fields
            )
        if self.number is not None:
            return event.entity == self.entity and any(
                k in ("number", "build", "build_number", "id") and str(v).removesuffix(".0") == str(self.number)
                for k, v in fields
            )
        if self.key:
            return any(k in ("key", "issue", "issue_key") and v == self.key for k, v in fields)
        return False

    def matches_candidate(self, candidate: Mapping[str, Any], events: Mapping[str, Event] | None = None) -> bool:
        """Whether a root-cause candidate (a dict, e.g. ``Candidate.model_dump()``) is this change.

        Matches its ``event_id`` (resolved through ``events`` when given), else its text.
        """
        event_id = candidate.get("event_id")
        if isinstance(event_id, str) and Event.record_id_of(event_id) in self.record_ids():
            return True
        if events is not None and isinstance(event_id, str) and event_id in events:
            return self.matches_event(events[event_id])
        if candidate.get("entity") not in (None, self.entity):
            return False
        text = " ".join(str(candidate.get(k, "")) for k in ("summary", "title", "native_id", "url"))
        if self.sha:
            return any(self.sha.startswith(tok) for tok in re.findall(r"\b[0-9a-f]{7,40}\b", text))
        if self.number is not None and self.job:
            return re.search(rf"(?:#|/){self.number}\b", text) is not None
        if self.key:
            return re.search(rf"\b{re.escape(self.key)}\b", text) is not None
        return False


class ExpectedSignal(_Model):
    """A signal the incident produces: a source's events on an entity, anomalous in a time span."""

    source: str
    kind: str
    entity: str
    start: UtcDatetime
    end: UtcDatetime
    what: str


class InjectedIncident(_Model):
    id: str
    type: str
    title: str
    start: UtcDatetime
    end: UtcDatetime
    services: list[str]
    entities: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    signals: list[ExpectedSignal] = Field(default_factory=list, description="should all end in one incident")
    root_cause: list[ChangeRef] = Field(default_factory=list, description="identities of one change; empty: none")
    detectable: bool = True

    def is_root_cause(self, event: Event) -> bool:
        """Whether ``event`` is (one identity of) this incident's root-cause change."""
        return any(ref.matches_event(event) for ref in self.root_cause)

    def candidate_is_root_cause(self, candidate: Mapping[str, Any], events: Mapping[str, Event] | None = None) -> bool:
        return any(ref.matches_candidate(candidate, events) for ref in self.root_cause)

    def overlaps(self, first_seen: datetime, *, before: timedelta = timedelta(minutes=15),
                 after: timedelta = timedelta(hours=2)) -> bool:
        """Whether a detection first seen at ``first_seen`` falls in this incident's span (with slack)."""
        return self.start - before <= first_seen <= self.end + after


class GroundTruth(_Model):
    scenario: str
    seed: int
    start: UtcDatetime
    end: UtcDatetime
    incidents: list[InjectedIncident]

    def incident(self, incident_id: str) -> InjectedIncident:
        for inc in self.incidents:
            if inc.id == incident_id:
                return inc
        raise KeyError(f"no injected incident {incident_id!r}; known: {', '.join(i.id for i in self.incidents)}")

    def root_cause_of(self, event: Event) -> list[str]:
        """The ids of the incidents whose root cause ``event`` is."""
        return [inc.id for inc in self.incidents if inc.is_root_cause(event)]

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def read(cls, path: str | Path) -> GroundTruth:
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
