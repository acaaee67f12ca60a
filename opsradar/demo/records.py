"""The records of a simulated world's timeline, source-neutral: builds, Jira issues, log documents.

Commits and tags are :class:`~opsradar.demo.gitrepos.GitCommit` / ``GitTag``. Each record knows
when it becomes visible to the collectors (``visible_at``): a build when it completes, an issue at
its creation (and again at every transition), a log document at its ``@timestamp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = ["Build", "Doc", "Issue", "TestReport", "Transition"]


@dataclass
class TestReport:
    """A JUnit summary: ``failures`` lists (suite, case, error) of the failed cases."""

    __test__ = False  # not a pytest class

    total: int
    failed: int
    skipped: int
    duration_s: float
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.total - self.failed - self.skipped


@dataclass
class Build:
    """One Jenkins build (a CI build or a deploy). ``number`` is assigned per job in start order."""

    job: str
    service: str
    start: datetime
    duration_s: float
    result: str  # SUCCESS, UNSTABLE, FAILURE, ABORTED
    cause: str  # scm, timer, user, branch
    user: str | None = None
    branch: str = "main"
    commits: list[str] = field(default_factory=list)  # commit cids in the change set
    deploy: bool = False
    params: dict[str, str] = field(default_factory=dict)
    tests: TestReport | None = None
    node: str = "agent-1"
    number: int = 0
    commit_sha: str | None = None  # the revision built or deployed
    description: str | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)

    @property
    def visible_at(self) -> datetime:
        return self.end


@dataclass
class Transition:
    ts: datetime
    status: str
    author: str


@dataclass
class Issue:
    """A Jira issue and its status transitions. ``key`` is assigned per project in creation order."""

    project: str
    service: str
    created: datetime
    issuetype: str
    summary: str
    description: str
    priority: str
    reporter: str
    assignee: str | None
    labels: list[str] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    key: str = ""
    id: int = 0

    def times(self) -> list[datetime]:
        """Every moment the issue changes: its creation and each transition."""
        return [self.created, *(t.ts for t in self.transitions)]

    def status_at(self, now: datetime) -> str:
        status = "To Do"
        for t in self.transitions:
            if t.ts <= now:
                status = t.status
        return status


@dataclass
class Doc:
    """One Elasticsearch document (ECS, nested) for ``index``; ``source['_id']`` is its stable id."""

    index: str
    ts: datetime
    source: dict[str, Any]

    @property
    def visible_at(self) -> datetime:
        return self.ts
