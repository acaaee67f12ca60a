"""The scenario file of the simulated enterprise: services, repositories, jobs, Jira projects, the
background rhythm and the injected incidents.

A scenario is YAML validated by pydantic (unknown keys are errors, reported with file, line and
path). Offsets inside the simulation are durations from ``start`` (``"2d14h"``). Each incident gives
a ``window``: the seed picks its start inside it (at least ``min_gap`` from the others), so a
second seed gives the same structure with a different background and different timings.

Top-level keys (see ``scenarios/default.yaml``):

- ``name``, ``description``, ``start`` (UTC), ``days``, ``seed``, ``min_gap``;
- ``change_window``: ``weekdays`` (0 = Monday) and ``hours`` when background deploys happen;
- ``volume``: ``scale`` (multiplies every background rate: the size knob), ``access_per_min``,
  ``app_logs_per_min`` (per service at the daily peak), ``gc_interval`` (heap/GC log heartbeat),
  ``audit_per_hour``, ``commits_per_day``, ``pr_builds_per_day``, ``issues_per_day``,
  ``deploys_per_day`` (per repository / job / project / service on a full workday),
  ``nightly_builds``;
- ``rhythm``: ``hourly`` and ``weekday`` (traffic and logs), ``work_hourly`` and ``work_weekday``
  (people: commits, builds, deploys, Jira), ``noise`` (lognormal sigma per 10-minute bucket);
- ``people`` (developers, three per service team), ``oncall`` (who opens incident tickets);
- ``services``: per service ``team``, ``repo`` (+ ``extra_repos``), ``build_job``, ``deploy_job``,
  ``jira_project``, ``hosts``, ``depends_on``, ``endpoints`` (``path``, ``method``, ``weight``,
  ``latency_ms``), ``traffic``, ``build_minutes``, ``tests``, ``heap_mb``;
- ``sensitive_repos``: repository → owning ``service`` and its usual ``readers``;
- ``incidents``: a list, each with ``id``, ``type`` (one of :data:`INCIDENT_TYPES`), ``title``,
  ``window``, ``detectable`` and the type's own parameters (the classes below).

>>> sc = load_scenario("default")
>>> sc.name, len(sc.services) >= 4, len(sc.incidents) >= 8
('default', True, True)
>>> sorted({i.type for i in sc.incidents}) == sorted(INCIDENT_TYPES)
True
>>> sc.service_of_repo("checkout-svc")
'checkout'
"""

from __future__ import annotations

from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from opsradar.config import Duration
from opsradar.errors import ConfigError, Problem
from opsradar.models import UtcDatetime
from opsradar.yamlutil import format_path, line_of, load_with_lines

__all__ = [
    "INCIDENT_TYPES",
    "AlertStorm",
    "BadDeploy",
    "BuildCreep",
    "ChangeWindow",
    "IncidentSpec",
    "LateLargeCommit",
    "MemoryLeak",
    "Rhythm",
    "Scenario",
    "SensitiveAccess",
    "ServiceSpec",
    "TestFailures",
    "Volume",
    "load_scenario",
    "scenario_path",
]

INCIDENT_TYPES = (
    "alert_storm",
    "bad_deploy",
    "build_creep",
    "late_large_commit",
    "memory_leak",
    "request_flood",
    "sensitive_access",
    "test_failures",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Model):
    path: str = Field(pattern=r"^/")
    method: Literal["GET", "POST", "PUT", "DELETE"] = "GET"
    weight: float = Field(default=1.0, gt=0)
    latency_ms: float = Field(default=60.0, gt=0, description="median latency")


class ServiceSpec(_Model):
    """One service and everything that belongs to it."""

    team: str
    repo: str = Field(description="the service's own repository")
    build_job: str
    deploy_job: str
    jira_project: str = Field(pattern=r"^[A-Z][A-Z0-9]{1,9}$")
    hosts: list[str] = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    endpoints: list[Endpoint] = Field(min_length=1)
    traffic: float = Field(default=1.0, gt=0, description="relative request volume")
    build_minutes: float = Field(default=6.0, gt=0, description="typical build duration")
    tests: int = Field(default=300, ge=1, description="test cases per build")
    heap_mb: int = Field(default=1024, ge=64)
    extra_repos: list[str] = Field(default_factory=list, description="other repositories of the service")


class Rhythm(_Model):
    """Daily and weekly rhythm: relative activity per hour of day (UTC) and per weekday."""

    hourly: list[float] = Field(
        default_factory=lambda: [0.15, 0.1, 0.08, 0.08, 0.1, 0.15, 0.3, 0.55, 0.85, 1.0, 1.0, 0.95,
                                 0.85, 0.95, 1.0, 1.0, 0.9, 0.75, 0.55, 0.45, 0.4, 0.35, 0.25, 0.2],
        min_length=24, max_length=24,
    )
    work_hourly: list[float] = Field(
        default_factory=lambda: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.1, 0.6, 1.0, 1.0, 0.9,
                                 0.5, 0.9, 1.0, 1.0, 0.9, 0.6, 0.25, 0.1, 0.05, 0.02, 0.01, 0.0],
        min_length=24, max_length=24, description="human activity: commits, builds, Jira",
    )
    weekday: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 0.9, 0.35, 0.3],
                                 min_length=7, max_length=7, description="Monday first")
    work_weekday: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 0.8, 0.05, 0.03],
                                      min_length=7, max_length=7)
    noise: float = Field(default=0.25, ge=0, le=2, description="lognormal sigma of per-bucket rate noise")


class Volume(_Model):
    """How much background happens. ``scale`` multiplies every rate; keep it modest for the demo."""

    scale: float = Field(default=1.0, gt=0, le=20)
    access_per_min: float = Field(default=0.35, ge=0, description="access-log lines per minute per service at peak")
    app_logs_per_min: float = Field(default=0.12, ge=0, description="application log lines per minute per service at peak")
    gc_interval: Duration = Field(default=timedelta(minutes=15), description="JVM heap/GC log line period")
    audit_per_hour: float = Field(default=3.0, ge=0, description="SCM audit records per hour at peak")
    commits_per_day: float = Field(default=5.0, ge=0, description="commits per repository per workday")
    issues_per_day: float = Field(default=2.5, ge=0, description="Jira issues per project per workday")
    deploys_per_day: float = Field(default=1.5, ge=0, description="deploys per service per workday")
    pr_builds_per_day: float = Field(default=5.0, ge=0, description="pull-request builds per job per workday")
    nightly_builds: bool = True


class ChangeWindow(_Model):
    """When people deploy (the organisation's change policy); deploys of injected incidents ignore it."""

    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], description="0 = Monday")
    hours: tuple[int, int] = Field(default=(8, 18), description="[from, to) UTC hours")

    def allows(self, t: datetime) -> bool:
        return t.weekday() in self.weekdays and self.hours[0] <= t.hour < self.hours[1]


class _IncidentBase(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    title: str
    window: tuple[Duration, Duration] = Field(description="the start is drawn in [from, to] after the scenario start")
    detectable: bool = True

    @model_validator(mode="after")
    def _window_order(self) -> _IncidentBase:
        if self.window[1] < self.window[0]:
            raise ValueError(f"window end {self.window[1]} is before its start {self.window[0]}")
        return self


class BadDeploy(_IncidentBase):
    """A commit is deployed; errors and latency rise in the service until a rollback."""

    type: Literal["bad_deploy"]
    service: str
    duration: Duration = timedelta(minutes=50)
    error_rate_per_min: float = 2.0
    latency_factor: float = 6.0
    error_share: float = Field(default=0.25, ge=0, le=1, description="share of requests answering 5xx")


class BuildCreep(_IncidentBase):
    """After a commit, the build duration of a job creeps up build after build."""

    type: Literal["build_creep"]
    service: str
    duration: Duration = timedelta(hours=30)
    growth: float = Field(default=2.5, gt=1, description="duration multiplier reached at the end")
    builds_per_hour: float = Field(default=1.0, gt=0, description="extra CI builds (branches) during the creep")


class TestFailures(_IncidentBase):
    """A feature branch is merged; the following builds fail many tests until a fix."""

    __test__ = False  # not a pytest class
    type: Literal["test_failures"]
    service: str
    failing: int = Field(default=35, ge=1)
    builds: int = Field(default=4, ge=1, description="failing builds before the fix")


class LateLargeCommit(_IncidentBase):
    """A very large commit lands late at night, shortly before a release tag."""

    type: Literal["late_large_commit"]
    service: str
    files: int = Field(default=60, ge=1)
    lines_per_file: int = Field(default=400, ge=1)
    release_after: Duration = timedelta(minutes=40)
    version: str = "2.0.0"


class SensitiveAccess(_IncidentBase):
    """An unusual user reads a sensitive repository many times at an unusual hour."""

    type: Literal["sensitive_access"]
    repo: str
    user: str
    source_ip: str = "203.0.113.77"
    accesses: int = Field(default=70, ge=1)
    duration: Duration = timedelta(minutes=25)


class RequestFlood(_IncidentBase):
    """A DDoS-like flood of requests on one endpoint from many addresses."""

    type: Literal["request_flood"]
    service: str
    path: str
    requests_per_min: float = 25.0
    duration: Duration = timedelta(minutes=35)
    subnet: str = "198.51.100"


class MemoryLeak(_IncidentBase):
    """A deploy introduces a slow leak: heap usage climbs in the logs until out-of-memory."""

    type: Literal["memory_leak"]
    service: str
    duration: Duration = timedelta(hours=16)


class AlertStorm(_IncidentBase):
    """One change in a shared service breaks its dependants: many alerts, one incident."""

    type: Literal["alert_storm"]
    service: str = Field(description="the service whose change is the root cause")
    affected: list[str] = Field(min_length=1, description="dependants that fail too")
    duration: Duration = timedelta(minutes=40)
    error_rate_per_min: float = 1.5


IncidentSpec = Annotated[
    BadDeploy | BuildCreep | TestFailures | LateLargeCommit | SensitiveAccess | RequestFlood | MemoryLeak | AlertStorm,
    Field(discriminator="type"),
]


class SensitiveRepo(_Model):
    service: str
    readers: list[str] = Field(min_length=1, description="people who normally read it")


class Scenario(_Model):
    """A whole simulated enterprise."""

    name: str
    description: str = ""
    start: UtcDatetime
    days: float = Field(gt=0, le=60)
    seed: int = 1
    min_gap: Duration = Field(default=timedelta(hours=2), description="incidents start at least this far apart")
    change_window: ChangeWindow = Field(default_factory=ChangeWindow, description="when background deploys happen")
    volume: Volume = Field(default_factory=Volume)
    rhythm: Rhythm = Field(default_factory=Rhythm)
    people: list[str] = Field(min_length=3)
    oncall: list[str] = Field(min_length=1)
    services: dict[str, ServiceSpec] = Field(min_length=1)
    sensitive_repos: dict[str, SensitiveRepo] = Field(default_factory=dict)
    incidents: list[IncidentSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = set(self.services)
        problems = []
        for svc_name, svc in self.services.items():
            problems += [f"services.{svc_name}.depends_on: unknown service {d!r}" for d in svc.depends_on if d not in names]
        for repo, spec in self.sensitive_repos.items():
            if spec.service not in names:
                problems.append(f"sensitive_repos.{repo}.service: unknown service {spec.service!r}")
        seen: set[str] = set()
        for inc in self.incidents:
            if inc.id in seen:
                problems.append(f"incidents: duplicate id {inc.id!r}")
            seen.add(inc.id)
            for svc_ref in _incident_services(inc):
                if svc_ref not in names:
                    problems.append(f"incidents.{inc.id}: unknown service {svc_ref!r}")
            if isinstance(inc, SensitiveAccess) and inc.repo not in self.sensitive_repos:
                problems.append(f"incidents.{inc.id}.repo: {inc.repo!r} is not in sensitive_repos")
            if inc.window[1] > timedelta(days=self.days):
                problems.append(f"incidents.{inc.id}.window: ends after the scenario ({self.days} days)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def service_of_repo(self, repo: str) -> str | None:
        for name, svc in self.services.items():
            if repo == svc.repo or repo in svc.extra_repos:
                return name
        spec = self.sensitive_repos.get(repo)
        return spec.service if spec else None

    def repos(self) -> list[str]:
        out = []
        for svc in self.services.values():
            out += [svc.repo, *svc.extra_repos]
        out += [r for r in self.sensitive_repos if r not in out]
        return out

    def with_changes(self, **changes: Any) -> Scenario:
        """A copy with top-level fields replaced (``seed=2``, ``days=2``), validated again."""
        data = self.model_dump()
        data.update(changes)
        return Scenario.model_validate(data)


def _incident_services(inc: Any) -> list[str]:
    out = [inc.service] if isinstance(getattr(inc, "service", None), str) else []
    return out + list(getattr(inc, "affected", []))


def scenario_path(name: str) -> Path:
    """The file of a bundled scenario (``default``) or the path given."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    ref = resources.files("opsradar.demo") / "scenarios" / f"{name}.yaml"
    return Path(str(ref))


def load_scenario(name_or_path: str = "default") -> Scenario:
    """Load and validate a scenario; raises :class:`ConfigError` listing every problem."""
    path = scenario_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read scenario: {exc.strerror or exc}")], file=str(path)) from exc
    try:
        data, lines = load_with_lines(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("", f"invalid YAML: {exc}")], file=str(path)) from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            if len(loc) > 2 and loc[0] == "incidents" and loc[2] in INCIDENT_TYPES:  # the union's tag
                loc = (*loc[:2], *loc[3:])
            problems.append(Problem(format_path(loc), e["msg"].removeprefix("Value error, "), file=str(path),
                                    line=line_of(lines, loc)))
        raise ConfigError(problems, file=str(path)) from None
