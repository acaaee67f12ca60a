"""Collector throughput for Elasticsearch (loopback fake) and git (real repositories made here).

Sections of ``bench/collect.py`` (``--only elasticsearch,git``); also runs on its own:
``python bench/collect_logs_git.py [--scale 1.0] [--repeat 3]`` (last line one JSON object).

- ``elasticsearch``: 20,000 ECS documents × scale in 4 daily indices (70 % application logs with
  Drain3 template mining, 25 % access logs, 5 % audit), read from ``logs-*`` with a point in time
  and ``search_after``, 500 per page. The fake filters and sorts in Python for every page, so the
  figure is a floor set largely by the fake, not by the collector.
- ``git``: 3 repositories of 1,000 commits × scale each (written with ``git fast-import``: one
  file changed per commit, every 50th commit tagged as a release), read with ``git log --numstat``.

Each figure is the median of ``--repeat`` full first pulls: ``pull()`` alone, and ``run_once()``
into a fresh SQLite file store (each batch committed with its cursor).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


def _es_docs(n: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    services = ["shop", "pay", "auth", "search"]
    paths = ["/api/orders/{}", "/api/cart", "/api/users/{}/profile", "/health", "/api/pay/{}"]
    out: dict[str, list[dict[str, Any]]] = {}
    for i in range(n):
        ts = T0 + timedelta(seconds=i * 17)
        svc = services[i % 4]
        base = {"_id": f"e{i}", "@timestamp": ts.isoformat().replace("+00:00", "Z"), "service.name": svc,
                "host.name": f"{svc}-{i % 3}"}
        r = rng.random()
        if r < 0.70:
            msg = rng.choice([f"order {rng.randint(1, 99999)} paid in {rng.randint(1, 900)} ms",
                              f"cache miss for key user:{rng.randint(1, 5000)}",
                              f"connection to db-{rng.randint(1, 3)}:5432 reset after {rng.randint(1, 30)} s",
                              "scheduler tick"])
            doc = {**base, "message": msg, "log.level": rng.choice(["info"] * 8 + ["warn", "error"]),
                   "event.dataset": f"{svc}.app"}
        elif r < 0.95:
            doc = {**base, "event.dataset": "nginx.access", "url.path": rng.choice(paths).format(rng.randint(1, 9999)),
                   "http.request.method": rng.choice(["GET", "GET", "POST"]),
                   "http.response.status_code": rng.choice([200] * 20 + [404, 500, 503]),
                   "event.duration": rng.randint(1, 900) * 1_000_000, "source.ip": f"10.0.{i % 250}.{i % 7}"}
        else:
            doc = {**base, "event.category": ["iam"], "user.name": rng.choice(["ana", "bo", "cy"]),
                   "event.action": rng.choice(["login", "role-granted"]), "event.outcome": "success",
                   "orchestrator.resource.name": f"{svc}-db"}
        out.setdefault(f"logs-{svc}-{ts:%Y.%m.%d}", []).append(doc)
    return out


def bench_elasticsearch(scale: float, repeat: int) -> dict[str, float]:
    from opsradar.collectors.elasticsearch import ElasticsearchCollector
    from opsradar.config import ElasticsearchSource
    from opsradar.demo.fakes.elasticsearch import ElasticsearchFake

    n = int(20_000 * scale)
    fake = ElasticsearchFake()
    for index, docs in _es_docs(n, random.Random(7)).items():
        fake.index_documents(index, docs)
    with fake:
        source = ElasticsearchSource(url=fake.url, index="logs-*", batch_size=500)
        out = _measure(lambda: ElasticsearchCollector("logs", source), repeat)
        out["requests"] = float(len(fake.requests))
    out["documents"] = float(n)
    return out


def _fast_import_repo(path: Path, commits: int, rng: random.Random) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    authors = [("Ana", "ana@example.com", "+0100"), ("Bo", "bo@example.com", "-0500"), ("Cy", "cy@example.com", "+0000")]
    chunks: list[bytes] = []
    start = int(T0.timestamp())
    for i in range(1, commits + 1):
        name, email, tz = rng.choice(authors)
        when = start + i * 3600 + rng.randint(0, 1800)
        content = "".join(f"line {rng.randint(0, 10**6)}\n" for _ in range(rng.randint(1, 40))).encode()
        msg = f"change {i}\n".encode()
        head = (f"commit refs/heads/main\nmark :{i}\nauthor {name} <{email}> {when} {tz}\n"
                f"committer {name} <{email}> {when} {tz}\ndata {len(msg)}\n").encode()
        body = head + msg + (f"from :{i - 1}\n".encode() if i > 1 else b"")
        body += f"M 644 inline src/file{rng.randint(0, 30)}.txt\ndata {len(content)}\n".encode() + content + b"\n"
        chunks.append(body)
        if i % 50 == 0:
            tag_msg = f"release {i // 50}\n".encode()
            chunks.append(f"tag v1.{i // 50}.0\nfrom :{i}\ntagger {name} <{email}> {when + 7200} {tz}\n"
                          f"data {len(tag_msg)}\n".encode() + tag_msg + b"\n")
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(chunks), check=True)


def bench_git(scale: float, repeat: int) -> dict[str, float]:
    from opsradar.collectors.git import GitCollector
    from opsradar.config import GitSource

    per_repo = int(1000 * scale)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        repos = []
        for name in ("shop-svc", "pay-svc", "auth-svc"):
            _fast_import_repo(Path(tmp) / name, per_repo, rng)
            repos.append({"path": str(Path(tmp) / name), "name": name})
        source = GitSource(repos=repos, batch_size=500)  # type: ignore[arg-type]
        out = _measure(lambda: GitCollector("git", source), repeat)
    out["commits"] = float(3 * per_repo)
    return out


SECTIONS: dict[str, Callable[[float, int], dict[str, float]]] = {
    "elasticsearch": bench_elasticsearch,
    "git": bench_git,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    results = {}
    for name, fn in SECTIONS.items():
        r = fn(args.scale, args.repeat)
        results[name] = r
        print(f"{name:<14} events={int(r['events']):>6}  pull {r['pull_events_per_s']:>9.1f} ev/s  "
              f"pull+store {r['pull_and_store_events_per_s']:>9.1f} ev/s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
