"""Correlation and Slack delivery: throughput, compression and grouping quality on synthetic storms.

Usage: ``python bench/correlation.py [--problems 60] [--noise 200] [--seed 11]``

A seeded synthetic estate of 24 services (each with a repository, two Jenkins jobs, a Jira project and
an ES service name; some depend on others) lives through one day. ``--problems`` problems each start
on one service and raise 3–30 alerts over up to 20 minutes, from Jenkins, Git, Jira and
Elasticsearch, on the service's entities and on the services that depend on it. ``--noise`` lone
alerts land on random entities at random times. Several problems overlap in time.

It reports: ``Correlator.add`` throughput on a SQLite file store; alerts per incident; the grouping
quality against the ground truth (pairwise precision and recall over alert pairs: precision = pairs
put together that belong together, recall = pairs that belong together and were put together); and
the same restricted to the problems' alerts (a lone alert on a service in trouble is
*meant* to join its incident, which the first figure counts as an error); and the outbox drained
into the Slack fake (no pacing): Slack calls and messages per incident. The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient

from opsradar.alerting.correlation import Change, Correlator, IncidentUpdate
from opsradar.alerting.notifiers.outbox import Notifier, OutboxWorker
from opsradar.alerting.notifiers.slack import SlackTransport
from opsradar.config import CorrelationConfig, EntityGraph, SlackConfig
from opsradar.demo.fakes.slack import SlackFake
from opsradar.models import Alert, Incident, Severity
from opsradar.store import Store

T0 = datetime(2026, 3, 2, tzinfo=UTC)
TOKEN = "xoxb-bench"


def estate(rng: random.Random, n: int = 24) -> EntityGraph:
    services = {}
    names = [f"svc{i:02d}" for i in range(n)]
    for i, name in enumerate(names):
        deps = [names[j] for j in rng.sample(range(i), k=min(i, rng.choice([0, 0, 1, 1, 2])))] if i else []
        services[name] = {"repos": [f"{name}-repo"], "jobs": [f"{name}-build", f"{name}-deploy"],
                          "jira_projects": [name.upper()], "es_services": [f"{name}-api"], "depends_on": deps}
    return EntityGraph.model_validate({"services": services})


def entities_of(graph: EntityGraph, svc: str) -> list[tuple[str, str]]:
    s = graph.services[svc]
    return [(f"job:{s.jobs[0]}", "jenkins"), (f"job:{s.jobs[1]}", "jenkins"), (f"repo:{s.repos[0]}", "git"),
            (f"project:{s.jira_projects[0]}", "jira"), (f"service:{s.es_services[0]}", "elasticsearch")]


TITLES = ["{kind} duration anomalous on {e}", "Error rate up on {e}: Timeout after {n} ms",
          "Unusual commit burst on {e}", "Incident tickets spike on {e}", "Failed {kind} on {e}"]


def scenario(graph: EntityGraph, rng: random.Random, problems: int, noise: int) -> list[tuple[datetime, Alert, str]]:
    dependents: dict[str, list[str]] = defaultdict(list)
    for name, s in graph.services.items():
        for d in s.depends_on:
            dependents[d].append(name)
    out: list[tuple[datetime, Alert, str]] = []
    names = list(graph.services)
    for p in range(problems):
        root = rng.choice(names)
        start = T0 + timedelta(seconds=rng.uniform(0, 86400 - 3600))
        affected = [root, *rng.sample(dependents[root], k=min(len(dependents[root]), rng.choice([0, 1, 2])))]
        for k in range(rng.randint(3, 30)):
            svc = affected[0] if k == 0 else rng.choice(affected)
            entity, source = rng.choice(entities_of(graph, svc))
            title = rng.choice(TITLES).format(kind=rng.choice(["build", "deploy"]), e=entity, n=rng.randint(1, 9) * 1000)
            at = start + timedelta(seconds=rng.uniform(0, 1200)) if k else start
            labels = {"alertname": title.split()[0], "entity": entity, "source": source, "problem": f"p{p}-{k}"}
            out.append((at, Alert.from_labels(title=title, labels=labels, starts_at=at,
                                              severity=rng.choice(list(Severity))), f"p{p}"))
    for q in range(noise):
        svc = rng.choice(names)
        entity, source = rng.choice(entities_of(graph, svc))
        at = T0 + timedelta(seconds=rng.uniform(0, 86400))
        labels = {"alertname": "Noise", "entity": entity, "source": source, "problem": f"n{q}"}
        out.append((at, Alert.from_labels(title=f"Odd value on {entity}", labels=labels, starts_at=at), f"n{q}"))
    out.sort(key=lambda x: x[0])
    return out


def pairwise(truth: dict[str, str], got: dict[str, str]) -> tuple[float, float]:
    by_truth, by_got = defaultdict(list), defaultdict(list)
    for fp, t in truth.items():
        by_truth[t].append(fp)
    for fp, g in got.items():
        by_got[g].append(fp)
    same_truth = {frozenset(p) for fps in by_truth.values() for p in itertools.combinations(fps, 2)}
    same_got = {frozenset(p) for fps in by_got.values() for p in itertools.combinations(fps, 2)}
    both = len(same_truth & same_got)
    precision = both / len(same_got) if same_got else 1.0
    recall = both / len(same_truth) if same_truth else 1.0
    return precision, recall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=60)
    ap.add_argument("--noise", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--max-graph-distance", type=int, default=CorrelationConfig().max_graph_distance)
    ap.add_argument("--window", default="30m")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    graph = estate(rng)
    alerts = scenario(graph, rng, args.problems, args.noise)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/state.db")
        corr = Correlator(store, graph, CorrelationConfig(max_graph_distance=args.max_graph_distance,
                                                          window=args.window))
        notifier = Notifier(store, SlackConfig(default_channel="#ops", storm_threshold=1000))
        truth, got = {}, {}
        t = time.perf_counter()
        for at, a, problem in alerts:
            u = corr.add(a, at)
            truth[a.fingerprint], got[a.fingerprint] = problem, u.incident_id or ""
        add_s = time.perf_counter() - t
        t = time.perf_counter()  # one parent message per incident, timed apart from correlation
        for doc in store.list_incidents(limit=100_000):
            notifier.notify(IncidentUpdate(Incident.model_validate(doc), (Change.opened,)))
        enqueue_s = time.perf_counter() - t
        incidents = len(store.list_incidents(limit=100_000))
        precision, recall = pairwise(truth, got)
        problem_fps = [fp for fp, t in truth.items() if t.startswith("p")]
        p_precision, p_recall = pairwise({fp: truth[fp] for fp in problem_fps}, {fp: got[fp] for fp in problem_fps})
        noise_joined = sum(1 for fp, t in truth.items() if t.startswith("n") and
                           sum(1 for g in got.values() if g == got[fp]) > 1)
        with SlackFake(token=TOKEN, channels=["ops"]) as fake:
            client = WebClient(token=TOKEN, base_url=fake.url + "/api/")
            worker = OutboxWorker(store, SlackTransport(client, store), pace=0.0)
            t = time.perf_counter()
            stats = worker.drain()
            drain_s = time.perf_counter() - t
            messages = len(fake.channel_messages("ops"))
            calls = len(fake.requests)
        store.close()
    figures = {
        "max_graph_distance": args.max_graph_distance, "window": args.window,
        "alerts": len(alerts), "incidents": incidents, "true_problems": args.problems + args.noise,
        "alerts_per_incident": round(len(alerts) / incidents, 2),
        "pairwise_precision": round(precision, 3), "pairwise_recall": round(recall, 3),
        "problems_only_precision": round(p_precision, 3), "problems_only_recall": round(p_recall, 3),
        "lone_alerts_joined": noise_joined,
        "correlate_alerts_per_s": round(len(alerts) / add_s, 1),
        "enqueue_incidents_per_s": round(incidents / enqueue_s, 1),
        "slack_messages": messages, "slack_calls": calls, "delivered_rows": stats.delivered,
        "slack_messages_per_s": round(messages / drain_s, 1),
    }
    print(f"{figures['alerts']} alerts ({args.problems} problems + {args.noise} lone alerts) → "
          f"{incidents} incidents ({figures['alerts_per_incident']} alerts/incident)")
    print(f"grouping vs ground truth: pairwise precision {precision:.3f}, recall {recall:.3f}")
    print(f"  problems only (lone alerts left out): precision {p_precision:.3f}, recall {p_recall:.3f}; "
          f"{noise_joined} of {args.noise} lone alerts joined an incident")
    print(f"Correlator.add: {figures['correlate_alerts_per_s']} alerts/s (SQLite file store)")
    print(f"outbox → Slack fake (no pacing): {messages} messages, {calls} calls, {figures['slack_messages_per_s']} messages/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
