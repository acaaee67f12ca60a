"""Render a root-cause report as one self-contained HTML page with an inline SVG chart.

No external asset and no script: the CSS is inline, the chart is SVG drawn here. Every piece of
user-controlled text goes through :func:`html.escape`, and links are kept only when they are
``http(s)``.

The chart stacks one panel per anomalous stream (its values, anomalies as red dots) over a shared
time axis, with the onset as a red line and the ranked changes as numbered dashed lines.

>>> svg_time_ticks(0, 3600, 400)[:3]
[(0.0, '00:00'), (900.0, '00:15'), (1800.0, '00:30')]
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opsradar.alerting.rootcause.scoring import FACTORS
from opsradar.explain import columns

if TYPE_CHECKING:
    from opsradar.alerting.rootcause.model import RootCauseReport

__all__ = ["render_html", "render_svg", "svg_time_ticks"]

_W, _LEFT, _RIGHT, _TOP, _PANEL, _GAP, _AXIS = 960, 70, 20, 84, 120, 34, 30
_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(ts: datetime) -> str:
    return f"{ts:%Y-%m-%d %H:%M:%S} UTC"


def svg_time_ticks(t0: float, t1: float, width: float) -> list[tuple[float, str]]:
    """Tick positions (epoch seconds, aligned) and HH:MM labels: about one per 100 px."""
    span = max(t1 - t0, 1.0)
    want = max(span / max(width / 100.0, 1.0), 1.0)
    step = next((s for s in _STEPS if s >= want), _STEPS[-1])
    first = (int(t0) // step + (1 if int(t0) % step else 0)) * step
    out = []
    t = float(first)
    while t <= t1:
        out.append((t, f"{datetime.fromtimestamp(t, UTC):%H:%M}"))
        t += step
    return out


def render_svg(r: RootCauseReport, *, max_changes: int = 10) -> str:
    """The chart: anomalous series, the onset, and the top changes on the time axis."""
    t0, t1 = r.chart_start.timestamp(), r.chart_end.timestamp()
    if t1 <= t0:
        t1 = t0 + 60
    plot_w = _W - _LEFT - _RIGHT
    panels = max(len(r.series), 1)
    bottom = _TOP + panels * (_PANEL + _GAP) - _GAP
    height = bottom + _AXIS

    def x(ts: datetime) -> float:
        return float(_LEFT + (min(max(ts.timestamp(), t0), t1) - t0) / (t1 - t0) * plot_w)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="rc-chart" role="img" viewBox="0 0 {_W} {height}" '
             f'width="{_W}" height="{height}" aria-label="anomalous series and changes of incident {e(r.incident_id)}">',
             f'<rect x="0" y="0" width="{_W}" height="{height}" fill="#ffffff"/>']
    for i, s in enumerate(r.series):
        top = _TOP + i * (_PANEL + _GAP)
        pts = sorted((p for p in s.points if t0 <= p.ts.timestamp() <= t1), key=lambda p: p.ts)
        parts.append(f'<g class="series" data-stream="{e(s.stream)}">')
        parts.append(f'<rect x="{_LEFT}" y="{top}" width="{plot_w}" height="{_PANEL}" fill="#f8f9fb" stroke="#d0d4dc"/>')
        parts.append(f'<text x="{_LEFT + 4}" y="{top - 6}" font-size="12" fill="#333">{e(s.stream)} — {e(s.feature)}</text>')
        if pts:
            lo, hi = min(p.value for p in pts), max(p.value for p in pts)
            if hi == lo:
                lo, hi = lo - 1.0, hi + 1.0
            pad = (hi - lo) * 0.08
            lo, hi = lo - pad, hi + pad

            def y(v: float, top: int = top, lo: float = lo, hi: float = hi) -> float:
                return top + _PANEL - (v - lo) / (hi - lo) * _PANEL

            coords = " ".join(f"{x(p.ts):.1f},{y(p.value):.1f}" for p in pts)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="#2f6fdb" stroke-width="1.5"/>')
            for p in pts:
                if p.anomalous:
                    parts.append(f'<circle class="anomaly" cx="{x(p.ts):.1f}" cy="{y(p.value):.1f}" r="4" fill="#d62728">'
                                 f'<title>{e(_fmt(p.ts))}: {e(f"{p.value:.4g}")} (anomalous)</title></circle>')
            parts.append(f'<text x="{_LEFT - 6}" y="{top + 10}" font-size="10" text-anchor="end" fill="#666">{e(f"{hi - pad:.3g}")}</text>')
            parts.append(f'<text x="{_LEFT - 6}" y="{top + _PANEL}" font-size="10" text-anchor="end" fill="#666">{e(f"{lo + pad:.3g}")}</text>')
        else:
            parts.append(f'<text x="{_LEFT + plot_w / 2}" y="{top + _PANEL / 2}" font-size="12" text-anchor="middle" fill="#888">no data in the window</text>')
        parts.append("</g>")
    if not r.series:
        parts.append(f'<text x="{_LEFT + plot_w / 2}" y="{_TOP + _PANEL / 2}" font-size="13" text-anchor="middle" fill="#888">'
                     "no anomalous series recorded for this incident</text>")
    # the time axis
    parts.append(f'<line x1="{_LEFT}" y1="{bottom}" x2="{_W - _RIGHT}" y2="{bottom}" stroke="#333"/>')
    for t, label in svg_time_ticks(t0, t1, plot_w):
        xt = _LEFT + (t - t0) / (t1 - t0) * plot_w
        parts.append(f'<line x1="{xt:.1f}" y1="{bottom}" x2="{xt:.1f}" y2="{bottom + 5}" stroke="#333"/>'
                     f'<text x="{xt:.1f}" y="{bottom + 18}" font-size="11" text-anchor="middle" fill="#333">{e(label)}</text>')
    # the onset and the changes
    xo = x(r.onset)
    drift = r.onset < r.first_anomaly
    label = "drift start (est.)" if drift else "onset"
    parts.append(f'<g class="onset"><line x1="{xo:.1f}" y1="{_TOP - 14}" x2="{xo:.1f}" y2="{bottom}" stroke="#d62728" stroke-width="2">'
                 f'<title>{e(label)} {e(_fmt(r.onset))}</title></line>'
                 f'<text x="{xo + 4:.1f}" y="{_TOP - 20}" font-size="11" fill="#d62728">{e(label)}</text></g>')
    if drift:
        xf = x(r.first_anomaly)
        parts.append(f'<g class="first-anomaly"><line x1="{xf:.1f}" y1="{_TOP - 14}" x2="{xf:.1f}" y2="{bottom}" stroke="#ff7f0e" '
                     f'stroke-width="2" stroke-dasharray="6 3"><title>first anomaly {e(_fmt(r.first_anomaly))}</title></line>'
                     f'<text x="{xf + 4:.1f}" y="{_TOP - 20}" font-size="11" fill="#ff7f0e">first anomaly</text></g>')
    placed: list[tuple[float, int]] = []  # (x, row) of the rank badges, so that close ones stack
    shown = [c for c in r.candidates[:max_changes] if t0 <= (c.effective_ts or c.ts).timestamp() <= t1]
    badges = []
    for c in shown:
        xc = x(c.effective_ts or c.ts)
        row = 0
        while any(abs(xc - px) < 18 and prow == row for px, prow in placed):
            row += 1
        placed.append((xc, row))
        badges.append((c, xc, min(row, 2)))
    for c, xc, row in reversed(badges):  # the best candidate is drawn last, on top
        when = c.effective_ts or c.ts
        cy = _TOP - 34 - 18 * row
        parts.append(f'<g class="change" data-rank="{c.rank}" data-event="{e(c.event_id)}">'
                     f'<title>#{c.rank} {e(c.summary)} ({e(_fmt(when))}, score {c.score:.3f})</title>'
                     f'<line x1="{xc:.1f}" y1="{cy:.1f}" x2="{xc:.1f}" y2="{bottom}" stroke="#6a3d9a" stroke-dasharray="4 3"/>'
                     f'<circle cx="{xc:.1f}" cy="{cy:.1f}" r="8" fill="#6a3d9a"/>'
                     f'<text x="{xc:.1f}" y="{cy + 4:.1f}" font-size="10" text-anchor="middle" fill="#fff">{c.rank}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d2330;max-width:1100px}
h1{font-size:22px;margin:0 0 6px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e1e4ea;padding-bottom:4px}
.meta{color:#555;font-size:13px} table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #e1e4ea;padding:4px 6px;text-align:left;vertical-align:top} th{background:#f3f5f8}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{display:inline-block;height:8px;background:#6a3d9a;vertical-align:middle;margin-right:4px}
.top{background:#f6f0ff;border:1px solid #d9c8f5;padding:10px 14px;border-radius:6px}
.ev{color:#555;font-size:12px} code{font-size:12px} .chart{overflow-x:auto}
.t-alert{color:#b00020} .t-change{color:#4b2a85} .t-onset{color:#d62728;font-weight:bold}
"""


def _link(url: str | None, text: str) -> str:
    if url and url.lower().startswith(("http://", "https://")):
        return f'<a href="{e(url)}" rel="noopener noreferrer">{e(text)}</a>'
    return e(text)


def render_html(r: RootCauseReport) -> str:
    """The whole page."""
    out: list[str] = []
    w = out.append
    w('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">')
    w('<meta name="viewport" content="width=device-width, initial-scale=1">')
    w(f"<title>Root cause: {e(r.title)}</title><style>{_CSS}</style></head><body>")
    w(f"<h1>Root cause report: {e(r.title)}</h1>")
    w(f'<p class="meta">Incident <code>{e(r.incident_id)}</code> · {e(r.status)} · {e(r.severity)} · services '
      f"{e(', '.join(r.services) or '—')}<br>first seen {e(_fmt(r.first_seen))} · last seen {e(_fmt(r.last_seen))} · "
      f"onset {e(_fmt(r.onset))} ({e(r.onset_basis)}) · generated {e(_fmt(r.generated_at))}</p>")
    if r.saved:
        w(f'<p class="meta" id="saved">Saved on {e(_fmt(r.generated_at))}, before the store deleted the events it was '
          "built from (store.event_retention): shown as it was then.</p>")
    top = r.top
    if top:
        w(f'<div class="top" id="top-candidate"><strong>Most likely: </strong>{_link(top.url, top.summary)} '
          f"<code>{e(top.entity)}</code> at {e(_fmt(top.ts))} — score {top.score:.3f}<br>"
          f'<span class="ev">{e("; ".join(top.evidence))}</span></div>')
    else:
        w('<div class="top" id="top-candidate">No change on a related entity in the look-back window.</div>')
    w("<h2>Anomalous series and changes</h2>")
    w(f'<div class="chart">{render_svg(r)}</div>')
    w("<h2>What changed (ranked)</h2>")
    w(f'<p class="meta">Changes from {e(_fmt(r.window_start))} to {e(_fmt(r.window_end))}; '
      f"{r.excluded_unrelated} unrelated changes left out. score = time × graph × reach × risk × order × logs.</p>")
    if r.candidates:
        w('<table id="candidates"><thead><tr><th>#</th><th>score</th>'
          + "".join(f"<th>{e(f)}</th>" for f in FACTORS) + "<th>when (UTC)</th><th>change</th><th>why</th></tr></thead><tbody>")
        for c in r.candidates:
            cells = "".join(f'<td class="num">{c.factors.get(f, 1.0):.2f}</td>' for f in FACTORS)
            w(f'<tr><td class="num">{c.rank}</td><td class="num"><span class="bar" style="width:{max(c.score, 0.0) * 60:.0f}px"></span>'
              f"{c.score:.3f}</td>{cells}<td>{e(f'{c.ts:%Y-%m-%d %H:%M}')}</td>"
              f"<td>{_link(c.url, c.summary)}<br><code>{e(c.entity)}</code></td>"
              f'<td class="ev">{e("; ".join(c.evidence))}</td></tr>')
        w("</tbody></table>")
    else:
        w("<p>No candidate.</p>")
    w("<h2>Top anomalous features</h2>")
    if r.top_features:
        w("<table><thead><tr><th>stream</th><th>feature</th><th>value</th><th>baseline</th><th>normal range</th><th>share</th></tr></thead><tbody>")
        for f in r.top_features:
            name, value, expected, usual = columns(f.feature, f.value, f.expected, f.low, f.high)
            w(f"<tr><td>{e(f.stream)}</td><td>{e(name)} <code>{e(f.feature)}</code></td><td class=num>{e(value)}</td>"
              f"<td class=num>{e(expected)}</td><td class=num>{e(usual)}</td><td class=num>{f.contribution:.0%}</td></tr>")
        w("</tbody></table>")
    else:
        w("<p>No anomaly explanation available.</p>")
    w("<h2>New and increased log templates</h2>")
    if r.log_templates:
        w("<table><thead><tr><th>status</th><th>template</th><th>count</th><th>baseline</th><th>ratio</th><th>first seen</th><th>where</th></tr></thead><tbody>")
        for t in r.log_templates:
            ratio = f"{t.ratio:.1f}×" if t.ratio else "—"
            w(f"<tr><td>{e(t.status)}</td><td><code>{e(t.template)}</code></td><td class=num>{t.count}</td>"
              f"<td class=num>{t.baseline_count}</td><td class=num>{e(ratio)}</td><td>{e(f'{t.first_seen:%H:%M:%S}')}</td>"
              f"<td>{e(', '.join(t.entities))}</td></tr>")
        w("</tbody></table>")
    else:
        w("<p>No new or increased log template on the affected services.</p>")
    w("<h2>Timeline</h2><table id=\"timeline\"><thead><tr><th>when (UTC)</th><th>what</th><th>entity</th><th>detail</th></tr></thead><tbody>")
    for t in r.timeline:
        rank = f"#{t.candidate_rank} " if t.candidate_rank else ""
        w(f'<tr class="t-{e(t.type)}"><td>{e(f"{t.ts:%Y-%m-%d %H:%M:%S}")}</td><td>[{e(t.type)}] {e(rank)}{e(t.title)}</td>'
          f"<td>{e(t.entity or '')}</td><td>{e(t.detail)}</td></tr>")
    w("</tbody></table>")
    w("<h2>Similar past incidents</h2>")
    if r.similar_incidents:
        w("<ul>")
        for s in r.similar_incidents:
            extra = "".join(f"<li>{e(label)}: {e(v)}</li>" for label, v in
                            (("root cause then", s.root_cause), ("resolution", s.resolution)) if v)
            extra += "".join(f"<li>feedback: {e(fb)}</li>" for fb in s.feedback)
            w(f"<li><code>{e(s.id)}</code> {e(s.title)} — similarity {s.similarity:.2f}, {e(s.status)}, "
              f"{e(_fmt(s.first_seen))}<ul>{extra}</ul></li>")
        w("</ul>")
    else:
        w("<p>None found.</p>")
    w("</body></html>")
    return "\n".join(out)
