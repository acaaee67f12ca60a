"""Collector polling overhead in the simulated world: time, HTTP requests and git calls per step.

The world (``World(scenario, days=…)``) is advanced in 1 h steps; after each step every collector
of the world's config pulls into a SQLite store (``run_once``, as the demo's scheduler does), then
pulls again at once: the second pull finds nothing new and measures the pure polling overhead.
Figures are per step, summed over the collectors and per collector; requests are counted on the
fakes, git subprocesses by wrapping ``subprocess.run`` in the git collector's module.

    .venv/bin/python bench/collector_polling.py --days 1

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opsradar.collectors import git as git_module
from opsradar.collectors.base import run_once
from opsradar.collectors.registry import build_collectors
from opsradar.demo.world import World
from opsradar.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--step-hours", type=float, default=1.0)
    args = ap.parse_args()

    calls = {"n": 0}
    real_run = subprocess.run

    class _Counting:
        """``subprocess`` as the git collector sees it, counting ``run``."""

        def __getattr__(self, name: str) -> Any:
            return getattr(subprocess, name)

        @staticmethod
        def run(*a: Any, **kw: Any) -> Any:
            calls["n"] += 1
            return real_run(*a, **kw)

    git_module.subprocess = _Counting()  # type: ignore[assignment]

    world = World(args.scenario, days=args.days)
    with world, tempfile.TemporaryDirectory() as tmp:
        cfg = world.config(store_url=f"sqlite:///{tmp}/state.db")
        store = Store(cfg.store.url)
        collectors = build_collectors(cfg)
        fakes = {"jira": world.jira, "jenkins": world.jenkins, "elasticsearch": world.elasticsearch}

        def requests_of(kind: str) -> int:
            fake = fakes.get(kind)
            return len(fake.requests) if fake is not None else calls["n"]

        fresh: dict[str, list[float]] = defaultdict(list)
        idle: dict[str, list[float]] = defaultdict(list)
        cpu: dict[str, list[float]] = defaultdict(list)  # process CPU of the step's poll (fakes included)
        idle_calls: dict[str, list[int]] = defaultdict(list)
        fresh_calls: dict[str, list[int]] = defaultdict(list)
        events = 0
        steps = 0
        for t in world.steps(timedelta(hours=args.step_hours)):
            world.advance(t)
            steps += 1
            for c in collectors:
                for bucket, bucket_calls in ((fresh, fresh_calls), (idle, idle_calls)):
                    before = requests_of(c.kind)
                    t0, c0 = time.perf_counter(), time.process_time()
                    result = run_once(c, store)
                    bucket[c.name].append(time.perf_counter() - t0)
                    if bucket is fresh:
                        cpu[c.name].append(time.process_time() - c0)
                    bucket_calls[c.name].append(requests_of(c.kind) - before)
                    if bucket is fresh:
                        events += result.new
        for c in collectors:
            c.close()
        store.close()

    def row(name: str) -> dict[str, float]:
        return {"fresh_ms": round(1000 * statistics.mean(fresh[name]), 1),
                "fresh_median_ms": round(1000 * statistics.median(fresh[name]), 1),
                "fresh_cpu_ms": round(1000 * statistics.mean(cpu[name]), 1),
                "idle_ms": round(1000 * statistics.mean(idle[name]), 1),
                "idle_median_ms": round(1000 * statistics.median(idle[name]), 1),
                "fresh_calls": round(statistics.mean(fresh_calls[name]), 1),
                "idle_calls": round(statistics.mean(idle_calls[name]), 1)}

    per = {name: row(name) for name in fresh}
    total_fresh = sum(sum(v) for v in fresh.values()) / steps
    total_cpu = sum(sum(v) for v in cpu.values()) / steps
    total_idle = sum(sum(v) for v in idle.values()) / steps
    step_medians = statistics.median(sum(v[i] for v in fresh.values()) for i in range(steps))
    print(f"{steps} steps of {args.step_hours:g} h, {events} events; per step (mean over steps; median in brackets):")
    print(f"{'source':14} {'poll ms':>15} {'cpu ms':>7} {'calls':>6} {'idle poll ms':>15} {'idle calls':>11}")
    for name, r in per.items():
        print(f"{name:14} {r['fresh_ms']:7.1f} [{r['fresh_median_ms']:5.1f}] {r['fresh_cpu_ms']:7.1f} "
              f"{r['fresh_calls']:6.1f} {r['idle_ms']:7.1f} [{r['idle_median_ms']:5.1f}] {r['idle_calls']:11.1f}")
    print(f"{'all':14} {1000 * total_fresh:7.1f} [{1000 * step_medians:5.1f}] {1000 * total_cpu:7.1f} {'':6} "
          f"{1000 * total_idle:7.1f}")
    print("(calls: HTTP requests on the fake, git subprocesses for git; cpu: process CPU, fakes included)")
    print(json.dumps({"steps": steps, "events": events, "step_poll_ms": round(1000 * total_fresh, 1),
                      "step_poll_median_ms": round(1000 * step_medians, 1), "step_cpu_ms": round(1000 * total_cpu, 1),
                      "idle_poll_ms": round(1000 * total_idle, 1), "per_source": per}))


if __name__ == "__main__":
    main()
