"""Which PyOD algorithm for the sliding-window models: ECOD, IForest, HBOS or COPOD.

Usage: ``python bench/pyod_select.py [--nab DIR] [--algorithms ecod,iforest,hbos,copod]``.

Every algorithm runs the protocol the product runs: a model is fitted on the last ``--window``
rows, used to score the next ``--every`` rows (never rows it was trained on), then refitted.
Two data sets, both scored with ROC AUC (anomalous rows against normal ones):

- **NAB** (development half, ``/work/shared/datasets/nab``): each series becomes feature rows
  (value, first difference, deviation from the mean of the last 12 points, std of the last 12
  points); rows inside a labelled window are the positives; the first 15 % of a file is not
  scored; files without windows are skipped. AUC per file, averaged.
- **synthetic ops groups**: six feature streams shaped like our event features (log-normal
  durations, Poisson counts, error ratios, a correlated pair), 3,000 rows each, with 2 % injected
  anomalies of three kinds (a spike in one feature, a joint shift of several, a broken correlation).

Also measured: fit time per refit and the time to score one row. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from opsradar.detectors.pyod_models import FittedModel, auc

DEFAULT_NAB = Path("/work/shared/datasets/nab")


def nab_series(root: Path) -> list[tuple[str, list[dict[str, float]], list[bool]]]:
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    out = []
    for name in sorted(labels):
        windows = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in labels[name]]
        if not windows:
            continue
        with (root / "data" / name).open(newline="") as f:
            data = [(datetime.fromisoformat(r["timestamp"]), float(r["value"])) for r in csv.DictReader(f)]
        rows, flags = [], []
        recent: list[float] = []
        prev = data[0][1]
        for ts, v in data:
            mean = sum(recent) / len(recent) if recent else v
            std = math.sqrt(sum((r - mean) ** 2 for r in recent) / len(recent)) if recent else 0.0
            rows.append({"value": v, "diff": v - prev, "dev": v - mean, "std12": std})
            flags.append(any(a <= ts <= b for a, b in windows))
            recent.append(v)
            if len(recent) > 12:
                del recent[0]
            prev = v
        out.append((name, rows, flags))
    return out


def synthetic_groups(seed: int = 7, n: int = 3000) -> list[tuple[str, list[dict[str, float]], list[bool]]]:
    rng = random.Random(seed)
    out = []
    for g in range(6):
        rows, flags = [], []
        base = rng.uniform(20, 200)
        for _ in range(n):
            load = rng.lognormvariate(0, 0.3)
            row = {
                "duration_s": base * load * rng.lognormvariate(0, 0.15),
                "count": float(np.random.default_rng(rng.randrange(1 << 30)).poisson(10 * load)),
                "error_ratio": min(1.0, abs(rng.gauss(0.02, 0.01))),
                "bytes": 1000 * load * rng.lognormvariate(0, 0.1),
                "queue": abs(rng.gauss(3, 1)),
            }
            bad = rng.random() < 0.02
            if bad:
                kind = rng.randrange(3)
                if kind == 0:
                    f = rng.choice(list(row))
                    row[f] = row[f] * rng.uniform(3, 6) + (0.3 if f == "error_ratio" else 0.0)
                elif kind == 1:
                    for f in rng.sample(list(row), 3):
                        row[f] *= rng.uniform(1.8, 2.5)
                else:  # heavy load with few bytes: breaks the duration/bytes correlation
                    row["duration_s"] *= 2.2
                    row["bytes"] /= 2.2
            rows.append(row)
            flags.append(bad)
        out.append((f"synthetic-{g}", rows, flags))
    return out


def evaluate(alg: str, rows: list[dict[str, float]], flags: list[bool], *, window: int, every: int,
             start: int) -> tuple[float, list[float], list[float]]:
    scores = np.full(len(rows), np.nan)
    fit_times: list[float] = []
    score_times: list[float] = []
    pos = max(start, min(window, every))
    while pos < len(rows):
        train = rows[max(0, pos - window) : pos]
        t0 = time.perf_counter()
        model = FittedModel.fit(alg, {}, train)
        fit_times.append(time.perf_counter() - t0)
        block = rows[pos : pos + every]
        scores[pos : pos + len(block)] = model.score_many(block)
        t0 = time.perf_counter()
        for r in block[:5]:
            model.score(r)
        score_times.append((time.perf_counter() - t0) / min(5, len(block)))
        pos += every
    first = max(start, min(window, every))
    neg = [float(s) for s, f in zip(scores[first:], flags[first:], strict=True) if not f]
    pos_ = [float(s) for s, f in zip(scores[first:], flags[first:], strict=True) if f]
    return auc(neg, pos_), fit_times, score_times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nab", type=Path, default=DEFAULT_NAB)
    ap.add_argument("--algorithms", default="ecod,iforest,hbos,copod")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--every", type=int, default=512)
    args = ap.parse_args(argv)
    algs = args.algorithms.split(",")
    sets = {"nab": nab_series(args.nab) if args.nab.exists() else [], "synthetic": synthetic_groups()}
    result: dict[str, dict[str, float]] = {}
    for alg in algs:
        FittedModel.fit(alg, {}, [{"a": float(i)} for i in range(16)])  # warm up JIT-compiled code
        r: dict[str, float] = {}
        fits: list[float] = []
        scores: list[float] = []
        for set_name, series in sets.items():
            aucs = []
            for _name, rows, flags in series:
                start = int(0.15 * len(rows)) if set_name == "nab" else 0
                a, f, s = evaluate(alg, rows, flags, window=args.window, every=args.every, start=start)
                if not math.isnan(a):
                    aucs.append(a)
                fits += f
                scores += s
            r[f"{set_name}_auc"] = round(sum(aucs) / len(aucs), 4) if aucs else float("nan")
            r[f"{set_name}_files"] = float(len(aucs))
        r["fit_ms"] = round(1000 * float(np.median(fits)), 2)
        r["score_one_ms"] = round(1000 * float(np.median(scores)), 3)
        result[alg] = r
        print(f"{alg:<8} NAB AUC {r['nab_auc']:.3f} ({int(r['nab_files'])} files)  synthetic AUC "
              f"{r['synthetic_auc']:.3f}  fit {r['fit_ms']:.1f} ms  score_one {r['score_one_ms']:.3f} ms", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
