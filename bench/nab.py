"""NAB: run opsradar's production metric-stream detector over every series, in NAB's online protocol.

Each ``DIR/<category>/<file>.csv`` (``timestamp,value``) becomes one metric stream of a fresh
:class:`~opsradar.detectors.engine.DetectionEngine` (the same path and settings as a ``metric``
event in the product: no per-file settings, no look-ahead). Every point is scored before it is
learned; the stream's score (0 while the stream warms up) is written to
``RESULTS_DIR/<category>/<file>.csv`` as ``timestamp,value,anomaly_score``.

Usage::

    python bench/nab.py --data /work/shared/datasets/nab/data --out /tmp/nab-results
    python /work/shared/tools/nab_score.py /tmp/nab-results \\
        --labels /work/shared/datasets/nab/labels/combined_windows.json \\
        --profiles /work/shared/datasets/nab/profiles.json

The last line printed is one JSON object with the figures (and the scores when ``--score`` is given
with the labels and profiles).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from opsradar.config import DetectorsConfig
from opsradar.detectors.engine import DetectionEngine
from opsradar.models import Event


def _ts(text: str) -> datetime:
    ts = datetime.fromisoformat(text.strip())
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def run_file(src: Path, dst: Path) -> int:
    """Score one series into ``dst``; returns the number of points."""
    engine = DetectionEngine(DetectorsConfig())
    entity = "service:" + re.sub(r"[^A-Za-z0-9_.\-]", "_", src.stem)
    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["timestamp", "value", "anomaly_score"])
        for i, row in enumerate(rows):
            event = Event(
                id=f"nab-{i}",
                source="nab",
                kind="metric",
                ts=_ts(row["timestamp"]),
                entity=entity,
                values={"value": float(row["value"])},
            )
            result = engine.score_event(event)
            assert result is not None
            _, scored = result
            w.writerow([row["timestamp"], row["value"], repr(scored.score if scored.warm else 0.0)])
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="NAB data folder: <category>/<file>.csv")
    ap.add_argument("--out", required=True, help="results folder to write")
    ap.add_argument("--labels", help="combined_windows.json: score the results with nab_score.py")
    ap.add_argument("--profiles", help="profiles.json (with --labels)")
    ap.add_argument("--scorer", default="/work/shared/tools/nab_score.py")
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    files = sorted(data.glob("*/*.csv"))
    if not files:
        sys.exit(f"no <category>/<file>.csv under {data}")
    t0 = time.perf_counter()
    points = 0
    for src in files:
        n = run_file(src, out / src.parent.name / src.name)
        points += n
        print(f"{src.parent.name}/{src.name}: {n} points", flush=True)
    elapsed = time.perf_counter() - t0
    figures: dict[str, object] = {
        "bench": "nab",
        "files": len(files),
        "points": points,
        "seconds": round(elapsed, 1),
        "points_per_s": round(points / elapsed, 1),
    }
    if args.labels and args.profiles:
        res = subprocess.run(
            [sys.executable, args.scorer, str(out), "--labels", args.labels, "--profiles", args.profiles],
            capture_output=True, text=True, check=True,
        )
        print(res.stdout, end="")
        last = res.stdout.strip().splitlines()[-1]
        for part in last.split()[1:]:
            k, _, v = part.partition("=")
            figures[k] = float(v)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
