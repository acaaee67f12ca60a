"""The configuration: one YAML file, validated by pydantic.

The file is found at ``--config``, else ``$OPSRADAR_CONFIG``, else ``./opsradar.yaml``; with none of
these, the embedded defaults apply. ``deploy/opsradar.example.yaml`` documents every key.

Secrets never live in the file: a key ending in ``_env`` names the environment variable that holds
the secret. Resolved secrets are ``pydantic.SecretStr``, so they never show in logs or reprs.

An invalid file raises :class:`~opsradar.errors.ConfigError` with **every** problem, each with its
YAML path and line.
"""

from __future__ import annotations

import os
import re
from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from opsradar.errors import ConfigError, Problem
from opsradar.yamlutil import format_path, line_of, load_with_lines

__all__ = [
    "ApiConfig",
    "ApiToken",
    "Config",
    "CorrelationConfig",
    "DetectorsConfig",
    "Duration",
    "ElasticsearchSource",
    "EntityGraph",
    "GitRepo",
    "GitSource",
    "JenkinsSource",
    "JiraSource",
    "RulesConfig",
    "ServiceEntities",
    "SlackConfig",
    "SourceConfig",
    "StoreConfig",
    "find_config_path",
    "load_config",
    "parse_duration",
    "resolve_secret",
    "validation_message",
]

DEFAULT_CONFIG_FILE = "opsradar.yaml"
DEFAULT_STORE_URL = "sqlite:///./.opsradar/state.db"

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w))+\s*$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """Parse ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` (or a number of seconds) into a timedelta.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"cannot parse duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value!r}")
        return timedelta(seconds=float(value))
    if isinstance(value, str) and _DURATION.match(value):
        return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _PART.findall(value)))
    if isinstance(value, str) and value.startswith("P"):  # ISO 8601, as pydantic writes timedeltas
        try:
            return TypeAdapter(timedelta).validate_python(value)
        except ValidationError:
            pass
    raise ValueError(f"cannot parse duration {value!r}: use e.g. '30s', '5m', '1h30m', '2d'")


def format_duration(value: timedelta) -> str:
    """The compact form that :func:`parse_duration` reads back.

    >>> format_duration(timedelta(hours=1, minutes=30)), format_duration(timedelta(milliseconds=1500))
    ('1h30m', '1500ms')
    """
    ms = round(value.total_seconds() * 1000)
    if ms % 1000:
        return f"{ms}ms"
    secs, out = ms // 1000, ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            out += f"{secs // size}{unit}"
            secs %= size
    return out or "0s"


#: A duration written as ``"5m"`` or a number of seconds (or ISO 8601); written back as ``"5m"``.
Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, when_used="json")]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[str, Field(pattern=_ENV_NAME)]


def resolve_secret(env_name: str | None) -> SecretStr | None:
    """The secret held by the environment variable ``env_name`` (None when unnamed or unset)."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    return SecretStr(value) if value else None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---------------------------------------------------------------------------------------- sources


class _SourceBase(_Section):
    enabled: bool = True
    interval: Duration = Field(default=timedelta(minutes=1), description="how often to poll")
    overlap: Duration = Field(
        default=timedelta(minutes=5), description="cursor overlap to catch late-arriving data"
    )
    timeout: Duration = Field(default=timedelta(seconds=30))
    batch_size: int = Field(default=500, ge=1, le=10_000)

    def secret_envs(self) -> dict[str, str]:
        """The ``*_env`` fields that are set: field name → environment variable name."""
        return {k: v for k, v in self.__dict__.items() if k.endswith("_env") and v}


class JiraSource(_SourceBase):
    type: Literal["jira"] = "jira"
    url: str = Field(pattern=r"^https?://")
    api_version: Literal[2, 3] = 2
    projects: list[str] = Field(min_length=1)
    jql: str | None = Field(default=None, description="extra JQL ANDed with the project filter")
    user: str | None = None
    token_env: EnvName | None = Field(default=None, description="API token (basic auth with user)")
    pat_env: EnvName | None = Field(default=None, description="personal access token (bearer)")
    page_size: int = Field(default=50, ge=1, le=1000)
    incident_issue_types: list[str] = Field(default_factory=lambda: ["Incident", "Bug"])
    done_statuses: list[str] = Field(
        default_factory=lambda: ["Done", "Resolved", "Closed"],
        description="statuses that count as resolved (besides any in Jira's 'done' category)",
    )

    @model_validator(mode="after")
    def _auth(self) -> JiraSource:
        if self.token_env and not self.user:
            raise ValueError("token_env needs user (basic auth with an API token)")
        return self


class GitRepo(_Section):
    path: str
    name: str | None = None
    branches: list[str] = Field(default_factory=lambda: ["*"])
    remote: str | None = Field(default=None, description="remote to fetch before reading; none = local")


class GitSource(_SourceBase):
    type: Literal["git"] = "git"
    repos: list[GitRepo] = Field(min_length=1)
    release_tag_pattern: str = r"^v?\d+\.\d+(\.\d+)?$"
    freeze_window: Duration = Field(
        default=timedelta(hours=24), description="commits this close before a release are 'late'"
    )
    work_hours: tuple[int, int] = (8, 19)
    weekend_off_hours: bool = Field(default=True, description="Saturday and Sunday count as off-hours")


class JenkinsSource(_SourceBase):
    type: Literal["jenkins"] = "jenkins"
    url: str = Field(pattern=r"^https?://")
    user: str | None = None
    token_env: EnvName | None = None
    jobs: list[str] = Field(default_factory=list, description="job full names; empty = all")
    deploy_jobs: str = Field(default=r".*deploy.*", description="regex: jobs whose builds are deploys")
    max_builds: int = Field(default=100, ge=1)


class ElasticsearchSource(_SourceBase):
    type: Literal["elasticsearch"] = "elasticsearch"
    url: str = Field(pattern=r"^https?://")
    index: str = Field(description="index pattern, e.g. 'logs-*'")
    kind: Literal["log", "access", "audit", "auto"] = "auto"
    query: dict[str, Any] | None = Field(default=None, description="extra query clause")
    api_key_env: EnvName | None = None
    user: str | None = None
    password_env: EnvName | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    field_map: dict[str, str] = Field(default_factory=dict, description="ECS field → your field")
    tiebreaker: str = Field(default="_shard_doc", description="sort tiebreaker with @timestamp")
    keep_alive: Duration = Field(default=timedelta(minutes=1), description="point-in-time keep-alive per page")
    retries: int = Field(default=3, ge=0, le=20, description="in-run retries of a 429/503, honouring Retry-After")
    max_retry_wait: Duration = Field(
        default=timedelta(seconds=60), description="a longer Retry-After ends the run; the scheduler retries later"
    )


SourceConfig = Annotated[
    JiraSource | GitSource | JenkinsSource | ElasticsearchSource, Field(discriminator="type")
]
_SOURCE_TYPES = {"jira", "git", "jenkins", "elasticsearch"}


# --------------------------------------------------------------------------------- entity graph


class ServiceEntities(_Section):
    repos: list[str] = Field(default_factory=list)
    jobs: list[str] = Field(default_factory=list)
    jira_projects: list[str] = Field(default_factory=list)
    es_services: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    team: str | None = None


class EntityGraph(_Section):
    """Which repositories, jobs, Jira projects and log services belong to which service.

    Nodes are qualified entity ids (``service:checkout``, ``repo:checkout-svc``, ``job:…``,
    ``project:…``); edges link a service with its parts, and a service with its dependencies.
    """

    services: dict[str, ServiceEntities] = Field(default_factory=dict)
    _adj: dict[str, set[str]] | None = PrivateAttr(default=None)
    _owner: dict[str, str | None] = PrivateAttr(default_factory=dict)
    _distances: dict[tuple[str, str, int], int | None] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _known_dependencies(self) -> EntityGraph:
        for name, svc in self.services.items():
            for dep in svc.depends_on:
                if dep not in self.services:
                    raise ValueError(f"service {name!r} depends on unknown service {dep!r}")
        return self

    def edges(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, svc in self.services.items():
            node = f"service:{name}"
            out += [(node, f"repo:{r}") for r in svc.repos]
            out += [(node, f"job:{j}") for j in svc.jobs]
            out += [(node, f"project:{p}") for p in svc.jira_projects]
            out += [(node, f"service:{s}") for s in svc.es_services if s != name]
            out += [(node, f"host:{h}") for h in svc.hosts]
            out += [(node, f"service:{d}") for d in svc.depends_on]
        return out

    def neighbours(self) -> dict[str, set[str]]:
        """The adjacency of the graph (computed once; the graph does not change after loading)."""
        if self._adj is None:
            adj: dict[str, set[str]] = {}
            for a, b in self.edges():
                adj.setdefault(a, set()).add(b)
                adj.setdefault(b, set()).add(a)
            self._adj = adj
        return self._adj

    def distance(self, a: str, b: str, *, limit: int = 6) -> int | None:
        """Hops between two entities (None when unrelated within ``limit``); answers are cached."""
        if a == b:
            return 0
        key = (a, b, limit)
        if key in self._distances:
            return self._distances[key]
        found = self._bfs(a, b, limit)
        if len(self._distances) > 100_000:
            self._distances.clear()
        self._distances[key] = found
        return found

    def _bfs(self, a: str, b: str, limit: int) -> int | None:
        adj = self.neighbours()
        seen, frontier = {a}, deque([(a, 0)])
        while frontier:
            node, d = frontier.popleft()
            if d >= limit:
                continue
            for nxt in adj.get(node, ()):
                if nxt == b:
                    return d + 1
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append((nxt, d + 1))
        return None

    def __eq__(self, other: object) -> bool:  # the caches are not part of the value
        return isinstance(other, EntityGraph) and self.services == other.services

    __hash__ = None  # type: ignore[assignment]

    def service_of(self, entity: str) -> str | None:
        """The service an entity belongs to (``service:x`` is its own); answers are cached."""
        if entity not in self._owner:
            self._owner[entity] = self._service_of(entity)
        return self._owner[entity]

    def _service_of(self, entity: str) -> str | None:
        kind, _, name = entity.partition(":")
        if kind == "service":
            for svc_name, svc in self.services.items():
                if name == svc_name or name in svc.es_services:
                    return svc_name
            return name
        attr = {"repo": "repos", "job": "jobs", "project": "jira_projects", "host": "hosts"}.get(kind)
        if attr is None:
            return None
        for svc_name, svc in self.services.items():
            if name in getattr(svc, attr):
                return svc_name
        return None


# --------------------------------------------------------------------------------- the rest


class StoreConfig(_Section):
    url: str = Field(default=DEFAULT_STORE_URL, description="SQLAlchemy URL")
    url_env: EnvName | None = Field(default=None, description="take the URL from this variable")
    event_retention: Duration = Field(
        default=timedelta(days=30), description="events older than this, counted back from the newest event time "
        "seen (not the wall clock, so that a replay of old history keeps it), are deleted; checked every 10 minutes. "
        "An incident's root-cause report is saved before the events it reads are deleted, and served as saved")
    echo: bool = False

    def resolved_url(self) -> str:
        secret = resolve_secret(self.url_env)
        return secret.get_secret_value() if secret else self.url


class SlackConfig(_Section):
    enabled: bool = True
    token_env: EnvName = "SLACK_BOT_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    signing_secret_env: EnvName = "SLACK_SIGNING_SECRET"  # noqa: S105
    base_url: str = Field(default="https://slack.com/api/", pattern=r"^https?://")
    default_channel: str = "#opsradar"
    storm_threshold: int = Field(default=5, ge=2, description="incidents in storm_window that make a digest")
    storm_window: Duration = Field(default=timedelta(minutes=10))
    mention_on: list[str] = Field(default_factory=lambda: ["critical"])
    templates_dir: str | None = None
    apply_group_wait: bool = Field(
        default=True, description="hold an incident's first message for its route's group_wait (wall clock), so "
        "that the alerts arriving meanwhile are in it; false: post at once")
    apply_repeat_interval: bool = Field(
        default=True, description="remind the channel in the message's thread every repeat_interval of its route "
        "(wall clock) while the incident stays open and unacknowledged; false: no reminders")


Role = Literal["reader", "operator", "rule-author", "admin"]


class ApiToken(_Section):
    name: str
    role: Role
    env: EnvName | None = Field(default=None, description="variable holding the token")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token")

    @model_validator(mode="after")
    def _one_source(self) -> ApiToken:
        if bool(self.env) == bool(self.sha256):
            raise ValueError("give exactly one of env or sha256")
        return self


class ApiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="base URL used in links (Slack, reports)")
    tokens: list[ApiToken] = Field(default_factory=list)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_batch_items: int = Field(default=10_000, ge=1)
    max_clock_skew: Duration = Field(
        default=timedelta(hours=1), description="how far ahead of the server's clock a pushed event's ts may be; "
        "a later event is refused with its own error (event time drives incidents, timers and auto-resolve)")
    haproxy: bool = Field(
        default=False, description="opsradar run: serve HTTP through Ray Serve's HAProxy ingress "
        "(RAY_SERVE_ENABLE_HA_PROXY, bundled with ray[serve] on Linux) instead of its Python proxy actor: "
        "fewer hops and less CPU per request (bench/RESULTS.md); HAProxy's own stats and metrics ports then "
        "listen on all interfaces. On a cluster, set the variable in the Ray pods instead (deploy/README.md)")


class RulesConfig(_Section):
    paths: list[str] = Field(default_factory=lambda: ["rules"])
    watch: bool = True


class DetectorsConfig(_Section):
    shards: int = Field(default=2, ge=1, le=256)
    warmup: int = Field(default=30, ge=0, description="events a stream learns before it may alert")
    threshold: float = Field(
        default=0.5, gt=0, lt=1, description="default calibrated threshold (log-likelihood scale: 0.5 = 1 in 10^5)"
    )
    checkpoint_interval: Duration = Field(default=timedelta(seconds=30))
    refit_interval: Duration = Field(default=timedelta(minutes=30), description=(
        "shortest wall-clock time between two refits of a PyOD group model (ADWIN drift: at most once a minute)"))
    refit_window: int = Field(default=2000, ge=50)


class CorrelationConfig(_Section):
    window: Duration = Field(default=timedelta(minutes=30), description="alerts this close may join")
    quiet_period: Duration = Field(default=timedelta(hours=1), description="auto-resolve after this")
    reopen_window: Duration = Field(default=timedelta(minutes=30), description="hysteresis for flapping")
    max_graph_distance: int = Field(default=2, ge=0)
    title_similarity: float = Field(default=0.6, ge=0, le=1)
    min_severity: Literal["info", "warning", "error", "critical"] = Field(
        default="warning", description="alerts below this are recorded (API, reports) but open no incident")


class Config(_Section):
    """The whole configuration. Every section has embedded defaults."""

    store: StoreConfig = Field(default_factory=StoreConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    entities: EntityGraph = Field(default_factory=EntityGraph)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    correlation: CorrelationConfig = Field(default_factory=CorrelationConfig)


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit``, else ``$OPSRADAR_CONFIG``, else ``./opsradar.yaml`` if it exists, else None."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("OPSRADAR_CONFIG")
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def _problem_path(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    # A discriminated union puts the tag in the location: sources.jira.jira.url → sources.jira.url
    if len(loc) > 2 and loc[0] == "sources" and loc[2] in _SOURCE_TYPES:
        loc = (*loc[:2], *loc[3:])
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def validation_message(err: Any) -> str:
    """One pydantic error as a reader wants it: the message, with the bad value quoted."""
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        return "unknown key"
    bad = err.get("input")
    if err["type"] != "missing" and "input" in err and not isinstance(bad, dict | list) and repr(bad) not in msg:
        msg += f" (got {bad!r})"
    return msg


def _check_secrets(cfg: Config) -> list[Problem]:
    problems = []
    for name, src in cfg.sources.items():
        if not src.enabled:
            continue
        for key, env in src.secret_envs().items():
            if not os.environ.get(env):
                problems.append(Problem(f"sources.{name}.{key}", f"environment variable {env} is not set"))
    for i, tok in enumerate(cfg.api.tokens):
        if tok.env and not os.environ.get(tok.env):
            problems.append(Problem(f"api.tokens[{i}].env", f"environment variable {tok.env} is not set"))
    return problems


def load_config(
    path: str | os.PathLike[str] | None = None, *, check_secrets: bool = True
) -> Config:
    """Load and validate the config file (see :func:`find_config_path`), or the defaults.

    Raises :class:`ConfigError` with every problem found.
    """
    found = find_config_path(path)
    if found is None:
        return Config()
    file = str(found)
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read the file: {exc.strerror or exc}")], file=file) from exc
    return parse_config(text, file=file, check_secrets=check_secrets)


def parse_config(text: str, *, file: str | None = None, check_secrets: bool = True) -> Config:
    """Validate config text. Raises :class:`ConfigError` with every problem, each with path and line."""
    try:
        data, lines = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem("", f"invalid YAML: {problem}", file=file, line=line)], file=file) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem("", "the top level must be a mapping", file=file, line=1)], file=file)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _problem_path(tuple(err["loc"]))
            problems.append(Problem(format_path(loc), validation_message(err), file=file, line=line_of(lines, loc)))
        raise ConfigError(problems, file=file) from None
    if check_secrets:
        missing = _check_secrets(cfg)
        if missing:
            problems = [
                Problem(p.path, p.message, file=file, line=line_of(lines, tuple(p.path.replace("[", ".").replace("]", "").split("."))))
                for p in missing
            ]
            raise ConfigError(problems, file=file)
    return cfg
