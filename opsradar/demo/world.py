"""The simulated enterprise: a scenario's timeline played into loopback fakes and real git repos.

:class:`World` generates the whole timeline up front (:func:`opsradar.demo.timeline.generate`),
then :meth:`World.advance` loads into the fakes everything whose simulated time has come: Jira
issues (created, then changed at each transition), finished Jenkins builds with their test reports,
Elasticsearch documents (application, access and audit logs), and git commits and release tags.
Time only moves forward; it can run as fast as the collectors can read.

:meth:`World.start` also writes the ground truth to ``<workdir>/ground_truth.json``.

Credentials are random per world and published as environment variables (set by :meth:`World.start`,
restored by :meth:`World.stop`), which :meth:`World.config` names in its sources:

=================================  ==================================================
``OPSRADAR_DEMO_JIRA_TOKEN``        Jira API token of user ``opsradar`` (basic auth)
``OPSRADAR_DEMO_JENKINS_TOKEN``     Jenkins API token of user ``opsradar``
``OPSRADAR_DEMO_ES_PASSWORD``       Elasticsearch password of user ``opsradar``
``OPSRADAR_DEMO_SLACK_TOKEN``       Slack bot token accepted by the Slack fake
=================================  ==================================================

>>> from datetime import timedelta
>>> w = World("default", seed=1, days=1.0, incidents=False)
>>> with w:
...     loaded = w.advance(w.start_time + timedelta(hours=12))
...     cfg = w.config()
>>> loaded["docs"] > 0, sorted(cfg.sources), w.clock() == w.start_time + timedelta(hours=12)
(True, ['access-logs', 'app-logs', 'audit-logs', 'git', 'jenkins', 'jira'], True)
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from opsradar.config import (
    Config,
    ElasticsearchSource,
    EntityGraph,
    GitRepo,
    GitSource,
    JenkinsSource,
    JiraSource,
    RulesConfig,
    ServiceEntities,
    SlackConfig,
    StoreConfig,
)
from opsradar.demo.fakes.elasticsearch import ElasticsearchFake
from opsradar.demo.fakes.jenkins import FakeJenkins
from opsradar.demo.fakes.jira import FakeJira
from opsradar.demo.fakes.slack import SlackFake
from opsradar.demo.gitrepos import RepoSet
from opsradar.demo.groundtruth import GroundTruth
from opsradar.demo.records import Build, Issue
from opsradar.demo.render import jenkins_build, jenkins_test_report, jira_issue
from opsradar.demo.scenario import Scenario, load_scenario
from opsradar.demo.timeline import INDICES, SOURCES, Timeline, generate

__all__ = ["ENV", "POLL", "SimClock", "World", "channels_in"]

#: The environment variables the world sets: role → name.
ENV = {"jira": "OPSRADAR_DEMO_JIRA_TOKEN", "jenkins": "OPSRADAR_DEMO_JENKINS_TOKEN",
       "elasticsearch": "OPSRADAR_DEMO_ES_PASSWORD", "slack": "OPSRADAR_DEMO_SLACK_TOKEN"}
USER = "opsradar"
#: Poll intervals the world's config suggests, in simulated time. An idle pull cost, measured on the
#: 2-day world (2 shared cores) with the collectors of 08:29 UTC: git ~28 ms for 7 repositories,
#: Jenkins, Jira and Elasticsearch under 5 ms each (it was ~240 ms and ~150 ms for git and Jenkins
#: with the collectors of 08:00). A runner may poll at every step instead.
POLL = {"jira": timedelta(minutes=5), "git": timedelta(minutes=30), "jenkins": timedelta(minutes=10),
        "elasticsearch": timedelta(minutes=5)}


def channels_in(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Every ``channel: "#name"`` value in the YAML files under ``paths`` (missing paths are skipped).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "routing.yaml").write_text('receivers: [{name: sre, slack: {channel: "#sre-alerts"}}]')
    >>> channels_in([d, d / "missing"])
    ['#sre-alerts']
    """
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "channel" and isinstance(v, str) and v.startswith("#"):
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for p in map(Path, paths):
        files = sorted(p.rglob("*.y*ml")) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            try:
                walk(yaml.safe_load(f.read_text(encoding="utf-8")))
            except (OSError, yaml.YAMLError):
                continue
    return list(dict.fromkeys(found))


class SimClock:
    """Simulated now. Call it (``clock()``) or use :meth:`now`; only :class:`World` moves it."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def __call__(self) -> datetime:
        return self._now

    def _set(self, now: datetime) -> None:
        if now < self._now:
            raise ValueError(f"simulated time only moves forward: {now.isoformat()} is before {self._now.isoformat()}")
        self._now = now


class World:
    """A scenario played against loopback fakes. ``scenario`` is a :class:`Scenario`, a bundled name
    (``"default"``) or a YAML path; ``seed`` overrides the scenario's seed; ``days`` and ``scale``
    override its length and volume; ``incidents=False`` leaves the background only; the Slack fake
    has the channels of :meth:`slack_channels`;
    ``running_builds=True`` shows each Jenkins build as running (``building: true``) from its start
    until it finishes (by default a build appears when it has finished).
    """

    def __init__(self, scenario: Scenario | str = "default", *, seed: int | None = None, days: float | None = None,
                 scale: float | None = None, incidents: bool = True, running_builds: bool = False,
                 slack_channels: Sequence[str] = (), rules_paths: Sequence[str | os.PathLike[str]] | None = None,
                 workdir: str | os.PathLike[str] | None = None) -> None:
        sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        changes: dict[str, Any] = {}
        if days is not None:
            changes["days"] = days
            changes["incidents"] = [i for i in sc.model_dump()["incidents"]
                                    if i["window"][1] <= timedelta(days=days)] if incidents else []
        if not incidents:
            changes["incidents"] = []
        if scale is not None:
            changes["volume"] = {**sc.volume.model_dump(), "scale": scale}
        self.scenario = sc.with_changes(**changes) if changes else sc
        self.seed = self.scenario.seed if seed is None else seed
        self.timeline: Timeline = generate(self.scenario, self.seed)
        self.clock = SimClock(self.timeline.start - timedelta(microseconds=1))
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None
        self._own_workdir = False
        self.jira: FakeJira | None = None
        self.jenkins: FakeJenkins | None = None
        self.elasticsearch: ElasticsearchFake | None = None
        self.slack: SlackFake | None = None
        self.repos: RepoSet | None = None
        self.secrets = {role: secrets.token_urlsafe(18) for role in ENV}
        self._saved_env: dict[str, str | None] = {}
        self._commits = {c.cid: c for c in self.timeline.commits}
        self.running_builds = running_builds
        self._extra_channels = list(slack_channels)
        self._rules_paths = [Path(p) for p in (rules_paths if rules_paths is not None else RulesConfig().paths)]
        self._builds = sorted(self.timeline.builds, key=lambda b: b.visible_at)
        self._build_starts = sorted(self.timeline.builds, key=lambda b: b.start) if running_builds else []
        self._issue_changes = sorted(((t, i) for i in self.timeline.issues for t in i.times()),
                                     key=lambda x: (x[0], x[1].key))
        self._docs = self.timeline.docs
        self._doc_ts = [d.ts for d in self._docs]
        self._pos = {"builds": 0, "build_starts": 0, "issues": 0, "docs": 0}
        self.loaded = {"builds": 0, "issue_updates": 0, "docs": 0, "commits": 0}

    # ------------------------------------------------------------------ facts

    @property
    def start_time(self) -> datetime:
        return self.timeline.start

    @property
    def end_time(self) -> datetime:
        return self.timeline.end

    @property
    def ground_truth(self) -> GroundTruth:
        return self.timeline.ground_truth

    @property
    def started(self) -> bool:
        return self.jira is not None

    def slack_channels(self) -> list[str]:
        """``opsradar``, ``team-<team>`` per team, the channels named in the rule files (any
        ``channel: "#name"`` under ``rules_paths``, by default the config's ``rules.paths``), and
        ``slack_channels``."""
        teams = sorted({s.team for s in self.scenario.services.values()})
        names = ["opsradar", *(f"team-{t}" for t in teams), *channels_in(self._rules_paths), *self._extra_channels]
        return list(dict.fromkeys(n.lstrip("#") for n in names))

    def steps(self, step: timedelta) -> Iterator[datetime]:
        """Simulated times from the start to the end, ``step`` apart (the end included)."""
        t = self.start_time
        while t < self.end_time:
            t = min(t + step, self.end_time)
            yield t

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> World:
        """Start the fakes on 127.0.0.1, create the repositories, set the credentials, load the past."""
        if self.started:
            return self
        if self._workdir_arg is not None:
            self.workdir = self._workdir_arg
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="opsradar-world-"))
            self._own_workdir = True
        self.repos = RepoSet(self.workdir / "repos", self.timeline.commits, self.timeline.tags)
        self.repos.create()
        self.jira = FakeJira(users={USER: self.secrets["jira"]})
        self.jenkins = FakeJenkins(users={USER: self.secrets["jenkins"]})
        self.elasticsearch = ElasticsearchFake(users={USER: self.secrets["elasticsearch"]})
        self.slack = SlackFake(token=self.secrets["slack"], channels=self.slack_channels())
        for svc in self.scenario.services.values():
            self.jira.add_project(svc.jira_project)
            self.jenkins.add_job(svc.build_job)
            self.jenkins.add_job(svc.deploy_job)
        for fake in (self.jira, self.jenkins, self.elasticsearch, self.slack):
            fake.start()
        for index in INDICES.values():  # the indices exist before their first document, as in a real cluster
            httpx.put(f"{self.elasticsearch.url}/{index}", auth=(USER, self.secrets["elasticsearch"]),
                      timeout=10).raise_for_status()
        for role, name in ENV.items():
            self._saved_env[name] = os.environ.get(name)
            os.environ[name] = self.secrets[role]
        self.ground_truth.write(self.workdir / "ground_truth.json")
        self.advance(self.start_time)
        return self

    def stop(self) -> None:
        """Stop the fakes, restore the environment, and delete the temporary directory (if ours)."""
        for fake in (self.jira, self.jenkins, self.elasticsearch, self.slack):
            if fake is not None:
                fake.stop()
        for name, old in self._saved_env.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
        self._saved_env.clear()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.jira = self.jenkins = self.elasticsearch = self.slack = None  # type: ignore[assignment]

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ time

    def advance(self, to: datetime) -> dict[str, int]:
        """Load everything visible at or before ``to`` and move the clock there; returns what was loaded."""
        if self.jira is None or self.jenkins is None or self.elasticsearch is None or self.repos is None:
            raise RuntimeError("start() the world before advancing it")
        to = min(to, self.end_time)
        self.clock._set(to)
        out = {"builds": 0, "issue_updates": 0, "docs": 0, "commits": 0}
        out["commits"] = len(self.repos.advance(to))
        # Jira: every creation or transition up to now, each issue upserted as it stands
        changed: dict[str, Issue] = {}
        while self._pos["issues"] < len(self._issue_changes) and self._issue_changes[self._pos["issues"]][0] <= to:
            issue = self._issue_changes[self._pos["issues"]][1]
            changed[issue.key] = issue
            self._pos["issues"] += 1
            out["issue_updates"] += 1
        for issue in changed.values():
            self.jira.upsert_issue(jira_issue(issue, to))
        # Jenkins: builds that have started (running, when asked for), then those that have finished
        while (self._pos["build_starts"] < len(self._build_starts)
               and self._build_starts[self._pos["build_starts"]].start <= to):
            b = self._build_starts[self._pos["build_starts"]]
            self.jenkins.add_build(b.job, {**jenkins_build(b, self._commits, self._repo_url(b)), "building": True,
                                           "result": None, "duration": 0,
                                           "estimatedDuration": int(self.scenario.services[b.service].build_minutes * 60000)})
            self._pos["build_starts"] += 1
        while self._pos["builds"] < len(self._builds) and self._builds[self._pos["builds"]].visible_at <= to:
            self._load_build(self._builds[self._pos["builds"]])
            self._pos["builds"] += 1
            out["builds"] += 1
        # Elasticsearch: documents up to now, by index
        end = bisect_right(self._doc_ts, to, lo=self._pos["docs"])
        batch: dict[str, list[dict[str, Any]]] = {}
        for d in self._docs[self._pos["docs"]:end]:
            batch.setdefault(d.index, []).append(d.source)
        for index, docs in batch.items():
            self.elasticsearch.index_documents(index, docs)
        out["docs"] = end - self._pos["docs"]
        self._pos["docs"] = end
        for k, v in out.items():
            self.loaded[k] += v
        return out

    def run_to_end(self) -> dict[str, int]:
        """Advance to the end of the scenario."""
        return self.advance(self.end_time)

    def _load_build(self, b: Build) -> None:
        if self.jenkins is None or self.repos is None:
            raise RuntimeError("start() the world first")
        svc = self.scenario.services[b.service]
        doc = jenkins_build(b, self._commits, self._repo_url(b))
        report = jenkins_test_report(b, svc.repo)
        if self.running_builds:
            self.jenkins.update_build(b.job, b.number, doc, test_report=report)
        else:
            self.jenkins.add_build(b.job, doc, test_report=report)

    def _repo_url(self, b: Build) -> str:
        assert self.repos is not None
        return f"file://{self.repos.path(self.scenario.services[b.service].repo)}"

    # ------------------------------------------------------------------ the pipeline's view

    def entity_graph(self) -> EntityGraph:
        services = {}
        for name, svc in self.scenario.services.items():
            repos = [svc.repo, *svc.extra_repos]
            repos += [r for r, spec in self.scenario.sensitive_repos.items() if spec.service == name]
            services[name] = ServiceEntities(repos=repos, jobs=[svc.build_job, svc.deploy_job],
                                             jira_projects=[svc.jira_project], es_services=[name],
                                             hosts=list(svc.hosts), depends_on=list(svc.depends_on), team=svc.team)
        return EntityGraph(services=services)

    def config(self, *, store_url: str | None = None) -> Config:
        """A config whose sources read the fakes and the repositories, with the entity graph and Slack."""
        if (self.jira is None or self.jenkins is None or self.elasticsearch is None or self.slack is None
                or self.repos is None or self.workdir is None):
            raise RuntimeError("start() the world first: the config points at the running fakes")
        es = {"url": self.elasticsearch.url, "user": USER, "password_env": ENV["elasticsearch"],
              "interval": POLL["elasticsearch"]}
        sources: dict[str, Any] = {
            SOURCES["jira"]: JiraSource(url=self.jira.url, api_version=2, user=USER, token_env=ENV["jira"],
                                        projects=[s.jira_project for s in self.scenario.services.values()],
                                        interval=POLL["jira"]),
            SOURCES["git"]: GitSource(repos=[GitRepo(path=str(self.repos.path(r)), name=r) for r in self.repos.names],
                                      interval=POLL["git"]),
            SOURCES["jenkins"]: JenkinsSource(url=self.jenkins.url, user=USER, token_env=ENV["jenkins"],
                                              deploy_jobs=r".*-deploy$", interval=POLL["jenkins"]),
            SOURCES["app"]: ElasticsearchSource(index=INDICES["app"], kind="log", **es),
            SOURCES["access"]: ElasticsearchSource(index=INDICES["access"], kind="access", **es),
            SOURCES["audit"]: ElasticsearchSource(index=INDICES["audit"], kind="audit", **es),
        }
        return Config(
            store=StoreConfig(url=store_url or f"sqlite:///{self.workdir}/state.db"),
            sources=sources,
            entities=self.entity_graph(),
            slack=SlackConfig(base_url=self.slack.url + "/api/", token_env=ENV["slack"], default_channel="#opsradar"),
        )

    def summary(self) -> dict[str, Any]:
        """Volumes and span of the world (for the demo's first lines and the benchmark)."""
        return {"scenario": self.scenario.name, "seed": self.seed, "start": self.start_time.isoformat(),
                "end": self.end_time.isoformat(), "incidents": len(self.ground_truth.incidents),
                **self.timeline.counts()}
