"""Generate a simulated world's whole timeline from a scenario and a seed, with its ground truth.

:func:`generate` is pure and deterministic: the same scenario and seed give the same records,
byte for byte (commit SHAs included). Another seed keeps the structure (services, incident types and
their order of windows) but draws a different background and different incident start times.

The background has a daily and weekly rhythm (``Scenario.rhythm``) and lognormal noise per
10-minute bucket; people commit, build, deploy and file issues in working hours; services log and
serve requests around the clock. Incidents are planned first, as *effects* on the background
(latency, errors, build durations, failing tests) plus their own records (the bad commit, its
deploy, error bursts, a request flood, audit records, Jira incident tickets).

>>> from opsradar.demo.scenario import load_scenario
>>> tl = generate(load_scenario("default").with_changes(days=1.0, incidents=[]), seed=3)
>>> tl.counts()["commits"] > 0 and tl.counts()["docs"] > 100
True
>>> generate(load_scenario("default").with_changes(days=1.0, incidents=[]), seed=3).digest() == tl.digest()
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from opsradar.demo.gitrepos import GitCommit, GitTag, commit_sha
from opsradar.demo.groundtruth import ChangeRef, ExpectedSignal, GroundTruth, InjectedIncident
from opsradar.demo.records import Build, Doc, Issue, TestReport, Transition
from opsradar.demo.scenario import (
    AlertStorm,
    BadDeploy,
    BuildCreep,
    LateLargeCommit,
    MemoryLeak,
    RequestFlood,
    Scenario,
    SensitiveAccess,
    ServiceSpec,
    TestFailures,
)

__all__ = ["INDICES", "SOURCES", "Timeline", "generate", "test_cases"]

#: The config source names the world uses, by role.
SOURCES = {"jira": "jira", "git": "git", "jenkins": "jenkins", "app": "app-logs", "access": "access-logs",
           "audit": "audit-logs"}
#: The Elasticsearch index of each log kind.
INDICES = {"app": "logs-app", "access": "logs-access", "audit": "logs-audit"}

_BUCKET = timedelta(minutes=10)
_WORDS = ("cart", "price", "order", "token", "session", "stock", "refund", "query", "index", "cache", "user",
          "item", "rate", "limit", "ledger", "batch", "event", "report", "quote", "ship")


@dataclass
class Timeline:
    """Everything that happens in the world, with the ground truth of the injected incidents."""

    scenario: Scenario
    seed: int
    start: datetime
    end: datetime
    commits: list[GitCommit]
    tags: list[GitTag]
    builds: list[Build]
    issues: list[Issue]
    docs: list[Doc]
    ground_truth: GroundTruth

    def counts(self) -> dict[str, int]:
        by_index: dict[str, int] = {}
        for d in self.docs:
            by_index[d.index] = by_index.get(d.index, 0) + 1
        return {
            "commits": len(self.commits), "tags": len(self.tags), "builds": len(self.builds),
            "deploys": sum(b.deploy for b in self.builds), "issues": len(self.issues),
            "issue_updates": sum(len(i.transitions) for i in self.issues), "docs": len(self.docs),
            **{f"docs.{k}": v for k, v in sorted(by_index.items())},
        }

    def digest(self) -> str:
        """A hash of the whole timeline (for reproducibility checks)."""
        h = hashlib.sha256()
        for c in self.commits:
            h.update(c.sha.encode())
        for b in self.builds:
            h.update(f"{b.job}#{b.number}{b.start.isoformat()}{b.duration_s:.3f}{b.result}".encode())
        for i in self.issues:
            h.update(f"{i.key}{i.created.isoformat()}{i.summary}".encode())
        for d in self.docs:
            h.update(repr(sorted(d.source.items())).encode())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------- planning state


@dataclass
class _PlannedCommit:
    ts: datetime
    repo: str
    author: str
    message: str
    branch: str = "main"
    big: tuple[int, int] | None = None  # (files, lines per file)
    merge_branch: str | None = None
    build: bool = True
    commit: GitCommit | None = None  # filled when the chain is built


@dataclass
class _AccessEffect:
    service: str
    start: datetime
    end: datetime
    latency: Callable[[datetime], float] = lambda t: 1.0
    error_share: float = 0.0
    statuses: tuple[int, ...] = (500, 502, 503)
    path: str | None = None


@dataclass
class _BuildEffect:
    job: str
    start: datetime
    end: datetime
    duration: Callable[[datetime], float] = lambda t: 1.0
    failures: list[tuple[str, str, str]] | None = None


@dataclass
class _PlannedDeploy:
    service: str
    start: datetime
    user: str
    commit: _PlannedCommit | None = None  # None: the latest good main commit
    rollback: bool = False
    build: Build | None = None


@dataclass
class _Pending:
    """An incident being planned: its records are filled in as the timeline is built."""

    spec: Any
    start: datetime
    end: datetime
    services: list[str]
    signals: list[ExpectedSignal] = field(default_factory=list)
    rc_commit: _PlannedCommit | None = None
    rc_deploy: _PlannedDeploy | None = None
    issues: list[Issue] = field(default_factory=list)


class _Gen:
    def __init__(self, sc: Scenario, seed: int) -> None:
        self.sc = sc
        self.seed = seed
        self.start = sc.start
        self.end = sc.end
        self.bg = np.random.default_rng([seed, 1])
        self.inc = np.random.default_rng([seed, 2])
        self.when = np.random.default_rng([seed, 3])
        self.commit_plans: dict[str, list[_PlannedCommit]] = {r: [] for r in sc.repos()}
        self.tag_plans: list[tuple[datetime, str, str, str, _PlannedCommit | None]] = []
        self.deploys: list[_PlannedDeploy] = []
        self.builds: list[Build] = []
        self.issues: list[Issue] = []
        self.docs: list[Doc] = []
        self.access_effects: list[_AccessEffect] = []
        self.build_effects: list[_BuildEffect] = []
        self.quiet_deploys: list[tuple[str, datetime, datetime]] = []
        self.pending: list[_Pending] = []
        self.teams: dict[str, list[str]] = {}
        people = list(sc.people)
        for i, name in enumerate(sc.services):
            self.teams[name] = [people[(3 * i + k) % len(people)] for k in range(3)]
        self._doc_seq = 0
        self.client_ips = [f"10.{40 + i % 8}.{(i * 37) % 250}.{(i * 91) % 250 + 2}" for i in range(400)]
        self.client_weights = 1.0 / np.arange(1, 401) ** 0.8
        self.client_weights /= self.client_weights.sum()

    # ------------------------------------------------------------------ rhythm

    def rate(self, t: datetime, *, human: bool) -> float:
        r = self.sc.rhythm
        if human:
            return r.work_hourly[t.hour] * r.work_weekday[t.weekday()]
        return r.hourly[t.hour] * r.weekday[t.weekday()]

    def buckets(self) -> list[datetime]:
        out, t = [], self.start
        while t < self.end:
            out.append(t)
            t += _BUCKET
        return out

    def poisson_times(self, rng: np.random.Generator, per_min: float, *, human: bool,
                      start: datetime | None = None, end: datetime | None = None) -> list[datetime]:
        """Event times with ``per_min`` at peak rhythm, noisy per 10-minute bucket."""
        out: list[datetime] = []
        noise = self.sc.rhythm.noise
        for b in self.buckets():
            if (start and b + _BUCKET <= start) or (end and b >= end):
                continue
            lam = per_min * 10 * self.rate(b, human=human) * self.sc.volume.scale
            if noise:
                lam *= float(rng.lognormal(-noise * noise / 2, noise))
            for _ in range(int(rng.poisson(lam))):
                out.append(b + timedelta(seconds=float(rng.uniform(0, 600))))
        return sorted(out)

    def human_times(self, rng: np.random.Generator, per_day: float) -> list[datetime]:
        # a full workday (weekday factor 1) sums to ``per_day``: 6 buckets of 10 minutes per hour
        return self.poisson_times(rng, per_day / (60.0 * sum(self.sc.rhythm.work_hourly)), human=True)

    def email(self, person: str) -> str:
        return f"{person}@example.com"

    def doc(self, index: str, ts: datetime, source: dict[str, Any]) -> Doc:
        self._doc_seq += 1
        body = {"_id": f"{index}-{self.seed}-{self._doc_seq:07d}", "@timestamp": _iso(ts), **source}
        d = Doc(index, ts, body)
        self.docs.append(d)
        return d

    # ------------------------------------------------------------------ incident planning

    def plan_incidents(self) -> None:
        specs = self.sc.incidents
        gap = self.sc.min_gap.total_seconds()
        for _attempt in range(500):
            starts = [self.start + w[0] + timedelta(seconds=float(self.when.uniform(0, (w[1] - w[0]).total_seconds())))
                      for w in (s.window for s in specs)]
            ordered = sorted(starts)
            if all((b - a).total_seconds() >= gap for a, b in itertools.pairwise(ordered)):
                break
        else:
            raise ValueError(f"scenario {self.sc.name!r}: cannot place the incidents {self.sc.min_gap} apart in their windows")
        for spec, t0 in zip(specs, starts, strict=True):
            planner = _PLANNERS[type(spec)]
            self.pending.append(planner(self, spec, _minute(t0)))

    def person(self, service: str, rng: np.random.Generator | None = None) -> str:
        team = self.teams[service]
        return team[int((rng or self.bg).integers(len(team)))]

    # ------------------------------------------------------------------ git

    def plan_background_commits(self) -> None:
        for svc_name, svc in self.sc.services.items():
            for repo in [svc.repo, *svc.extra_repos]:
                rng = np.random.default_rng([self.seed, 10, _h(repo)])
                for t in self.human_times(rng, self.sc.volume.commits_per_day):
                    module = _WORDS[int(rng.integers(len(_WORDS)))]
                    msg = str(rng.choice([f"Fix {module} edge case in {svc_name}", f"Add metrics for {module} handling",
                                          f"Refactor {module} module", f"Improve logging around {module}",
                                          f"Bump {module} client library", f"Add tests for {module} validation"]))
                    self.commit_plans[repo].append(_PlannedCommit(t, repo, self.person(svc_name, rng), msg))
        for repo, spec in self.sc.sensitive_repos.items():
            rng = np.random.default_rng([self.seed, 11, _h(repo)])
            for t in self.human_times(rng, 0.5):
                self.commit_plans[repo].append(_PlannedCommit(t, repo, spec.readers[0], "Rotate staging credentials",
                                                              build=False))
        # one release per service repository, on a workday afternoon, unless an incident makes one
        released = {c[2] for c in self.tag_plans}
        for i, (svc_name, svc) in enumerate(self.sc.services.items()):
            if svc.repo in released:
                continue
            days = [d for d in range(math.ceil(self.sc.days)) if (self.start + timedelta(days=d)).weekday() < 5]
            if not days:
                continue
            rng = np.random.default_rng([self.seed, 12, _h(svc.repo)])
            day = days[int(rng.integers(len(days)))]
            t = self.start + timedelta(days=day, hours=15, minutes=int(rng.integers(0, 120)))
            if t < self.end:
                self.tag_plans.append((t, svc.repo, f"v1.{4 + i}.0", self.person(svc_name, rng), None))

    def build_chains(self) -> list[GitCommit]:
        commits: list[GitCommit] = []
        for repo, plans in self.commit_plans.items():
            rng = np.random.default_rng([self.seed, 13, _h(repo)])
            svc = self.sc.service_of_repo(repo) or "app"
            tree = _initial_tree(repo, svc, rng)
            init = self._commit(repo, "main", "ana" if "ana" in self.sc.people else self.sc.people[0],
                                self.start - timedelta(days=14), "Initial import\n", tree, (), (), f"{repo}:0")
            commits.append(init)
            heads: dict[str, GitCommit] = {"main": init}
            trees: dict[str, dict[str, bytes]] = {"main": dict(tree)}
            forks: dict[str, dict[str, bytes]] = {}
            for n, p in enumerate(sorted(plans, key=lambda p: p.ts), start=1):
                if p.branch not in heads:
                    heads[p.branch] = heads["main"]
                    trees[p.branch] = dict(trees["main"])
                    forks[p.branch] = dict(trees["main"])
                cur = trees[p.branch]
                parents: tuple[str, ...] = (heads[p.branch].cid,)
                if p.merge_branch:
                    feat, base = trees[p.merge_branch], forks[p.merge_branch]
                    changed = tuple(sorted(k for k in feat if base.get(k) != feat[k]))
                    cur.update({k: feat[k] for k in changed})
                    parents += (heads[p.merge_branch].cid,)
                elif p.big:
                    changed = _add_big_files(cur, repo, p.big, rng)
                else:
                    changed = _edit_files(cur, rng)
                c = self._commit(repo, p.branch, p.author, p.ts, p.message.rstrip("\n") + "\n", dict(cur),
                                 parents, changed, f"{repo}:{n}", [heads[x].sha for x in ([p.branch] + ([p.merge_branch] if p.merge_branch else []))])
                heads[p.branch] = c
                p.commit = c
                commits.append(c)
        return commits

    def _commit(self, repo: str, branch: str, author: str, ts: datetime, message: str, tree: dict[str, bytes],
                parents: tuple[str, ...], changed: tuple[str, ...], cid: str, parent_shas: list[str] | None = None) -> GitCommit:
        c = GitCommit(cid=cid, repo=repo, branch=branch, author=author.capitalize(), email=self.email(author),
                      authored=ts, committed=ts, message=message, tree=tree, parents=parents, changed=changed)
        return dataclasses.replace(c, sha=commit_sha(c, parent_shas or []))

    # ------------------------------------------------------------------ jenkins

    def test_report(self, svc: ServiceSpec, start: datetime, rng: np.random.Generator,
                    failures: list[tuple[str, str, str]] | None) -> TestReport:
        total = svc.tests + int((start - self.start).total_seconds() // 86400)
        skipped = int(rng.integers(0, 4))
        fails = list(failures or [])
        if not failures and rng.random() < 0.05:
            # flaky tests are a few known ones, failing now and then
            flaky = test_cases(svc.repo, svc.tests)
            suite, case = flaky[(_h(svc.repo) + 7 * int(rng.integers(2))) % len(flaky)]
            fails = [(suite, case, "TimeoutError: operation timed out after 5s")]
        return TestReport(total=total, failed=len(fails), skipped=skipped,
                          duration_s=round(total * float(rng.uniform(0.15, 0.25)), 2), failures=fails)

    def make_build(self, svc_name: str, start: datetime, cause: str, *, branch: str = "main", user: str | None = None,
                   commits: list[str] | None = None, sha: str | None = None,
                   rng: np.random.Generator | None = None) -> Build:
        svc = self.sc.services[svc_name]
        rng = rng or self.bg
        duration = svc.build_minutes * 60 * float(rng.lognormal(0, 0.1))
        failures = None
        for eff in self.build_effects:
            if eff.job == svc.build_job and eff.start <= start < eff.end:
                duration *= eff.duration(start)
                failures = eff.failures or failures
        if failures is None and rng.random() < 0.02:
            b = Build(svc.build_job, svc_name, start, duration * 0.3, "FAILURE", cause, user, branch, commits or [],
                      commit_sha=sha, description="Compilation failed")
        else:
            tests = self.test_report(svc, start, rng, failures)
            result = "UNSTABLE" if tests.failed else "SUCCESS"
            b = Build(svc.build_job, svc_name, start, duration, result, cause, user, branch, commits or [], tests=tests,
                      commit_sha=sha)
        b.node = f"agent-{int(rng.integers(1, 4))}"
        self.builds.append(b)
        return b

    def plan_ci_builds(self, commits: list[GitCommit]) -> None:
        by_cid = {c.cid: c for c in commits}
        for repo, plans in self.commit_plans.items():
            svc_name = self.sc.service_of_repo(repo)
            if svc_name is None or self.sc.services[svc_name].repo != repo:
                continue
            rng = np.random.default_rng([self.seed, 20, _h(repo)])
            for p in plans:
                if p.branch != "main" or not p.build or p.commit is None:
                    continue
                start = p.ts + timedelta(seconds=float(rng.uniform(60, 240)))
                self.make_build(svc_name, start, "scm", commits=[p.commit.cid], sha=by_cid[p.commit.cid].sha, rng=rng)
        for svc_name in self.sc.services:
            rng = np.random.default_rng([self.seed, 21, _h(svc_name)])
            for n, t in enumerate(self.human_times(rng, self.sc.volume.pr_builds_per_day)):
                self.make_build(svc_name, t, "branch", branch=f"PR-{100 + n}", rng=rng)
            if self.sc.volume.nightly_builds:
                day = self.start.replace(hour=2, minute=0, second=0, microsecond=0)
                while day < self.end:
                    if day >= self.start:
                        self.make_build(svc_name, day + timedelta(seconds=float(rng.uniform(0, 300))), "timer", rng=rng)
                    day += timedelta(days=1)

    def plan_background_deploys(self) -> None:
        for svc_name in self.sc.services:
            rng = np.random.default_rng([self.seed, 22, _h(svc_name)])
            for t in self.human_times(rng, self.sc.volume.deploys_per_day):
                if any(s == svc_name and a <= t <= b for s, a, b in self.quiet_deploys):
                    continue
                if not self.sc.change_window.allows(t):
                    continue
                self.deploys.append(_PlannedDeploy(svc_name, t, self.person(svc_name, rng)))

    def make_deploys(self) -> None:
        main_builds: dict[str, list[Build]] = {}
        for b in self.builds:
            if not b.deploy and b.branch == "main" and b.commits and b.result == "SUCCESS":
                main_builds.setdefault(b.service, []).append(b)
        for lst in main_builds.values():
            lst.sort(key=lambda b: b.end)
        versions: dict[str, int] = {}
        deployed: dict[str, list[tuple[str, datetime]]] = {}
        for d in sorted(self.deploys, key=lambda d: d.start):
            svc = self.sc.services[d.service]
            rng = np.random.default_rng([self.seed, 23, _h(d.service), int(d.start.timestamp())])
            if d.rollback and deployed.get(d.service):
                # back to the previous deploy, or to the last good build before the bad one
                hist = deployed[d.service]
                bad_sha, bad_at = hist[-1]
                earlier = [b.commit_sha for b in main_builds.get(d.service, []) if b.end <= bad_at and b.commit_sha != bad_sha]
                sha = hist[-2][0] if len(hist) > 1 else (earlier[-1] if earlier else bad_sha) or ""
                commit_ids: list[str] = []
            elif d.commit is not None and d.commit.commit is not None:
                sha, commit_ids = d.commit.commit.sha, [d.commit.commit.cid]
            else:
                good = [b for b in main_builds.get(d.service, []) if b.end <= d.start]
                if not good:
                    continue
                sha, commit_ids = good[-1].commit_sha or "", list(good[-1].commits)
            versions[d.service] = versions.get(d.service, 0) + 1
            version = f"1.{versions[d.service]}.{int(d.start.timestamp()) % 97}"
            params = {"VERSION": version, "GIT_COMMIT": sha, "ENVIRONMENT": "production"}
            if d.rollback:
                params["ROLLBACK"] = "true"
            b = Build(svc.deploy_job, d.service, d.start, float(rng.uniform(150, 260)), "SUCCESS", "user", d.user,
                      "main", commit_ids, deploy=True, params=params, commit_sha=sha,
                      description=("Rollback to " if d.rollback else "Deploy ") + f"{version} ({sha[:7]})")
            self.builds.append(b)
            d.build = b
            deployed.setdefault(d.service, []).append((sha, d.start))

    def number_builds(self) -> None:
        self.builds.sort(key=lambda b: (b.job, b.start))
        counters: dict[str, int] = {}
        for b in self.builds:
            counters[b.job] = counters.get(b.job, 0) + 1
            b.number = 100 + counters[b.job]
        self.builds.sort(key=lambda b: b.end)

    # ------------------------------------------------------------------ jira

    def plan_issues(self) -> None:
        for svc_name, svc in self.sc.services.items():
            rng = np.random.default_rng([self.seed, 30, _h(svc_name)])
            for t in self.human_times(rng, self.sc.volume.issues_per_day):
                kind = str(rng.choice(["Story", "Task", "Bug"], p=[0.4, 0.3, 0.3]))
                word = _WORDS[int(rng.integers(len(_WORDS)))]
                summary = {"Story": f"As a customer I can see {word} details", "Task": f"Clean up {word} configuration",
                           "Bug": f"{word.capitalize()} shows wrong value after refresh"}[kind]
                prio = str(rng.choice(["Low", "Medium", "High"], p=[0.3, 0.55, 0.15]))
                reporter, assignee = self.person(svc_name, rng), self.person(svc_name, rng)
                issue = Issue(svc.jira_project, svc_name, t, kind, summary, f"{summary}.", prio, reporter, assignee,
                              labels=[svc_name])
                t1 = t + timedelta(hours=float(rng.uniform(0.5, 20)))
                t2 = t1 + timedelta(hours=float(rng.uniform(2, 30)))
                t3 = t2 + timedelta(hours=float(rng.uniform(1, 12)))
                for ts, status in ((t1, "In Progress"), (t2, "In Review"), (t3, "Done")):
                    if ts < self.end:
                        issue.transitions.append(Transition(ts, status, assignee))
                self.issues.append(issue)

    def incident_issue(self, svc_name: str, ts: datetime, summary: str, end: datetime, priority: str = "High") -> Issue:
        svc = self.sc.services[svc_name]
        oncall = self.sc.oncall[int(self.inc.integers(len(self.sc.oncall)))]
        issue = Issue(svc.jira_project, svc_name, ts, "Incident", summary, f"{summary}. Opened by the on-call engineer.",
                      priority, oncall, oncall, labels=["incident", svc_name])
        for t, status in ((ts + timedelta(minutes=float(self.inc.uniform(3, 12))), "In Progress"),
                          (end + timedelta(minutes=float(self.inc.uniform(15, 60))), "Done")):
            if t < self.end:
                issue.transitions.append(Transition(t, status, oncall))
        self.issues.append(issue)
        return issue

    def number_issues(self) -> None:
        self.issues.sort(key=lambda i: i.created)
        counters: dict[str, int] = {}
        for n, i in enumerate(self.issues, start=1):
            counters[i.project] = counters.get(i.project, 0) + 1
            i.key = f"{i.project}-{100 + counters[i.project]}"
            i.id = 10000 + n

    # ------------------------------------------------------------------ logs

    def access_docs(self) -> None:
        vol = self.sc.volume
        for svc_name, svc in self.sc.services.items():
            rng = np.random.default_rng([self.seed, 40, _h(svc_name)])
            weights = np.array([e.weight for e in svc.endpoints])
            weights /= weights.sum()
            effects = [e for e in self.access_effects if e.service == svc_name]
            for t in self.poisson_times(rng, vol.access_per_min * svc.traffic, human=False):
                ep = svc.endpoints[int(rng.choice(len(svc.endpoints), p=weights))]
                ip = self.client_ips[int(rng.choice(400, p=self.client_weights))]
                self.access_doc(svc_name, svc, t, ep.path, ep.method, ep.latency_ms, ip, rng, effects)

    def access_doc(self, svc_name: str, svc: ServiceSpec, t: datetime, path: str, method: str, latency_ms: float,
                   ip: str, rng: np.random.Generator, effects: list[_AccessEffect], status: int | None = None,
                   agent: str = "Mozilla/5.0 (X11; Linux x86_64) shop-web/3.2") -> None:
        latency = latency_ms * float(rng.lognormal(0, 0.45))
        if status is None:
            r = float(rng.random())
            status = 200 if method == "GET" else 201
            if r < 0.003:
                status = 500
            elif r < 0.008:
                status = 401
            elif r < 0.03:
                status = 404
            elif r < 0.05 and method == "GET":
                status = 304
        for eff in effects:
            if eff.start <= t < eff.end and (eff.path is None or eff.path == path):
                latency *= eff.latency(t)
                if rng.random() < eff.error_share:
                    status = int(rng.choice(list(eff.statuses)))
        size = int(rng.integers(200, 4000)) if status < 400 else int(rng.integers(60, 300))
        ts_text = t.strftime("%d/%b/%Y:%H:%M:%S +0000")
        msg = f'{ip} - - [{ts_text}] "{method} {path} HTTP/1.1" {status} {size} "-" "{agent}"'
        self.doc(INDICES["access"], t, {
            "message": msg,
            "event": {"dataset": "nginx.access", "duration": int(latency * 1e6), "kind": "event",
                      "outcome": "failure" if status >= 500 else "success"},
            "service": {"name": svc_name},
            "host": {"name": svc.hosts[int(rng.integers(len(svc.hosts)))]},
            "http": {"request": {"method": method}, "response": {"status_code": status, "body": {"bytes": size}}},
            "url": {"path": path},
            "source": {"ip": ip},
            "user_agent": {"original": agent},
            "log": {"level": "error" if status >= 500 else "info"},
        })

    def app_doc(self, svc_name: str, t: datetime, level: str, message: str, rng: np.random.Generator,
                extra: dict[str, Any] | None = None, logger: str = "app") -> None:
        svc = self.sc.services[svc_name]
        body: dict[str, Any] = {
            "message": message,
            "log": {"level": level, "logger": f"{svc_name}.{logger}"},
            "event": {"dataset": "app"},
            "service": {"name": svc_name},
            "host": {"name": svc.hosts[int(rng.integers(len(svc.hosts)))]},
        }
        for k, v in (extra or {}).items():
            if isinstance(v, dict):
                body.setdefault(k, {}).update(v)
            else:
                body[k] = v
        self.doc(INDICES["app"], t, body)

    def app_docs(self) -> None:
        vol = self.sc.volume
        for svc_name, svc in self.sc.services.items():
            rng = np.random.default_rng([self.seed, 41, _h(svc_name)])
            for t in self.poisson_times(rng, vol.app_logs_per_min * svc.traffic, human=False):
                r = float(rng.random())
                w = _WORDS[int(rng.integers(len(_WORDS)))]
                n = int(rng.integers(1, 9999))
                if r < 0.85:
                    level, msg = "info", str(rng.choice([
                        f"Handled {w} request {n} in {int(rng.integers(5, 200))} ms",
                        f"Cache refresh completed: {int(rng.integers(100, 5000))} {w} entries",
                        f"Scheduled job {w}-sync finished in {int(rng.integers(1, 60))} s",
                        f"Connection pool stats: active={int(rng.integers(1, 20))} idle={int(rng.integers(1, 10))}"]))
                elif r < 0.97:
                    dep = svc.depends_on[int(rng.integers(len(svc.depends_on)))] if svc.depends_on else "database"
                    level, msg = "warn", str(rng.choice([
                        f"Slow query on {w}s table: {int(rng.integers(300, 1500))} ms",
                        f"Retrying call to {dep} (attempt 2 of 3)",
                        f"Deprecated API /v0/{w} called by client {n}"]))
                else:
                    level, msg = "error", f"Unhandled exception while processing {w} {n}: ValueError: invalid {w} id"
                self.app_doc(svc_name, t, level, msg, rng)

    def gc_docs(self) -> None:
        interval = self.sc.volume.gc_interval  # a heartbeat: not scaled with the volume
        leaks = [p for p in self.pending if isinstance(p.spec, MemoryLeak)]
        for svc_name, svc in self.sc.services.items():
            rng = np.random.default_rng([self.seed, 42, _h(svc_name)])
            t = self.start + timedelta(seconds=float(rng.uniform(0, interval.total_seconds())))
            leak = next((p for p in leaks if p.services[0] == svc_name), None)
            while t < self.end:
                base = svc.heap_mb * (0.35 + 0.1 * math.sin(t.timestamp() / 5400.0)) * float(rng.uniform(0.92, 1.08))
                level = "info"
                if leak is not None and leak.start <= t < leak.end:
                    frac = (t - leak.start) / (leak.end - leak.start)
                    base = base + (svc.heap_mb * 0.97 - base) * frac ** 0.9
                    if base > 0.85 * svc.heap_mb:
                        level = "warn"
                pause = (20 + 200 * max(0.0, base / svc.heap_mb - 0.5) ** 2 * 8) * float(rng.uniform(0.8, 1.2))
                pct = 100.0 * base / svc.heap_mb
                msg = (f"GC pause {pause:.0f} ms, heap used {base:.0f} MB of {svc.heap_mb} MB ({pct:.1f}%)"
                       if level == "info" else
                       f"GC overhead high: pause {pause:.0f} ms, heap used {base:.0f} MB of {svc.heap_mb} MB ({pct:.1f}%)")
                self.app_doc(svc_name, t, level, msg, rng, logger="gc", extra={
                    "event": {"duration": int(pause * 1e6)},
                    "jvm": {"memory": {"heap": {"used": {"bytes": int(base * 2**20), "pct": round(pct / 100, 4)},
                                                "max": {"bytes": svc.heap_mb * 2**20}}}}})
                t += interval

    def audit_docs(self) -> None:
        rng = np.random.default_rng([self.seed, 43])
        repos = [svc.repo for svc in self.sc.services.values()]
        for t in self.poisson_times(rng, self.sc.volume.audit_per_hour / 60.0, human=True):
            if self.sc.sensitive_repos and rng.random() < 0.05:
                repo = list(self.sc.sensitive_repos)[int(rng.integers(len(self.sc.sensitive_repos)))]
                readers = self.sc.sensitive_repos[repo].readers
                user = readers[int(rng.integers(len(readers)))]
            else:
                repo = repos[int(rng.integers(len(repos)))]
                user = self.sc.people[int(rng.integers(len(self.sc.people)))]
            action = str(rng.choice(["git.fetch", "git.clone", "git.push", "repo.view"], p=[0.55, 0.1, 0.2, 0.15]))
            self.audit_doc(t, user, repo, action, self.office_ip(user), rng)

    def office_ip(self, user: str) -> str:
        return f"10.20.0.{_h(user) % 200 + 10}"

    def audit_doc(self, t: datetime, user: str, repo: str, action: str, ip: str, rng: np.random.Generator,
                  outcome: str = "success") -> None:
        svc = self.sc.service_of_repo(repo) or "scm"
        self.doc(INDICES["audit"], t, {
            "message": f"{user} {action.split('.')[-1]} {repo} from {ip}",
            "event": {"dataset": "audit", "action": action, "category": ["file"], "kind": "event", "outcome": outcome},
            "service": {"name": svc},
            "host": {"name": "scm-1"},
            "user": {"name": user},
            "source": {"ip": ip},
            "url": {"path": f"/scm/{repo}.git" + ("/git-upload-pack" if action != "repo.view" else "")},
            "labels": {"repository": repo},
            "log": {"level": "info"},
        })

    # ------------------------------------------------------------------ ground truth

    def ground_truth(self) -> GroundTruth:
        out = []
        for p in self.pending:
            spec = p.spec
            refs: list[ChangeRef] = []
            if p.rc_deploy is not None and p.rc_deploy.build is not None:
                b = p.rc_deploy.build
                refs.append(ChangeRef(source=SOURCES["jenkins"], kind="deploy", entity=f"job:{b.job}", job=b.job,
                                      number=b.number, ts=b.end, summary=b.description or ""))
            if p.rc_commit is not None and p.rc_commit.commit is not None:
                c = p.rc_commit.commit
                refs.append(ChangeRef(source=SOURCES["git"], kind="commit", entity=f"repo:{c.repo}", repo=c.repo,
                                      sha=c.sha, ts=c.committed, summary=c.message.splitlines()[0]))
            signals = list(p.signals)
            for issue in p.issues:
                signals.append(ExpectedSignal(source=SOURCES["jira"], kind="issue", entity=f"project:{issue.project}",
                                              start=issue.created, end=issue.created, what=f"{issue.key} {issue.summary}"))
            entities = sorted({s.entity for s in signals} | {f"service:{s}" for s in p.services})
            out.append(InjectedIncident(
                id=spec.id, type=spec.type, title=spec.title, start=p.start, end=p.end, services=sorted(p.services),
                entities=entities, sources=sorted({s.source for s in signals}), signals=signals, root_cause=refs,
                detectable=spec.detectable))
        out.sort(key=lambda i: i.start)
        return GroundTruth(scenario=self.sc.name, seed=self.seed, start=self.start, end=self.end, incidents=out)


# ----------------------------------------------------------------------------------- incident planners


def _sig(role: str, kind: str, entity: str, start: datetime, end: datetime, what: str) -> ExpectedSignal:
    return ExpectedSignal(source=SOURCES[role], kind=kind, entity=entity, start=start, end=end, what=what)


def _error_burst(g: _Gen, svc_name: str, start: datetime, end: datetime, per_min: float, messages: list[str]) -> None:
    rng = g.inc
    n = int(rng.poisson(per_min * (end - start).total_seconds() / 60))
    for _ in range(n):
        t = start + timedelta(seconds=float(rng.uniform(0, (end - start).total_seconds())))
        g.app_doc(svc_name, t, "error", messages[int(rng.integers(len(messages)))].format(n=int(rng.integers(1000, 99999))), rng)


def _plan_bad_deploy(g: _Gen, spec: BadDeploy, t0: datetime) -> _Pending:
    svc = g.sc.services[spec.service]
    author = g.person(spec.service, g.inc)
    commit = _PlannedCommit(t0 - timedelta(minutes=35), svc.repo, author, "Switch cart pricing to the new discount engine")
    g.commit_plans[svc.repo].append(commit)
    deploy = _PlannedDeploy(spec.service, t0 - timedelta(minutes=4), author, commit=commit)
    g.deploys.append(deploy)
    end = t0 + spec.duration
    g.deploys.append(_PlannedDeploy(spec.service, end - timedelta(minutes=4), g.sc.oncall[0], rollback=True))
    g.commit_plans[svc.repo].append(_PlannedCommit(end + timedelta(minutes=20), svc.repo, author,
                                                   f'Revert "{commit.message}"'))
    g.quiet_deploys.append((spec.service, t0 - timedelta(hours=3), end + timedelta(hours=1)))
    g.access_effects.append(_AccessEffect(spec.service, t0, end, latency=lambda t: spec.latency_factor,
                                          error_share=spec.error_share))
    _error_burst(g, spec.service, t0 + timedelta(minutes=1), end, spec.error_rate_per_min, [
        "NullPointerException in DiscountEngine.apply for cart {n}",
        "HTTP 500 for POST /api/v1/checkout: pricing failed for cart {n}"])
    # the extra traffic that errors and retries cause
    rng = g.inc
    for i in range(int(spec.duration.total_seconds() / 60 * 2)):
        t = t0 + timedelta(seconds=30 * i + float(rng.uniform(0, 30)))
        ep = svc.endpoints[0]
        g.access_doc(spec.service, svc, t, ep.path, ep.method, ep.latency_ms, g.client_ips[int(rng.integers(400))], rng,
                     [e for e in g.access_effects if e.service == spec.service])
    p = _Pending(spec, t0, end, [spec.service], rc_commit=commit, rc_deploy=deploy)
    p.signals += [
        _sig("app", "log", f"service:{spec.service}", t0, end, "error burst in application logs"),
        _sig("access", "access", f"service:{spec.service}", t0, end, "5xx share and latency rise"),
        _sig("jenkins", "deploy", f"job:{svc.deploy_job}", t0 - timedelta(minutes=4), t0, "the bad deploy"),
    ]
    p.issues.append(g.incident_issue(spec.service, t0 + timedelta(minutes=float(g.inc.uniform(12, 25))),
                                     f"Checkout errors and slow responses after deploy ({spec.service})", end))
    return p


def _plan_build_creep(g: _Gen, spec: BuildCreep, t0: datetime) -> _Pending:
    svc = g.sc.services[spec.service]
    author = g.person(spec.service, g.inc)
    commit = _PlannedCommit(t0, svc.repo, author, "Disable workspace cleanup between builds to reuse caches")
    g.commit_plans[svc.repo].append(commit)
    end = t0 + spec.duration
    g.build_effects.append(_BuildEffect(svc.build_job, t0, end + timedelta(days=30),
                                        duration=lambda t: 1 + (spec.growth - 1) * min(1.0, (t - t0) / spec.duration)))
    rng = g.inc
    t = t0 + timedelta(minutes=20)
    n = 0
    while t < min(end, g.end):
        n += 1
        g.make_build(spec.service, t, "branch", branch=f"PR-{900 + n}", rng=rng)
        t += timedelta(hours=float(rng.exponential(1 / spec.builds_per_hour)))
    p = _Pending(spec, t0, end, [spec.service], rc_commit=commit)
    p.signals.append(_sig("jenkins", "build", f"job:{svc.build_job}", t0, end, "build duration creeps up"))
    return p


def _plan_test_failures(g: _Gen, spec: TestFailures, t0: datetime) -> _Pending:
    svc = g.sc.services[spec.service]
    rng = g.inc
    author = g.person(spec.service, rng)
    branch = "feature/refund-rework"
    for k in range(3):
        g.commit_plans[svc.repo].append(_PlannedCommit(t0 - timedelta(hours=20 - 5 * k), svc.repo, author,
                                                       f"Refund rework part {k + 1}", branch=branch, build=False))
    merge = _PlannedCommit(t0, svc.repo, author, f"Merge branch '{branch}' into main", merge_branch=branch)
    g.commit_plans[svc.repo].append(merge)
    cases = [(suite, case, "AssertionError: expected refund 10.00, got 9.99")
             for suite, case in test_cases(svc.repo, svc.tests)[: spec.failing]]
    spacing = timedelta(minutes=35)
    fix_at = t0 + spacing * spec.builds
    g.build_effects.append(_BuildEffect(svc.build_job, t0, fix_at, failures=cases))
    for k in range(1, spec.builds):
        g.make_build(spec.service, t0 + spacing * k, "user", user=author, rng=rng)
    fix = _PlannedCommit(fix_at, svc.repo, author, "Fix refund rounding regression")
    g.commit_plans[svc.repo].append(fix)
    end = fix_at + timedelta(minutes=15)
    p = _Pending(spec, t0, end, [spec.service], rc_commit=merge)
    p.signals.append(_sig("jenkins", "test_run", f"job:{svc.build_job}", t0, end, "failing tests after the merge"))
    return p


def _plan_late_large_commit(g: _Gen, spec: LateLargeCommit, t0: datetime) -> _Pending:
    svc = g.sc.services[spec.service]
    author = g.person(spec.service, g.inc)
    commit = _PlannedCommit(t0, svc.repo, author, "Vendor the new inventory sync engine", big=(spec.files, spec.lines_per_file))
    g.commit_plans[svc.repo].append(commit)
    tag_at = t0 + spec.release_after
    g.tag_plans.append((tag_at, svc.repo, f"v{spec.version}", g.person(spec.service, g.inc), commit))
    end = tag_at + timedelta(minutes=30)
    p = _Pending(spec, t0, end, [spec.service], rc_commit=commit)
    p.signals += [_sig("git", "commit", f"repo:{svc.repo}", t0, t0, f"{spec.files} files, late at night"),
                  _sig("git", "release", f"repo:{svc.repo}", tag_at, tag_at, f"release v{spec.version} right after")]
    return p


def _plan_sensitive_access(g: _Gen, spec: SensitiveAccess, t0: datetime) -> _Pending:
    rng = g.inc
    end = t0 + spec.duration
    for _ in range(spec.accesses):
        t = t0 + timedelta(seconds=float(rng.uniform(0, spec.duration.total_seconds())))
        action = str(rng.choice(["git.clone", "git.fetch", "repo.archive"], p=[0.3, 0.5, 0.2]))
        g.audit_doc(t, spec.user, spec.repo, action, spec.source_ip, rng)
    owner = g.sc.sensitive_repos[spec.repo].service
    p = _Pending(spec, t0, end, [owner])
    p.signals.append(_sig("audit", "audit", f"user:{spec.user}", t0, end,
                          f"{spec.accesses} reads of {spec.repo} by {spec.user} from {spec.source_ip}"))
    return p


def _plan_request_flood(g: _Gen, spec: RequestFlood, t0: datetime) -> _Pending:
    svc = g.sc.services[spec.service]
    rng = g.inc
    end = t0 + spec.duration
    ep = next((e for e in svc.endpoints if e.path == spec.path), svc.endpoints[0])
    limited = t0 + timedelta(minutes=6)
    g.access_effects.append(_AccessEffect(spec.service, t0, end, latency=lambda t: 3.0, error_share=0.05, statuses=(503,)))
    effects = [e for e in g.access_effects if e.service == spec.service]
    ips = [f"{spec.subnet}.{i}" for i in range(2, 80)]
    n = int(spec.requests_per_min * spec.duration.total_seconds() / 60)
    for _ in range(n):
        t = t0 + timedelta(seconds=float(rng.uniform(0, spec.duration.total_seconds())))
        status = 429 if t >= limited and rng.random() < 0.7 else None
        g.access_doc(spec.service, svc, t, ep.path, ep.method, ep.latency_ms, ips[int(rng.integers(len(ips)))], rng,
                     effects, status=status, agent="python-requests/2.31")
    for k in range(int(spec.duration.total_seconds() // 300)):
        g.app_doc(spec.service, t0 + timedelta(minutes=5 * k + 2), "warn",
                  f"Rate limiter engaged for {spec.path}: {int(spec.requests_per_min / 60 * 40)} req/s over limit", rng)
    p = _Pending(spec, t0, end, [spec.service])
    p.signals += [_sig("access", "access", f"service:{spec.service}", t0, end, f"request flood on {spec.path}"),
                  _sig("app", "log", f"service:{spec.service}", t0, end, "rate limiter warnings")]
    p.issues.append(g.incident_issue(spec.service, t0 + timedelta(minutes=float(rng.uniform(10, 20))),
                                     f"Traffic spike on {spec.path}", end))
    return p


def _plan_memory_leak(g: _Gen, spec: MemoryLeak, t0: datetime) -> _Pending:
    svc = g.sc.services[spec.service]
    author = g.person(spec.service, g.inc)
    commit = _PlannedCommit(t0 - timedelta(minutes=40), svc.repo, author, "Cache product images in memory")
    g.commit_plans[svc.repo].append(commit)
    deploy = _PlannedDeploy(spec.service, t0 - timedelta(minutes=4), author, commit=commit)
    g.deploys.append(deploy)
    end = t0 + spec.duration
    g.quiet_deploys.append((spec.service, t0 - timedelta(hours=3), end + timedelta(hours=1)))
    rng = g.inc
    for k in range(3):
        g.app_doc(spec.service, end - timedelta(minutes=2 - k), "error",
                  "java.lang.OutOfMemoryError: Java heap space", rng)
    g.app_doc(spec.service, end + timedelta(seconds=30), "warn", "Service restarted by supervisor after crash", rng)
    g.access_effects.append(_AccessEffect(spec.service, end - timedelta(minutes=3), end + timedelta(minutes=1),
                                          error_share=0.8, statuses=(502, 503)))
    p = _Pending(spec, t0, end, [spec.service], rc_commit=commit, rc_deploy=deploy)
    p.signals += [_sig("app", "log", f"service:{spec.service}", t0, end, "heap usage climbs in GC logs"),
                  _sig("jenkins", "deploy", f"job:{svc.deploy_job}", t0 - timedelta(minutes=4), t0, "the leaking deploy")]
    p.issues.append(g.incident_issue(spec.service, end + timedelta(minutes=5), f"{spec.service} crashed: out of memory", end))
    return p


def _plan_alert_storm(g: _Gen, spec: AlertStorm, t0: datetime) -> _Pending:
    root = g.sc.services[spec.service]
    author = g.person(spec.service, g.inc)
    commit = _PlannedCommit(t0 - timedelta(minutes=30), root.repo, author, "Rotate JWT signing keys configuration")
    g.commit_plans[root.repo].append(commit)
    deploy = _PlannedDeploy(spec.service, t0 - timedelta(minutes=4), author, commit=commit)
    g.deploys.append(deploy)
    end = t0 + spec.duration
    g.deploys.append(_PlannedDeploy(spec.service, end - timedelta(minutes=4), g.sc.oncall[0], rollback=True))
    g.commit_plans[root.repo].append(_PlannedCommit(end + timedelta(minutes=20), root.repo, author,
                                                    f'Revert "{commit.message}"'))
    services = [spec.service, *spec.affected]
    for s in services:
        g.quiet_deploys.append((s, t0 - timedelta(hours=3), end + timedelta(hours=1)))
    g.access_effects.append(_AccessEffect(spec.service, t0, end, latency=lambda t: 2.0, error_share=0.5, statuses=(500,)))
    _error_burst(g, spec.service, t0 + timedelta(minutes=1), end, spec.error_rate_per_min * 1.5, [
        "Token signature verification failed: key id 'k-2026-03' not found (request {n})",
        "JWKS refresh failed: no key matches the configured kid"])
    p = _Pending(spec, t0, end, services, rc_commit=commit, rc_deploy=deploy)
    p.signals += [_sig("app", "log", f"service:{spec.service}", t0, end, "token verification errors"),
                  _sig("access", "access", f"service:{spec.service}", t0, end, "5xx on token endpoints"),
                  _sig("jenkins", "deploy", f"job:{root.deploy_job}", t0 - timedelta(minutes=4), t0, "the auth deploy")]
    rng = g.inc
    for k, s in enumerate(spec.affected):
        lag = timedelta(minutes=2 + 2 * k)
        g.access_effects.append(_AccessEffect(s, t0 + lag, end, latency=lambda t: 1.5, error_share=0.35,
                                              statuses=(401, 502)))
        _error_burst(g, s, t0 + lag, end, spec.error_rate_per_min, [
            "Call to auth failed: 401 invalid token (request {n})",
            "Upstream auth returned 500 while validating session {n}"])
        p.signals += [_sig("app", "log", f"service:{s}", t0 + lag, end, "auth call failures"),
                      _sig("access", "access", f"service:{s}", t0 + lag, end, "401/502 responses")]
    # integration tests of one dependant run against the broken auth
    dep = g.sc.services[spec.affected[-1]]
    g.build_effects.append(_BuildEffect(dep.build_job, t0, end, failures=[
        (suite, case, "HTTP 401 from auth: invalid token") for suite, case in test_cases(dep.repo, dep.tests)[-12:]]))
    g.make_build(spec.affected[-1], t0 + timedelta(minutes=8), "user", user=g.person(spec.affected[-1], rng), rng=rng)
    p.signals.append(_sig("jenkins", "test_run", f"job:{dep.build_job}", t0, end, "auth integration tests fail"))
    p.issues.append(g.incident_issue(spec.service, t0 + timedelta(minutes=float(rng.uniform(8, 15))),
                                     "Logins failing across services", end, priority="Highest"))
    p.issues.append(g.incident_issue(spec.affected[0], t0 + timedelta(minutes=float(rng.uniform(10, 20))),
                                     f"{spec.affected[0]} returning 401/502", end))
    return p


_PLANNERS: dict[type, Callable[..., _Pending]] = {
    BadDeploy: _plan_bad_deploy, BuildCreep: _plan_build_creep, TestFailures: _plan_test_failures,
    LateLargeCommit: _plan_late_large_commit, SensitiveAccess: _plan_sensitive_access,
    RequestFlood: _plan_request_flood, MemoryLeak: _plan_memory_leak, AlertStorm: _plan_alert_storm,
}


# ----------------------------------------------------------------------------------- helpers


def test_cases(repo: str, total: int) -> list[tuple[str, str]]:
    """The (suite, case) names of a repository's first ``total`` tests: stable from build to build."""
    out = []
    for i in range(total):
        word = _WORDS[(i // 12 + _h(repo)) % len(_WORDS)]
        out.append((f"{repo.replace('-', '_')}.{word.capitalize()}Test", f"test_{word}_{i % 12}_{i}"))
    return out


test_cases.__test__ = False  # type: ignore[attr-defined]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _code_lines(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    out = []
    for _ in range(n):
        w = _WORDS[int(rng.integers(len(_WORDS)))]
        k = int(rng.integers(0, 1000))
        out.append(f"    {prefix}_{w} = compute_{w}(value, {k})  # {w} step {k}")
    return out


def _initial_tree(repo: str, svc: str, rng: np.random.Generator) -> dict[str, bytes]:
    tree = {"README.md": f"# {repo}\n\nThe {svc} service.\n".encode(),
            "Dockerfile": b"FROM python:3.11-slim\nCOPY . /app\nCMD [\"python\", \"-m\", \"app\"]\n",
            "config/app.yaml": f"service: {svc}\nport: 8080\n".encode()}
    for i in range(10):
        name = _WORDS[(i + _h(repo)) % len(_WORDS)]
        lines = [f"def {name}_{i}(value):", *_code_lines(rng, int(rng.integers(40, 160)), name), "    return value", ""]
        tree[f"src/{svc}/{name}_{i}.py"] = "\n".join(lines).encode()
    for i in range(3):
        tree[f"tests/test_{i}.py"] = "\n".join(["def test_it():", *_code_lines(rng, 30, "t"), "    assert True", ""]).encode()
    return tree


def _edit_files(tree: dict[str, bytes], rng: np.random.Generator) -> tuple[str, ...]:
    paths = sorted(p for p in tree if p.endswith(".py"))
    chosen = [paths[int(i)] for i in rng.choice(len(paths), size=min(len(paths), int(rng.integers(1, 4))), replace=False)]
    for p in chosen:
        lines = tree[p].decode().split("\n")
        at = int(rng.integers(1, max(2, len(lines) - 2)))
        removed = int(rng.integers(0, 6))
        added = _code_lines(rng, int(rng.geometric(0.08)), "v")
        lines[at:at + removed] = added
        tree[p] = "\n".join(lines).encode()
    return tuple(sorted(chosen))


def _add_big_files(tree: dict[str, bytes], repo: str, big: tuple[int, int], rng: np.random.Generator) -> tuple[str, ...]:
    files, per_file = big
    changed = []
    for i in range(files):
        path = f"vendor/syncengine/module_{i:03d}.py"
        tree[path] = "\n".join([f"# vendored module {i}", *_code_lines(rng, per_file, "sync"), ""]).encode()
        changed.append(path)
    return tuple(changed)


def generate(scenario: Scenario, seed: int | None = None) -> Timeline:
    """The whole timeline of ``scenario`` with ``seed`` (default: the scenario's own seed)."""
    seed = scenario.seed if seed is None else seed
    g = _Gen(scenario, seed)
    g.plan_incidents()
    g.plan_background_commits()
    commits = g.build_chains()
    g.plan_ci_builds(commits)
    g.plan_background_deploys()
    g.make_deploys()
    g.number_builds()
    g.plan_issues()
    g.number_issues()
    g.access_docs()
    g.app_docs()
    g.gc_docs()
    g.audit_docs()
    tags = []
    by_repo_main: dict[str, list[GitCommit]] = {}
    for c in commits:
        if c.branch == "main":
            by_repo_main.setdefault(c.repo, []).append(c)
    for t, repo, name, who, target in sorted(g.tag_plans, key=lambda x: x[0]):
        if target is not None and target.commit is not None:
            cid = target.commit.cid
        else:
            cands = [c for c in by_repo_main.get(repo, []) if c.committed <= t]
            cid = max(cands, key=lambda c: c.committed).cid
        tags.append(GitTag(repo, name, cid, who.capitalize(), g.email(who), t, f"Release {name}\n"))
    g.docs.sort(key=lambda d: (d.ts, d.source["_id"]))
    end = scenario.end
    commits = [c for c in commits if c.committed < end]
    return Timeline(scenario=scenario, seed=seed, start=scenario.start, end=end, commits=commits,
                    tags=[t for t in tags if t.ts < end],
                    builds=[b for b in g.builds if b.end < end], issues=[i for i in g.issues if i.created < end],
                    docs=[d for d in g.docs if g.start <= d.ts < end], ground_truth=g.ground_truth())
