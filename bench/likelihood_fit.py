"""The anomaly likelihood's cost per event on a long-running stream (a full history).

Every ``reestimation_period`` (100) scores, :class:`~opsradar.detectors.likelihood.AnomalyLikelihood`
refits its Gaussian over its whole history (up to ``historic_window``, 8,640 scores). This bench
fills a history, then times ``update`` per event and one refit, against the same two-pass mean and
variance as a plain Python loop (the implementation before numpy).

Usage: ``python bench/likelihood_fit.py``. The last line is one JSON object.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))


def python_fit(h: list[float] | object) -> tuple[float, float]:
    values = list(h)  # type: ignore[call-overload]
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def main() -> int:
    from opsradar.detectors.likelihood import AnomalyLikelihood

    rng = random.Random(1)
    cal = AnomalyLikelihood()
    warm = cal.learning_period + cal.historic_window + 1_000
    for _ in range(warm):
        cal.update(rng.uniform(0.0, 0.3))
    n = 50_000
    xs = [rng.uniform(0.0, 0.3) for _ in range(n)]
    t = time.perf_counter()
    for x in xs:
        cal.update(x)
    update_us = (time.perf_counter() - t) / n * 1e6
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        cal._fit()
    fit_us = (time.perf_counter() - t) / reps * 1e6
    t = time.perf_counter()
    for _ in range(20):
        python_fit(cal.history)
    loop_us = (time.perf_counter() - t) / 20 * 1e6
    per_event = fit_us / cal.reestimation_period
    print(f"history {len(cal.history)} scores: update {update_us:.2f} µs/event (of which the refit {per_event:.2f}); "
          f"one refit {fit_us:.1f} µs, the same in a Python loop {loop_us:.1f} µs "
          f"({loop_us / cal.reestimation_period:.2f} µs/event)")
    print(json.dumps({"history": len(cal.history), "update_us": round(update_us, 2), "fit_us": round(fit_us, 1),
                      "python_loop_fit_us": round(loop_us, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
