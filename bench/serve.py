"""Serving benchmark: the real ``opsradar run`` on local Ray Serve, driven over loopback.

What it measures, in one run:

1. **Baseline**: raw River ``HalfSpaceTrees`` learn-and-score throughput on one core (2 features),
   in this process, for ``--hst-seconds``, before ``opsradar run`` starts and again after it stopped.
   The ratio is to the mean of both: a shared host's speed drifts within a run, by a third at times,
   and one reading at the start alone moved the ratio as much as a code change does.
2. **Cold start**: ``opsradar run --config FILE`` as a subprocess, until ``GET /readyz`` is 200.
3. **Throughput**: ``--concurrency`` clients POST batches of ``--batch`` build events (over
   ``--jobs`` streams) to ``/v1/events`` for ``--seconds`` (or until ``--events`` were sent, if given);
   events/s is over the load's own time, not the latency probes' schedule. The same load runs
   first for ``--warm-seconds`` (15 s), unmeasured, so that one-time work (the PyOD refit worker's
   start, the first group fits, the first requests) stays out of the sustained rate.
   A response comes back after the events were stored and detected by their shards, so events/s
   is "all the way to detector scores"; the owner (rules, anomalies stored, incidents, root cause)
   handles them after the answer, in order, so the run then waits until ``/readyz`` reports its
   queue empty and also prints events/s all the way to incidents (``owner_events_per_s``).
4. **Latency probes**: meanwhile, every ``--seconds / --probes`` one spike event on its own
   service is posted; ingest → anomaly detected is its request time (the shard scored it), ingest →
   anomaly stored is when the store first holds its anomaly (the owner wrote it; the bench polls
   the store every 20 ms: ``p50_ms``/``p99_ms``), ingest → Slack post is the Slack fake's message
   ``ts`` minus the send time, minus the ``group_wait`` that the incident's first message waits
   (the rules' routes; ``slack_p50_ms``/``slack_p99_ms``: the latency beyond ``group_wait``).
5. **Memory**: RSS summed over the process tree of ``opsradar run`` (Ray's GCS, raylet, workers,
   replicas), after the load; and PSS, which counts each shared page once (``pss_mb``).
6. **CPU per event**: user + system CPU seconds of each process of ``opsradar run`` (by role:
   ingress, shards, owner, proxy, collectors, other Ray workers, Ray's own processes) over the load
   and the owner's catch-up, divided by the events stored; and the load client's own. Of that, the
   time in CPython's garbage collector, by deployment (``opsradar_gc_seconds`` on ``/metrics``). With
   ``--postgres``, also the CPU of the local PostgreSQL server's processes, which share the cores.
7. **Profile** (``--profile``): ``py-spy record`` on the Ingress, a detector shard, the Owner and
   the HTTP proxy during the load; prints each one's busiest frames.
8. **Shutdown**: SIGINT, then checks the exit code and the detector checkpoint rows.

Usage: ``python bench/serve.py`` (``--quick`` for a short run; ``--haproxy`` for Serve's HAProxy ingress; ``--postgres
postgresql+psycopg://postgres@127.0.0.1:5432/test`` to run the store on a fresh database of that
PostgreSQL server instead of SQLite). The last line is one JSON object
with ``events_per_s``, ``ratio_to_hst``, ``p50_ms``, ``p99_ms``, ``cold_start_s``, ``rss_mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).parents[1]
TOKEN = "bench-operator-token"
PG_ROLE = "postgresql server (local, not in opsradar run)"
#: The load's event time: a minute per event from this Monday on, so that millions of events stay in
#: the past (the API refuses events more than api.max_clock_skew ahead of its clock).
T0 = datetime(2020, 1, 6, tzinfo=UTC)


def hst_baseline(seconds: float) -> float:
    """Raw River HalfSpaceTrees learn_one + score_one per second, one core."""
    from river.anomaly import HalfSpaceTrees

    rng = random.Random(1)
    model = HalfSpaceTrees(seed=1)
    xs = [{"duration_s": rng.random(), "queue_s": rng.random()} for _ in range(4096)]
    n, t = 0, time.perf_counter()
    end = t + seconds
    while time.perf_counter() < end:
        for x in xs[:512]:
            model.score_one(x)
            model.learn_one(x)
        n += 512
        xs.append(xs.pop(0))
    return n / (time.perf_counter() - t)


def _postgres_admin(server_url: str, *statements: str) -> None:
    """Run ``statements`` outside a transaction (CREATE/DROP DATABASE) on the server of ``server_url``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for sql in statements:
            conn.execute(text(sql))
    engine.dispose()


def fresh_postgres(server_url: str) -> str:
    """A new, empty database on the PostgreSQL server of ``server_url``; its URL."""
    from sqlalchemy import make_url

    name = f"opsradar_bench_{os.getpid()}"
    _postgres_admin(server_url, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres(server_url: str, url: str) -> None:
    from sqlalchemy import make_url

    _postgres_admin(server_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def shard_checkpoints(url: str) -> list[str]:
    """The detector shards' checkpoint keys in the store."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        keys = [r[0] for r in conn.execute(text("select key from checkpoints where key like 'detectors/shard-%'"))]
    engine.dispose()
    return sorted(keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, port: int, slack_url: str, probes: int, jobs: int, store_url: str, shards: int = 2,
                 haproxy: bool = False) -> Path:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    services = "\n".join(f"    probe{i}: {{jobs: [probe{i}]}}" for i in range(probes))
    services += "\n" + "\n".join(f"    load{j}: {{jobs: [load{j}]}}" for j in range(jobs))
    path = tmp / "opsradar.yaml"
    path.write_text(
        f"store: {{url: '{store_url}'}}\n"
        f"api:\n  host: 127.0.0.1\n  port: {port}\n  haproxy: {str(haproxy).lower()}\n  tokens:\n    - {{name: bench, role: admin, sha256: {digest}}}\n"
        f"rules: {{paths: ['{ROOT / 'rules'}'], watch: false}}\n"
        f"detectors: {{warmup: 30, shards: {shards}, checkpoint_interval: 30s}}\n"
        f"slack: {{enabled: true, base_url: '{slack_url}/api/', token_env: BENCH_SLACK_TOKEN}}\n"
        f"entities:\n  services:\n{services}\n"
    )
    return path


def build(job: str, i: int, duration: float) -> dict[str, Any]:
    return {"source": "jenkins", "native_id": f"{job}#{i}", "kind": "build", "ts": (T0 + timedelta(minutes=i)).isoformat(),
            "entity": f"job:{job}", "labels": {"result": "SUCCESS"}, "values": {"duration_s": duration, "queue_s": 2.0}}


_BUILD_JSON = ('{"source": "jenkins", "native_id": "%s#%d", "kind": "build", "ts": "%s", "entity": "job:%s", '
               '"labels": {"result": "SUCCESS"}, "values": {"duration_s": %r, "queue_s": 2.0}}')


class BodyWriter:
    """The JSON body of a batch of :func:`build` documents, written from a template: the load
    generator shares the 2 cores with the server, and ``json.dumps`` of dicts cost it ~3x more CPU
    per event. ``check()`` compares its output with :func:`build`'s documents."""

    def __init__(self) -> None:
        self._ts: dict[int, str] = {}

    def ts(self, i: int) -> str:
        found = self._ts.get(i)
        if found is None:
            found = self._ts[i] = (T0 + timedelta(minutes=i)).isoformat()
        return found

    def body(self, items: list[tuple[str, int, float]]) -> bytes:
        ts = self.ts
        return ("[" + ", ".join([_BUILD_JSON % (job, i, ts(i), job, float(d)) for job, i, d in items]) + "]").encode()

    def check(self) -> None:
        items = [("load7", 1001, 300.0), ("load0", 2, 312.25), ("load3", 99999, 1e-7)]
        if json.loads(self.body(items)) != [build(*it) for it in items]:
            raise SystemExit("bench: the body template and build() disagree")


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):  # a process that ended meanwhile
                children[int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])].append(int(d))
    out, todo, seen = [], [root], set()
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            out.append(p)
            todo += children.get(p, [])
    return out


def postgres_cpu_s() -> float:
    """User + system CPU seconds of this machine's PostgreSQL server processes so far (a local server
    shares the cores; its backends live as long as the store's pooled connections)."""
    total = 0.0
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{d}/comm").read_text().strip() == "postgres":
                    total += _cpu_s(int(d))
    return total


def _proc_kib(pid: int, name: str, key: str) -> int:
    """The kB figure ``key`` of ``/proc/<pid>/<name>`` (0 if the process ended or has none)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _rss_kib(pid: int) -> int:
    return _proc_kib(pid, "status", "VmRSS:")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> str | None:
    """The process title, with Serve's ``#`` separators read as ``:`` (None if it ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").replace("#", ":")
    except OSError:
        return None


def tree_rss_mb(root: int) -> float:
    """RSS of ``root`` and all its descendants (from /proc): pages shared between them (the Python
    runtime, Ray's libraries) count once per process."""
    return sum(_rss_kib(p) for p in _tree(root)) / 1024


def _pss_kib(pid: int) -> int:
    return _proc_kib(pid, "smaps_rollup", "Pss:")


def tree_pss_mb(root: int) -> float:
    """PSS of ``root`` and all its descendants: each shared page split between its sharers, so the
    sum is the memory the tree holds (``smaps_rollup``; 0 where the kernel does not give it)."""
    return sum(_pss_kib(p) for p in _tree(root)) / 1024


def _role(pid: int) -> str:
    cmd = _cmdline(pid)
    if cmd is None:
        return "gone"
    for role, needle in (("ingress", ":Ingress"), ("owner", ":Owner"), ("proxy", "ProxyActor"),
                         ("collectors", ":Collectors"), ("serve controller", "ServeController")):
        if needle in cmd:
            return role
    if cmd.split(" ", 1)[0].endswith("haproxy"):  # --haproxy: the C proxy in front of the ingress
        return "haproxy"
    if ":DetectorShard-" in cmd:
        return "shards"
    if cmd.startswith("ray::"):  # refit tasks, idle workers, Ray's agents
        return "ray::" + cmd[5:].split()[0].split(".")[0][:40] if cmd[5:].strip() else "ray::?"
    for name in ("gcs_server", "raylet", "dashboard.py", "monitor.py", "log_monitor.py"):
        if name in cmd:
            return name.removesuffix(".py")
    return "ray system"  # the driver (opsradar run), other helpers


def tree_cpu_s(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``root``'s process tree, by role (from /proc)."""
    out: dict[str, float] = collections.defaultdict(float)
    for p in _tree(root):
        out["ray system" if p == root else _role(p)] += _cpu_s(p)
    return dict(out)


def replica_pids() -> dict[str, int]:
    """Pids of the Serve replicas and proxy, by role, from their process titles."""
    found: dict[str, int] = {}
    for d in os.listdir("/proc"):
        cmd = _cmdline(int(d)) if d.isdigit() else None
        if cmd is None or not cmd.startswith("ray::"):
            continue
        for role, needle in (("ingress", ":Ingress"), ("shard0", ":DetectorShard-0"), ("owner", ":Owner"),
                             ("proxy", "ProxyActor")):
            if needle in cmd and role not in found:
                found[role] = int(d)
    return found


def rules_group_wait(rules: Path) -> float:
    """The ``group_wait`` (s) of the rules' routes: one value, or the bench cannot tell which applies."""
    from opsradar.alerting.rules.loader import load_rules
    from opsradar.alerting.rules.routing import RouteNode, compile_route

    def nodes(n: RouteNode) -> list[RouteNode]:
        return [n, *(m for c in n.children for m in nodes(c))]

    waits = {n.group_wait.total_seconds() for n in nodes(compile_route(load_rules([rules]).route))}
    if len(waits) != 1:
        raise SystemExit(f"the routes in {rules} have several group_wait values {sorted(waits)}: "
                         "the Slack latency beyond group_wait would be ambiguous")
    return waits.pop()


def profile(pids: dict[str, int], seconds: float, out: Path) -> dict[str, list[tuple[str, float]]]:
    """py-spy record --gil (raw collapsed stacks of the thread holding the GIL: CPU in Python) on each pid;
    the top frames by share of samples."""
    spy = Path(sys.executable).with_name("py-spy")
    procs = {role: subprocess.Popen([str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50",
                                     "--format", "raw", "-o", str(out / f"{role}.txt"), "--nonblocking", "--gil"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for role, pid in pids.items()}
    tops: dict[str, list[tuple[str, float]]] = {}
    for role, p in procs.items():
        p.wait(timeout=seconds + 60)
        path = out / f"{role}.txt"
        if path.exists():
            tops[role] = summarize(path.read_text())
    return tops


_IDLE = ("Worker.main_loop (ray/_private/worker.py", "Thread.run (threading.py", "Condition.wait (threading.py",
         "_worker (concurrent/futures/thread.py", "select (selectors.py", "run_forever (asyncio/base_events.py")
_OURS = ("serving/", "detectors/", "alerting/", "opsradar/", "collectors/")


def _path(frame: str) -> str:
    return frame.rsplit(" (", 1)[-1].rstrip(")")


def summarize(raw: str, top: int = 7) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks: the busy share, then our functions by inclusive share of samples."""
    total = busy = 0
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        if frames[-1].startswith(_IDLE):
            continue
        busy += int(n)
        for f in {f.rsplit(":", 1)[0] + ")" for f in frames if _path(f).startswith(_OURS)}:
            inclusive[f] += int(n)
    if not total:
        return []
    return [("busy (not waiting)", round(busy / total, 3))] + [(f, round(c / total, 3)) for f, c in inclusive.most_common(top)]


def anomaly_stored(engine: Any, entity: str, ts: datetime) -> bool:
    """Whether the store holds an anomaly of ``entity`` at ``ts`` (a probe's)."""
    from sqlalchemy import select

    from opsradar import schema as t

    with engine.connect() as conn:
        q = select(t.anomalies.c.id).where(t.anomalies.c.entity == entity, t.anomalies.c.ts == ts).limit(1)
        return conn.execute(q).first() is not None


async def load(url: str, *, events: int, seconds: float, batch: int, concurrency: int, jobs: int,
               probes: int, noise: float, store_url: str, counters: list[int] | None = None) -> dict[str, Any]:
    """``concurrency`` clients posting batches for ``seconds`` (or ``events``), with ``probes``
    spike probes spread over it. ``counters`` (builds posted per job so far) carries on from an
    earlier load, so that its events are new ones, not resends."""
    from sqlalchemy import create_engine

    headers = {"Authorization": f"Bearer {TOKEN}"}
    sent = stored = 0
    batch_ms: list[float] = []
    probe_ms: list[float] = []  # ingest -> anomaly detected: the POST's answer
    stored_ms: list[float] = []  # ingest -> anomaly stored: the owner wrote it (polled every 20 ms)
    reader = create_engine(store_url)
    probe_sent: dict[str, float] = {}
    counters = counters if counters is not None else [0] * jobs
    names = [f"load{j}" for j in range(jobs)]
    writer = BodyWriter()
    writer.check()
    rng = random.Random(7)
    stop_at = time.monotonic() + seconds
    limit = events or float("inf")
    async with httpx.AsyncClient(base_url=url, timeout=300, headers=headers) as client:
        async def worker() -> None:
            nonlocal sent, stored
            while sent < limit and time.monotonic() < stop_at:
                items = []
                for _ in range(batch):
                    j = rng.randrange(jobs)
                    counters[j] += 1
                    items.append((names[j], 1000 + counters[j], 300 + rng.gauss(0, noise)))
                body = writer.body(items)
                sent += len(items)
                t = time.perf_counter()
                r = await client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
                batch_ms.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                stored += r.json()["stored"]

        async def probe(i: int) -> None:
            await asyncio.sleep(seconds * (i + 1) / (probes + 1))  # spread over the load, each on its own
            if time.monotonic() >= stop_at or sent >= limit:
                return
            t = time.perf_counter()
            probe_sent[f"probe{i}"] = time.time()
            doc = build(f"probe{i}", 500, 3000.0)
            r = await client.post("/v1/events", json=[doc])
            r.raise_for_status()
            if r.json()["anomalies"] >= 1:
                probe_ms.append((time.perf_counter() - t) * 1000)
                ts = datetime.fromisoformat(doc["ts"])
                deadline = time.perf_counter() + 120
                while time.perf_counter() < deadline:
                    if await asyncio.to_thread(anomaly_stored, reader, doc["entity"], ts):
                        stored_ms.append((time.perf_counter() - t) * 1000)
                        break
                    await asyncio.sleep(0.02)

        async def prober() -> None:
            await asyncio.gather(*(probe(i) for i in range(probes)))

        async def workers() -> float:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t0  # the load's own time: probes may still be sleeping

        t0 = time.perf_counter()
        elapsed, _ = await asyncio.gather(workers(), prober())
    reader.dispose()
    return {"sent": sent, "stored": stored, "elapsed_s": elapsed, "batch_ms": batch_ms, "probe_ms": probe_ms,
            "stored_ms": stored_ms, "probe_sent": probe_sent}


def warm_up(url: str, *, probes: int, jobs: int, noise: float) -> None:
    """History for every stream, so the load runs on warm detectors."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    rng = random.Random(3)
    names = [f"probe{i}" for i in range(probes)] + [f"load{j}" for j in range(jobs)]
    with httpx.Client(base_url=url, timeout=300, headers=headers) as client:
        docs = [build(n, i, 300 + rng.gauss(0, noise if n.startswith("load") else 8)) for n in names for i in range(40)]
        for k in range(0, len(docs), 1000):
            client.post("/v1/events", json=docs[k:k + 1000]).raise_for_status()


def owner_backlog(url: str) -> int | None:
    """Events the ingress has queued for the owner and not yet handed (``/readyz``); None if not reported."""
    try:
        state = httpx.get(f"{url}/readyz", timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return None
    value = state.get("owner_backlog")
    return int(value) if value is not None else None


def wait_for_owner(url: str, timeout_s: float) -> None:
    """Until the owner has handled everything the ingress queued for it (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while (owner_backlog(url) or 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)


def gc_seconds(url: str) -> dict[str, float]:
    """Seconds each deployment's process spent in the garbage collector so far (``opsradar_gc_seconds``)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).text
    out: dict[str, float] = collections.defaultdict(float)
    for fam in text_string_to_metric_families(text):
        if fam.name == "opsradar_gc_seconds":
            for sample in fam.samples:
                if sample.name.endswith("_total"):
                    role = sample.labels["deployment"]
                    out["shards" if role.startswith("shard-") else role] += sample.value
    return dict(out)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    rank = math.ceil(q * len(s))  # nearest rank
    return round(s[min(len(s), max(1, rank)) - 1], 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=0, help="stop after this many events (0: only --seconds ends the load)")
    ap.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=200, help="streams of the load")
    ap.add_argument("--shards", type=int, default=2, help="detector shards (detectors.shards)")
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--noise", type=float, default=8.0,
                    help="std-dev of the load's build durations (s); 0 makes the load anomaly-free")
    ap.add_argument("--hst-seconds", type=float, default=5.0)
    ap.add_argument("--warm-seconds", type=float, default=15.0,
                    help="the same load, not measured, before the measured one: what a process does once (its "
                         "first requests, the PyOD refit worker starting, the first group fits) is not the sustained rate")
    ap.add_argument("--profile", action="store_true", help="py-spy the replicas during the load")
    ap.add_argument("--quick", action="store_true", help="10 s of load after 5 s of warm load, 8 probes")
    ap.add_argument("--haproxy", action="store_true",
                    help="api.haproxy: Ray Serve's HAProxy ingress instead of its Python proxy actor")
    ap.add_argument("--postgres", metavar="URL", default=None,
                    help="run the store on PostgreSQL: a server URL (postgresql+psycopg://user@host:port/db) on "
                         "which the bench creates a fresh database for the run and drops it after; default: "
                         "a SQLite file in a temp dir")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.probes, a.hst_seconds, a.warm_seconds = 10.0, 8, 2.0, 5.0

    from opsradar.demo.fakes.slack import SlackFake
    from opsradar.demo.world import channels_in

    hst_before = hst_baseline(a.hst_seconds)
    print(f"raw River HalfSpaceTrees (1 core, learn+score), before the run: {hst_before:,.0f} events/s")

    group_wait = rules_group_wait(ROOT / "rules")
    slack = SlackFake(token="xoxb-bench", channels=["opsradar", *[c.lstrip("#") for c in channels_in([ROOT / "rules"])]])
    slack.start()
    tmp = Path(tempfile.mkdtemp(prefix="opsradar-bench-"))
    port = free_port()
    store_url = fresh_postgres(a.postgres) if a.postgres else f"sqlite:///{tmp}/state.db"
    cfg = write_config(tmp, port, slack.url, a.probes, a.jobs, store_url, a.shards, haproxy=a.haproxy)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BENCH_SLACK_TOKEN": "xoxb-bench", "RAY_USAGE_STATS_ENABLED": "0"}
    opsradar = Path(sys.executable).with_name("opsradar")
    t = time.monotonic()
    proc = subprocess.Popen([str(opsradar), "run", "--config", str(cfg)], env=env, cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"opsradar run exited with {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t > 300:
                raise SystemExit("opsradar run was not ready after 300 s")
            time.sleep(0.25)
        cold = time.monotonic() - t
        print(f"cold start of opsradar run until /readyz OK: {cold:.1f} s")

        warm_up(url, probes=a.probes, jobs=a.jobs, noise=a.noise)
        counters = [0] * a.jobs
        if a.warm_seconds > 0:
            warm = asyncio.run(load(url, events=0, seconds=a.warm_seconds, batch=a.batch, concurrency=a.concurrency,
                                    jobs=a.jobs, probes=0, noise=a.noise, store_url=store_url, counters=counters))
            wait_for_owner(url, 600)
            print(f"warm load (not measured): {warm['stored']} events in {warm['elapsed_s']:.1f} s")
        tops: dict[str, list[tuple[str, float]]] = {}
        if a.profile:
            import threading

            holder: dict[str, Any] = {}
            th = threading.Thread(target=lambda: holder.update(profile(replica_pids(), min(20.0, a.seconds * 0.6), tmp)))
            th.start()
        gc_before = gc_seconds(url)
        cpu_before, client_before = tree_cpu_s(proc.pid), time.process_time()
        pg_before = postgres_cpu_s() if a.postgres else 0.0
        result = asyncio.run(load(url, events=a.events, seconds=a.seconds, batch=a.batch, concurrency=a.concurrency,
                                  jobs=a.jobs, probes=a.probes, noise=a.noise, store_url=store_url,
                                  counters=counters))
        # the owner handles what the ingress queued after answering: wait until it has caught up
        t_end = time.monotonic()
        backlog_at_end = owner_backlog(url)
        wait_for_owner(url, 600)
        catch_up = time.monotonic() - t_end
        cpu_after, client_cpu = tree_cpu_s(proc.pid), time.process_time() - client_before
        def per_event(seconds: float) -> float:  # µs per stored event
            return round(seconds / max(1, result["stored"]) * 1e6, 1)

        gc_us = {role: per_event(v - gc_before.get(role, 0.0)) for role, v in sorted(gc_seconds(url).items())}
        cpu_us = {role: per_event(cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0)) for role in sorted(cpu_after)}
        cpu_us["load client (bench)"] = per_event(client_cpu)
        if a.postgres:
            cpu_us[PG_ROLE] = per_event(postgres_cpu_s() - pg_before)
        if a.profile:
            th.join()
            tops = holder
        rss, pss = tree_rss_mb(proc.pid), tree_pss_mb(proc.pid)

        # Slack: the first message mentioning each probe's service, by the fake's epoch ts (the
        # last probes' first messages leave group_wait after their incidents opened)
        deadline = time.monotonic() + 30 + group_wait
        slack_ms: dict[str, float] = {}
        while time.monotonic() < deadline and len(slack_ms) < len(result["probe_sent"]):
            for msgs in slack.all_messages().values():
                for m in msgs:
                    text = json.dumps(m)
                    for name, sent_at in result["probe_sent"].items():
                        # (a message older than the probe is about the warm-up, not the probe)
                        if name not in slack_ms and float(m["ts"]) >= sent_at and re.search(rf"\b{name}\b", text):
                            slack_ms[name] = (float(m["ts"]) - sent_at - group_wait) * 1000
            time.sleep(0.5)

        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
        checkpoints = shard_checkpoints(store_url)
    finally:
        if proc.poll() is None:
            proc.kill()
        slack.stop()
        if a.postgres:
            drop_postgres(a.postgres, store_url)

    hst_after = hst_baseline(a.hst_seconds)
    hst = (hst_before + hst_after) / 2
    print(f"raw River HalfSpaceTrees (1 core, learn+score), after the run: {hst_after:,.0f} events/s; "
          f"mean {hst:,.0f} events/s")
    eps = result["stored"] / result["elapsed_s"]
    owner_eps = result["stored"] / (result["elapsed_s"] + catch_up)
    ratio = eps / hst
    figures = {
        "events_per_s": round(eps, 1), "ratio_to_hst": round(ratio, 3),
        "owner_events_per_s": round(owner_eps, 1), "owner_backlog_at_end": backlog_at_end,
        "owner_catch_up_s": round(catch_up, 1),
        "p50_ms": pct(result["stored_ms"], 0.5), "p99_ms": pct(result["stored_ms"], 0.99),
        "detected_p50_ms": pct(result["probe_ms"], 0.5), "detected_p99_ms": pct(result["probe_ms"], 0.99),
        "cold_start_s": round(cold, 1), "rss_mb": round(rss, 1), "pss_mb": round(pss, 1),
        "hst_events_per_s": round(hst, 1), "hst_before": round(hst_before, 1), "hst_after": round(hst_after, 1),
        "events": result["stored"], "elapsed_s": round(result["elapsed_s"], 1), "warm_s": a.warm_seconds,
        "batch": a.batch, "concurrency": a.concurrency, "shards": a.shards, "streams": a.jobs, "noise": a.noise,
        "haproxy": a.haproxy,
        "batch_p50_ms": pct(result["batch_ms"], 0.5), "batch_p99_ms": pct(result["batch_ms"], 0.99),
        "probes": len(result["probe_ms"]), "stored_probes": len(result["stored_ms"]),
        "slack_p50_ms": pct(list(slack_ms.values()), 0.5), "slack_p99_ms": pct(list(slack_ms.values()), 0.99),
        "slack_probes": len(slack_ms),
        "shutdown_rc": proc.returncode, "checkpoints": sorted(checkpoints),
        "store": "postgresql" if a.postgres else "sqlite",
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1),
        "cpu_us_per_event": cpu_us, "gc_us_per_event": gc_us,
    }
    print(f"sustained: {eps:,.0f} events/s through POST /v1/events to detector scores "
          f"({result['stored']} events in {result['elapsed_s']:.1f} s, batches of {a.batch}, {a.concurrency} clients); "
          f"ratio to raw HST: {ratio:.3f}")
    print(f"owner (rules, incidents, root cause) caught up {catch_up:.1f} s after the load ended "
          f"(backlog {backlog_at_end} events): {owner_eps:,.0f} events/s all the way to incidents")
    print(f"ingest -> anomaly detected (single spike event, under load; the POST's answer): p50 {figures['detected_p50_ms']} ms, "
          f"p99 {figures['detected_p99_ms']} ms over {len(result['probe_ms'])} probes")
    print(f"ingest -> anomaly stored (the owner wrote it; polled every 20 ms): p50 {figures['p50_ms']} ms, "
          f"p99 {figures['p99_ms']} ms over {len(result['stored_ms'])} probes")
    print(f"ingest -> Slack post, beyond the {group_wait:g} s group_wait: p50 {figures['slack_p50_ms']} ms, "
          f"p99 {figures['slack_p99_ms']} ms over {len(slack_ms)} probes")
    print(f"POST of a {a.batch}-event batch: p50 {figures['batch_p50_ms']} ms, p99 {figures['batch_p99_ms']} ms")
    print(f"memory of the opsradar run process tree: RSS {rss:,.0f} MB summed over its processes "
          f"(shared pages counted in each), PSS {pss:,.0f} MB (shared pages split between them)")
    print(f"shutdown on SIGINT: exit {proc.returncode}; checkpoints {sorted(checkpoints)}")
    served = sum(v for k, v in cpu_us.items() if k not in ("load client (bench)", PG_ROLE))
    print(f"CPU per event (load and catch-up, /proc user+system), {served:.0f} µs in opsradar run: "
          + ", ".join(f"{role} {us:.0f} µs" for role, us in sorted(cpu_us.items(), key=lambda kv: -kv[1])))
    print("of which in the garbage collector (opsradar_gc_seconds): "
          + ", ".join(f"{role} {us:.0f} µs" for role, us in gc_us.items()))
    for role, frames in tops.items():
        print(f"profile {role}: " + "; ".join(f"{share:.0%} {f}" for f, share in frames))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared with other work)")
    if out and proc.returncode:
        print(out[-2000:])
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
