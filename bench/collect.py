"""Collector throughput against the loopback fakes: events per second, pull alone and pull + store.

Usage: ``python bench/collect.py [--only jira,jenkins] [--scale 1.0] [--repeat 3]``

Each section loads a synthetic, seeded data set into its fake (on 127.0.0.1, real HTTP), then
measures a full first pull twice: the collector's ``pull()`` alone (HTTP, JSON, normalisation), and
``run_once()`` into a fresh SQLite file store (each page committed with its cursor). Figures are the
median of ``--repeat`` runs. Sections:

- ``jira``: issues in 4 projects, each created then moved through 3 transitions (4 events per
  issue), searched 100 per page (the fake caps ``maxResults`` at 100, as Jira Cloud does).
- ``jenkins``: jobs in folders, each with 100 finished builds; every other build has a JUnit report
  of 50 cases, read with its own request (one ``build`` and sometimes one ``test_run`` event per build).

Another collector adds its own section to ``SECTIONS``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from opsradar.collectors.base import Collector, run_once
from opsradar.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _measure(make: Callable[[], Collector], repeat: int) -> dict[str, float]:
    pull_rates, store_rates, events = [], [], 0
    for _ in range(repeat):
        coll = make()
        t = time.perf_counter()
        events = sum(len(b.events) for b in coll.pull(None))
        pull_rates.append(events / (time.perf_counter() - t))
        coll.close()
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"sqlite:///{tmp}/state.db")
            coll = make()
            t = time.perf_counter()
            result = run_once(coll, store)
            store_rates.append(result.new / (time.perf_counter() - t))
            coll.close()
            store.close()
    return {"events": float(events), "pull_events_per_s": round(statistics.median(pull_rates), 1),
            "pull_and_store_events_per_s": round(statistics.median(store_rates), 1)}


def bench_jira(scale: float, repeat: int) -> dict[str, float]:
    from opsradar.collectors.jira import JiraCollector
    from opsradar.config import JiraSource
    from opsradar.demo.fakes.jira import FakeJira

    rng = random.Random(7)
    fake = FakeJira(users={"bench": "token"})
    projects = ["SHOP", "PAY", "AUTH", "SEARCH"]
    n = int(2000 * scale)
    for i in range(n):
        key = f"{projects[i % 4]}-{i // 4 + 1}"
        created = T0 + timedelta(minutes=i)
        fake.add_issue({"key": key, "fields": {
            "summary": f"issue {i}", "issuetype": {"name": rng.choice(["Bug", "Story", "Task", "Incident"])},
            "priority": {"name": rng.choice(["Low", "Medium", "High"])}, "labels": ["bench"],
            "status": {"name": "To Do", "statusCategory": {"key": "new"}}, "assignee": {"name": "ana"},
            "created": created, "updated": created}})
        at = created
        for status in ("In Progress", "In Review", "Done"):
            at += timedelta(minutes=rng.randint(5, 600))
            fake.transition(key, status, at=at, author="ana")
    os.environ["BENCH_JIRA_TOKEN"] = "token"
    with fake:
        source = JiraSource(url=fake.url, projects=projects, user="bench", token_env="BENCH_JIRA_TOKEN", page_size=100)
        out = _measure(lambda: JiraCollector("jira", source), repeat)
        out["requests_per_pull"] = len(fake.requests) / (2 * repeat)
    out["issues"] = float(n)
    return out


def bench_jenkins(scale: float, repeat: int) -> dict[str, float]:
    from opsradar.collectors.jenkins import JenkinsCollector
    from opsradar.config import JenkinsSource
    from opsradar.demo.fakes.jenkins import FakeJenkins, git_changes, scm_cause, time_in_queue

    rng = random.Random(7)
    fake = FakeJenkins(users={"bench": "token"})
    jobs = [f"team{t}/svc{s}-{kind}" for t in range(2) for s in range(max(1, int(3 * scale))) for kind in ("build", "deploy")]
    for job in jobs:
        fake.add_job(job)
        for n in range(1, 101):
            report = None
            if n % 2 == 0:
                report = {"suites": [{"name": "suite", "cases": [
                    {"className": "svc.Test", "name": f"case{c}", "status": "FAILED" if rng.random() < 0.02 else "PASSED"}
                    for c in range(50)]}]}
            fake.add_build(job, {"number": n, "result": rng.choice(["SUCCESS"] * 8 + ["FAILURE", "UNSTABLE"]),
                                 "duration": rng.randint(30_000, 600_000), "timestamp": T0 + timedelta(minutes=15 * n),
                                 "actions": [scm_cause(), time_in_queue(rng.randint(0, 60_000))],
                                 "changeSet": git_changes(f"{n:040x}")}, test_report=report)
    os.environ["BENCH_JENKINS_TOKEN"] = "token"
    with fake:
        source = JenkinsSource(url=fake.url, user="bench", token_env="BENCH_JENKINS_TOKEN", max_builds=100)
        out = _measure(lambda: JenkinsCollector("jenkins", source), repeat)
        out["requests_per_pull"] = len(fake.requests) / (2 * repeat)
    out["jobs"] = float(len(jobs))
    out["builds"] = float(len(jobs) * 100)
    return out


def _sibling(name: str) -> Callable[[float, int], dict[str, float]]:
    """A section defined in ``bench/collect_logs_git.py`` (elasticsearch, git)."""

    def run(scale: float, repeat: int) -> dict[str, float]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import collect_logs_git

        return collect_logs_git.SECTIONS[name](scale, repeat)  # type: ignore[no-any-return]

    return run


SECTIONS: dict[str, Callable[[float, int], dict[str, float]]] = {
    "jira": bench_jira,
    "jenkins": bench_jenkins,
    "elasticsearch": _sibling("elasticsearch"),
    "git": _sibling("git"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    ap.add_argument("--scale", type=float, default=1.0, help="data set size factor")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; known: {sorted(SECTIONS)}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    for name in wanted:
        r = SECTIONS[name](args.scale, args.repeat)
        results[name] = r
        print(f"{name:<10} events={int(r['events']):>6}  pull {r['pull_events_per_s']:>9.1f} ev/s  "
              f"pull+store {r['pull_and_store_events_per_s']:>9.1f} ev/s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
