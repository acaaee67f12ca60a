"""Where the trouble started: the first symptom, or the start of the drift that the first symptom ended.

A slow drift (a build that gets slower build after build, a heap that fills up) is detected when it
crosses a threshold, hours after it began; the changes made in between would then look closer to the
onset than the change that started it. :func:`drift_start` fits the affected stream's values with
two least-squares models, every candidate corner at once (numpy):

- a *step*: one level, then another (``v = a + c·[t ≥ τ]``);
- a *hinge*: flat, then a straight ramp in the anomaly's direction (``v = a + b·max(0, t − τ)``).

A sharp fault (a bad deploy) is a step whose corner *is* the first anomaly. When instead the best
step's corner lies at least 3 samples before the first anomaly, and it is significant (F ≥ 10), the
stream was already shifting before the detector fired: the estimated start is the hinge's corner (on
simulated ramps it is within about an hour of the truth, where a step's corner lands mid-ramp).
The stream must also still be shifted just before the first anomaly (its last 3 values beyond the
old level by twice their standard error, the old level's spread): an earlier episode that ended (tests that failed and were
fixed yesterday) is no drift into today's anomaly. Otherwise there is no drift and the onset stays
at the first anomaly. Since the corner is an
estimate, the time factor counts changes between it and the first anomaly by their distance to it in
either direction (see :mod:`~opsradar.alerting.rootcause.scoring`).

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
>>> flat = [(t0 + timedelta(hours=h), 300.0 + (h % 3)) for h in range(24)]
>>> ramp = [(t0 + timedelta(hours=24 + h), 300.0 + 15 * h + (h % 3)) for h in range(24)]
>>> drift_start(flat + ramp, t0 + timedelta(hours=40), direction=1.0) == t0 + timedelta(hours=24)
True
>>> step = [(t0 + timedelta(hours=24 + h), 900.0 + (h % 3)) for h in range(24)]
>>> drift_start(flat + step, t0 + timedelta(hours=24), direction=1.0) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

__all__ = ["drift_start"]


def drift_start(
    points: Sequence[tuple[datetime, float]],
    first_anomaly: datetime,
    *,
    direction: float,
    min_f: float = 10.0,
    min_lead_samples: int = 3,
    min_points: int = 8,
    max_candidates: int = 240,
) -> datetime | None:
    """The estimated start of a drift that ended in the anomaly at ``first_anomaly``, or None.

    ``points``: (time, value) of the anomalous stream, before and after the first anomaly.
    ``direction``: the sign of the anomaly (value above its baseline: +1; below: −1).
    """
    pts = sorted(points)
    if len(pts) < min_points or direction == 0:
        return None
    origin = pts[0][0]
    t = np.array([(ts - origin).total_seconds() / 3600.0 for ts, _ in pts])
    v = np.array([float(val) for _, val in pts])
    n = len(v)
    vm = v.mean()
    sst = float(((v - vm) ** 2).sum())
    if sst <= 0.0:
        return None
    limit = (first_anomaly - origin).total_seconds() / 3600.0
    # candidate corners: the points' own times, with at least 3 points before, not after the anomaly
    idx = np.arange(3, n - 1)
    idx = idx[t[idx] <= limit]
    if idx.size == 0:
        return None
    if idx.size > max_candidates:
        idx = idx[np.linspace(0, idx.size - 1, max_candidates).round().astype(int)]
    corners = t[idx]

    # hinge: simple regression of v on x = max(0, t - corner), for every corner at once
    x = np.maximum(0.0, t[None, :] - corners[:, None])
    xc = x - x.mean(axis=1, keepdims=True)
    sxx = (xc**2).sum(axis=1)
    sxv = (xc * (v - vm)[None, :]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > 0, sxv / np.where(sxx > 0, sxx, 1.0), 0.0)
        sse_hinge = np.where((sxx > 0) & (slope * direction > 0), sst - slope * sxv, np.inf)

    # step: two means split at every corner
    after = t[None, :] >= corners[:, None]
    n1 = after.sum(axis=1)
    n0 = n - n1
    s1 = (after * v[None, :]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        m1 = np.where(n1 > 0, s1 / np.maximum(n1, 1), vm)
        m0 = np.where(n0 > 0, (v.sum() - s1) / np.maximum(n0, 1), vm)
    sse_step = np.where((n1 > 0) & (n0 > 0), sst - n0 * n1 / n * (m1 - m0) ** 2, np.inf)

    best_step = int(np.argmin(sse_step))
    if not np.isfinite(sse_step[best_step]) or (m1[best_step] - m0[best_step]) * direction <= 0:
        return None
    f_step = (sst - sse_step[best_step]) / max(sse_step[best_step] / max(n - 3, 1), 1e-12)
    first_idx = int(np.searchsorted(t, limit, side="left"))
    if f_step < min_f or first_idx - int(idx[best_step]) < min_lead_samples:
        return None  # no significant shift, or it is the first anomaly itself: a step, not a drift
    lead = v[max(0, first_idx - min_lead_samples):first_idx]
    level = v[~after[best_step]]  # the values before the step's corner
    noise = 2.0 * float(level.std()) / math.sqrt(max(lead.size, 1))
    if lead.size == 0 or (float(lead.mean()) - float(m0[best_step])) * direction <= noise:
        return None  # back at its old level just before the anomaly: an earlier episode, not a drift into it
    best_hinge = int(np.argmin(sse_hinge))
    corner = float(corners[best_hinge]) if np.isfinite(sse_hinge[best_hinge]) else float(corners[best_step])
    return origin + timedelta(hours=corner)
