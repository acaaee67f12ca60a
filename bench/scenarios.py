"""The scenario benchmark: the simulated world through the real collectors and pipeline, scored
against the world's ground truth.

This file holds the **scoring half**: :func:`score` (from :mod:`opsradar.demo.scoring`, where it
is unit-tested) computes ``recall``, ``precision``, ``compression``, ``ttd_median_s``,
``ttd_p90_s``, ``rca_top1`` and ``rca_top3`` from the pipeline's incidents, the raw anomaly and
alert counts and the Slack messages; :func:`print_figures` prints them and ends with one JSON line.

The runner half (drive ``opsradar.demo.world.World`` through the collectors and the pipeline, for
the default seed and the held-out seed) is written separately and calls :func:`score` with what
the pipeline produced:

    world = World("default", seed=seed)              # seed 2: the held-out root-cause check
    ... run the pipeline, advancing world.advance(t) and pulling with until=world.clock() ...
    figures = score(world.ground_truth, incidents, anomalies_count, alerts_count, slack_messages,
                    events=events_by_id)
    print_figures(figures, extra={"seed": seed})

Each incident given to :func:`score` is an ``opsradar.models.Incident`` or a dict with
``services``, ``entities``, ``first_seen``, ``alert_count``, ``root_cause`` (ranked candidate dicts
with ``event_id``) and ``notified_at`` (the *simulated* time of its first Slack message).
"""

from __future__ import annotations

import json
from typing import Any

from opsradar.demo.scoring import count_incident_messages, match_incidents, score

__all__ = ["count_incident_messages", "match_incidents", "print_figures", "score"]

HEADLINE = ("recall", "precision", "compression", "ttd_median_s", "ttd_p90_s", "rca_top1", "rca_top3")


def print_figures(figures: dict[str, Any], *, extra: dict[str, Any] | None = None) -> None:
    """Print the headline figures, the per-incident table, then one JSON line (headline + extra)."""
    for key in HEADLINE:
        print(f"{key:>14}: {figures.get(key)}")
    for p in figures.get("per_incident", []):
        print(f"  {p['id']:<20} {p['type']:<18} detected={p['detected']!s:<5} ttd_s={p['ttd_s']} "
              f"rca_rank={p['rca_rank']} incidents={','.join(p['incidents'])}")
    line = {k: figures.get(k) for k in HEADLINE}
    line.update({k: figures.get(k) for k in ("injected", "detected", "rca_n", "fragmentation", "grouped_as_one")})
    line.update(extra or {})
    print(json.dumps(line, default=str))


# ---------------------------------------------------------------------------------------------
# The runner half: the world through the real collectors and pipeline.


def run_world(scenario: str, seed: int | None, *, mode: str, step_minutes: float, days: float | None) -> dict[str, Any]:
    from datetime import timedelta

    from opsradar.demo.runner import DemoRunner

    runner = DemoRunner(scenario, seed=seed, days=days, step=timedelta(minutes=step_minutes), mode=mode)
    result = runner.run()
    slack_posts = [e for e in result.slack if e.what == "posted"]
    figures = score(runner.world.ground_truth, result.incidents, result.anomalies, result.alerts,
                    len(slack_posts), events=runner.events_for(result.incidents))
    figures["world"] = result.world
    return figures


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging
    import sys
    import time

    parser = argparse.ArgumentParser(description="Run the simulated world(s) and score against ground truth.")
    parser.add_argument("--scenario", default="default", help="bundled scenario name or a YAML path")
    parser.add_argument("--seed", type=int, action="append",
                        help="world seed (repeatable); default: the scenario's seed and the held-out seed 2")
    parser.add_argument("--mode", choices=("local", "ray"), default="local",
                        help="host the pipeline in-process (default) or on local Ray Serve")
    parser.add_argument("--step", type=float, default=15.0, help="simulated minutes per step (TTD resolution)")
    parser.add_argument("--days", type=float, default=None, help="shorten the world")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    seeds = args.seed or [None, 2]
    runs = []
    for seed in seeds:
        t0 = time.monotonic()
        figures = run_world(args.scenario, seed, mode=args.mode, step_minutes=args.step, days=args.days)
        label = f"seed={figures['world']['seed']}" + (" (scenario default)" if seed is None else " (held out)" if seed == 2 else "")
        print(f"== {args.scenario} {label}: {time.monotonic() - t0:.0f}s wall, mode={args.mode}, step={args.step}min")
        print_figures(figures, extra={"seed": figures["world"]["seed"]})
        runs.append(figures)
    # The last line: the first world's headline figures, plus the other worlds' under "heldout" (seed 2)
    # or "seed<N>" (a development seed given with --seed: it is not held out).
    line = {k: runs[0].get(k) for k in HEADLINE}
    for run in runs[1:]:
        seed = run["world"]["seed"]
        line["heldout" if seed == 2 else f"seed{seed}"] = {k: run.get(k) for k in HEADLINE}
    sys.stdout.flush()
    print(json.dumps(line, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
