"""Grouping accuracy of opsradar's log templater on the Loghub 2k samples.

Usage: ``python bench/loghub.py [--data DIR]`` (default ``/work/shared/datasets/loghub2k``).

Every system is parsed with the **same** generic configuration (:class:`LogTemplater` defaults);
there are no per-system settings. The input is the ``Content`` column; the truth is the corrected
``EventTemplate``. Grouping accuracy (GA) is the Loghub metric: a message counts as correct only if
the set of messages in its predicted group equals the set that shares its true template.

Two figures per system:

- ``ga``: groups as they stand after the whole file (the usual offline evaluation);
- ``ga_online``: the id each message was given at the time it arrived (what an event carries).

With ``--ablation``, two more columns show where the figures come from: ``drain3``, Drain3's
``TemplateMiner`` with its default settings and no masking, and ``no-guard``, our masking and
post-merge around a plain Drain (no constant-word guard).

The last line is one JSON object with ``average`` (of ``ga``), ``average_online`` and ``per_system``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from pathlib import Path

from drain3 import TemplateMiner
from drain3.drain import Drain
from drain3.template_miner_config import TemplateMinerConfig

from opsradar.detectors.templates import LogTemplater, mask_message, signature

DEFAULT_DATA = Path("/work/shared/datasets/loghub2k")


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Loghub's GA.

    >>> grouping_accuracy(["a", "a", "b"], [1, 1, 2]), grouping_accuracy(["a", "a", "b"], [1, 2, 2])
    (1.0, 0.0)
    """
    if len(truth) != len(predicted):
        raise ValueError(f"truth has {len(truth)} items, prediction {len(predicted)}")
    true_groups: dict[Hashable, set[int]] = defaultdict(set)
    pred_groups: dict[Hashable, set[int]] = defaultdict(set)
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        true_groups[t].add(i)
        pred_groups[p].add(i)
    correct = 0
    for members in pred_groups.values():
        truths = {truth[i] for i in members}
        if len(truths) == 1 and true_groups[truths.pop()] == members:
            correct += len(members)
    return correct / len(truth) if truth else 1.0


def load_system(folder: Path) -> tuple[list[str], list[str]]:
    """The messages and true templates of one system folder."""
    files = sorted(folder.glob("*_structured_corrected.csv")) or sorted(folder.glob("*_structured.csv"))
    if not files:
        raise FileNotFoundError(f"no *_structured_corrected.csv in {folder}")
    with files[0].open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["Content"] for r in rows], [r["EventTemplate"] for r in rows]


def evaluate(messages: Sequence[str], truth: Sequence[str]) -> dict[str, float]:
    """GA (final and online) of one fresh templater over ``messages``."""
    tpl = LogTemplater(None)
    scope = tpl._scope("")
    online: list[str] = []
    clusters: list[int] = []
    t0 = time.perf_counter()
    for m in messages:
        online.append(tpl.add(m).template_id)
        clusters.append(scope.last_cluster)
    elapsed = time.perf_counter() - t0
    final = [scope.final_id(c) for c in clusters]
    return {
        "ga": round(grouping_accuracy(truth, final), 4),
        "ga_online": round(grouping_accuracy(truth, online), 4),
        "templates": float(len(tpl.templates())),
        "true_templates": float(len(set(truth))),
        "seconds": elapsed,
    }


def ablation(messages: Sequence[str], truth: Sequence[str]) -> dict[str, float]:
    """GA of Drain3 with defaults and of our masking and post-merge without the word guard."""
    miner = TemplateMiner(config=TemplateMinerConfig())
    defaults = [miner.add_log_message(m)["cluster_id"] for m in messages]
    drain = Drain(sim_th=0.4, depth=4)
    clusters = [drain.add_log_message(mask_message(m))[0] for m in messages]
    no_guard = [signature(c.log_template_tokens) for c in clusters]
    return {"drain3": round(grouping_accuracy(truth, defaults), 4),
            "no_guard": round(grouping_accuracy(truth, no_guard), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--ablation", action="store_true", help="also run Drain3 defaults and no-guard")
    args = ap.parse_args(argv)
    systems = sorted(p for p in args.data.iterdir() if p.is_dir())
    if not systems:
        print(f"no system folders in {args.data}", file=sys.stderr)
        return 2
    per: dict[str, dict[str, float]] = {}
    extra = f" {'drain3':>7} {'no-guard':>9}" if args.ablation else ""
    print(f"{'system':<12} {'GA':>6} {'GA-online':>10} {'templates':>10} {'true':>6}{extra}")
    for folder in systems:
        msgs, truth = load_system(folder)
        r = evaluate(msgs, truth)
        if args.ablation:
            r.update(ablation(msgs, truth))
            extra = f" {r['drain3']:>7.3f} {r['no_guard']:>9.3f}"
        per[folder.name] = r
        print(f"{folder.name:<12} {r['ga']:>6.3f} {r['ga_online']:>10.3f} {int(r['templates']):>10d} "
              f"{int(r['true_templates']):>6d}{extra}")
    avg = round(sum(r["ga"] for r in per.values()) / len(per), 4)
    avg_online = round(sum(r["ga_online"] for r in per.values()) / len(per), 4)
    if args.ablation:
        extra = "".join(f" {sum(r[k] for r in per.values()) / len(per):>{w}.3f}" for k, w in (("drain3", 7), ("no_guard", 9)))
    print(f"{'average':<12} {avg:>6.3f} {avg_online:>10.3f} {'':>10} {'':>6}{extra}")
    rate = round(sum(len(load_system(f)[0]) for f in systems) / sum(r["seconds"] for r in per.values()))
    print(f"throughput: {rate} messages/s (one thread, in memory)")
    print(json.dumps({"average": avg, "average_online": avg_online, "messages_per_s": rate,
                      "per_system": {k: v["ga"] for k, v in per.items()},
                      "per_system_online": {k: v["ga_online"] for k, v in per.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
