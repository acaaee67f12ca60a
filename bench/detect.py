"""Detection benchmark: detector choice per stream type, throughput, and memory per stream.

Three parts, all on seeded synthetic streams (``opsradar.detectors.synthetic``):

1. **Choice**: for each stream type, each candidate detector runs behind the type's real feature
   extractor and calibration; printed are the ROC AUC of the calibrated score (scored before
   learning) and precision / recall of the alerts at the stream's threshold after warm-up.
   ``STREAM_SPECS`` in ``opsradar.detectors.engine`` uses the winners.
2. **Throughput**: events per second on one core through ``DetectionEngine.process`` (routing,
   feature extraction, scoring, calibration, learning, anomalies), per stream type, over
   ``--streams`` streams of that type.
3. **Memory**: bytes per live stream (``tracemalloc``, real detector state after ``--warm``
   events per stream) and the pickled checkpoint size per stream.

Usage: ``python bench/detect.py`` (``--quick`` for a smaller run). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections.abc import Callable

from opsradar.config import DetectorsConfig
from opsradar.detectors.base import Detector
from opsradar.detectors.checks import _auc
from opsradar.detectors.contextual import ContextualDetector
from opsradar.detectors.engine import STREAM_SPECS, DetectionEngine, _wired, new_stream
from opsradar.detectors.metric import ResidualMetric
from opsradar.detectors.robust import QuantileBand, RobustZScore
from opsradar.detectors.synthetic import labelled_events, stream_events

TYPES = ["build", "test_run", "commit", "issue", "access", "log", "audit", "metric"]
COMMON = ["build", "test_run", "commit", "issue", "access", "log", "audit"]

CANDIDATES: dict[str, Callable[[], Detector]] = {
    "robust_z": RobustZScore,
    "robust_z_seasonal": lambda: RobustZScore(seasonal=True),
    "quantile_band": QuantileBand,
}
METRIC_CANDIDATES: dict[str, Callable[[], Detector]] = {
    "contextual": ContextualDetector,
    "residual_metric": ResidualMetric,
    "robust_z": RobustZScore,
}


def _same(a: Detector, b: Detector) -> bool:
    return type(a) is type(b) and getattr(a, "seasonal", None) == getattr(b, "seasonal", None)


def choice(n: int, seeds: int) -> dict[str, dict[str, dict[str, float]]]:
    cfg = DetectorsConfig()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for st in TYPES:
        spec = STREAM_SPECS[st]
        threshold = cfg.threshold if spec.threshold is None else spec.threshold
        warmup = cfg.warmup if spec.warmup is None else spec.warmup
        cands = METRIC_CANDIDATES if st == "metric" else CANDIDATES
        out[st] = {}
        for name, make in cands.items():
            aucs, tp, fp, fn = [], 0, 0, 0
            for seed in range(seeds):
                stream = new_stream("bench", st)
                stream.detector = make()
                _wired(stream)  # as the engine wires its own: count floors, one-sided features
                labels, scores = [], []
                for i, (ev, bad) in enumerate(labelled_events(st, n=n, seed=seed)):
                    x = stream.extractor.extract(ev)
                    raw, score = stream.score(x)
                    warm = stream.n >= warmup and (stream.calibrator is None or stream.calibrator.warm)
                    stream.learn(ev, x, raw)
                    if i >= 200:
                        labels.append(bad)
                        scores.append(score)
                        alert = warm and score >= threshold
                        tp += alert and bad
                        fp += alert and not bad
                        fn += (not alert) and bad
                aucs.append(_auc(labels, scores))
            out[st][name] = {
                "auc": round(sum(aucs) / len(aucs), 3),
                "precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
                "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
            }
            in_use = _same(new_stream("x", st).detector, make())
            print(f"choice {st:9s} {name:18s} auc={out[st][name]['auc']:.3f} "
                  f"precision={out[st][name]['precision']:.3f} recall={out[st][name]['recall']:.3f}"
                  + ("   <- in use" if in_use else ""), flush=True)
    return out


def throughput(st: str, streams: int, per_stream: int) -> float:
    events = []
    for s in range(streams):
        events.extend(stream_events(st, n=per_stream, entity=f"service:s{s}" if st not in ("build", "test_run") else f"job:j{s}", seed=s))
    events.sort(key=lambda e: e.ts)
    engine = DetectionEngine(DetectorsConfig())
    # warm every stream first, then time steady-state processing
    half = len(events) // 2
    for e in events[:half]:
        engine.process(e)
    t0 = time.process_time()
    for e in events[half:]:
        engine.process(e)
    dt = time.process_time() - t0
    return (len(events) - half) / dt if dt > 0 else float("inf")


def memory(st: str, streams: int, warm: int) -> tuple[float, float]:
    per = stream_events(st, n=warm, seed=7)
    gc.collect()
    tracemalloc.start()
    engine = DetectionEngine(DetectorsConfig())
    before = tracemalloc.get_traced_memory()[0]
    for s in range(streams):
        ent = f"job:j{s}" if st in ("build", "test_run") else f"service:s{s}"
        for e in per:
            engine.process(e.model_copy(update={"entity": ent}))
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    blob = engine.snapshot()
    return used / streams, len(blob) / streams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller run")
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--warm", type=int, default=500, help="events per stream before measuring memory")
    args = ap.parse_args()
    n, seeds = (1500, 1) if args.quick else (3000, 3)
    per_stream = 200 if args.quick else 600
    figures: dict[str, object] = {"bench": "detect"}
    figures["choice"] = choice(n, seeds)
    rates: dict[str, float] = {}
    mem: dict[str, dict[str, float]] = {}
    for st in TYPES:
        rates[st] = round(throughput(st, args.streams, per_stream if st != "metric" else per_stream // 2), 0)
        live, pickled = memory(st, 20 if args.quick else 50, args.warm)
        mem[st] = {"bytes_per_stream": round(live), "checkpoint_bytes_per_stream": round(pickled)}
        print(f"{st:9s} {rates[st]:>10,.0f} events/s/core   {live / 1024:8.1f} KiB/stream live   "
              f"{pickled / 1024:8.1f} KiB/stream checkpoint", flush=True)
    figures["events_per_s"] = rates
    figures["memory"] = mem
    figures["min_events_per_s_common"] = min(rates[st] for st in COMMON)
    figures["max_kib_per_stream_common"] = round(max(mem[st]["bytes_per_stream"] for st in COMMON) / 1024, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
