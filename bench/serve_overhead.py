"""What Ray Serve itself costs per request on this machine, with no opsradar code in the path.

``bench/serve.py`` measures opsradar's ingest all the way to detector scores; this bench measures
the host underneath it, so that its figures can be read against a floor. It starts local Ray and
Serve with a FastAPI ingress whose handler does nothing with the body, and posts the same body as
``bench/serve.py`` (a JSON array of ``--events`` build events) from ``--concurrency`` clients:

1. ``http``: the handler reads the body and answers;
2. ``http+calls``: the handler also makes ``--calls`` concurrent calls to a second deployment
   through a ``DeploymentHandle``, each carrying 10 bytes (opsradar's ingress makes one per
   detector shard and, merged, about one to the owner per request).

For each it prints the requests per second and the CPU seconds (user + system, from /proc) per
request of the ingress replica and of all of Ray's processes together (proxy, replicas,
controller, GCS, raylet, agents), and their difference per call.

Usage: ``python bench/serve_overhead.py`` (``--requests 400``). The last line is one JSON object.
"""


import argparse
import asyncio
import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request  # evaluated annotations (no __future__ import): Serve pickles the handler

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _ray_pids() -> list[int]:
    me = os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ray::") or b"/ray/" in cmd or b"raylet" in cmd or b"gcs_server" in cmd:
            out.append(int(d))
    return out


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            total += _cpu_s(p)
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _body(events: int) -> bytes:
    return json.dumps([{"source": "jenkins", "native_id": f"load{i % 200}#{i}", "kind": "build",
                        "ts": "2026-03-02T00:00:00+00:00", "entity": f"job:load{i % 200}",
                        "labels": {"result": "SUCCESS"}, "values": {"duration_s": 300.0, "queue_s": 2.0}}
                       for i in range(events)]).encode()


def _app(calls: int) -> Any:
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Sink:
        async def take(self, blob: bytes) -> int:
            return len(blob)

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
    @serve.ingress(api)
    class Ingress:
        def __init__(self, sink: Any = None) -> None:
            self.sink = sink

        @api.post("/e")
        async def post(self, request: Request) -> dict[str, int]:
            body = await request.body()
            if self.sink is not None:
                await asyncio.gather(*(self.sink.take.remote(b"0123456789") for _ in range(calls)))
            return {"n": len(body)}

        @api.get("/pid")
        async def pid(self) -> int:
            return os.getpid()

    return Ingress.bind(Sink.bind() if calls else None)


async def _post(url: str, body: bytes, n: int, concurrency: int) -> float:
    async with httpx.AsyncClient(timeout=120) as client:
        async def worker(k: int) -> None:
            for _ in range(k):
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
                r.raise_for_status()

        t = time.perf_counter()
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - t


def measure(calls: int, *, requests: int, events: int, concurrency: int) -> dict[str, float]:
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(_app(calls), name="overhead", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    ingress = int(httpx.get(f"{base}/pid", timeout=60).json())
    body = _body(events)
    asyncio.run(_post(f"{base}/e", body, 40, concurrency))  # warm-up
    pids = _ray_pids()
    ing0, all0 = _cpu_s(ingress), _cpu_of(pids)
    n = requests - requests % concurrency
    elapsed = asyncio.run(_post(f"{base}/e", body, n, concurrency))
    ing1, all1 = _cpu_s(ingress), _cpu_of(pids)
    serve.delete("overhead")
    serve.shutdown()
    return {"requests_per_s": round(n / elapsed, 1), "ingress_ms_per_request": round((ing1 - ing0) / n * 1e3, 2),
            "ray_ms_per_request": round((all1 - all0) / n * 1e3, 2), "body_bytes": len(body)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--events", type=int, default=500, help="events in each posted body")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--calls", type=int, default=3, help="handle calls per request in the second case")
    a = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    try:
        plain = measure(0, requests=a.requests, events=a.events, concurrency=a.concurrency)
        with_calls = measure(a.calls, requests=a.requests, events=a.events, concurrency=a.concurrency)
    finally:
        ray.shutdown()
    per_call = {k.replace("per_request", "per_call"): round((with_calls[k] - plain[k]) / a.calls, 2)
                for k in ("ingress_ms_per_request", "ray_ms_per_request")}
    print(f"http ({plain['body_bytes']:,} B body, {a.concurrency} clients): {plain['requests_per_s']:,.0f} requests/s; "
          f"CPU per request: ingress {plain['ingress_ms_per_request']} ms, all of Ray {plain['ray_ms_per_request']} ms")
    print(f"http + {a.calls} handle calls: {with_calls['requests_per_s']:,.0f} requests/s; CPU per request: ingress "
          f"{with_calls['ingress_ms_per_request']} ms, all of Ray {with_calls['ray_ms_per_request']} ms")
    print(f"one handle call: ingress {per_call['ingress_ms_per_call']} ms, all of Ray {per_call['ray_ms_per_call']} ms "
          f"of CPU; per event of a {a.events}-event request: "
          f"{plain['ray_ms_per_request'] / a.events * 1e3:.1f} µs (http) + {per_call['ray_ms_per_call'] / a.events * 1e3:.1f} µs a call")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(json.dumps({"http": plain, "http_calls": with_calls, "calls": a.calls, **per_call,
                      "events_per_request": a.events, "concurrency": a.concurrency,
                      "load_avg_1m": round(os.getloadavg()[0], 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
