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
