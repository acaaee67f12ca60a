"""Render a root-cause report as Markdown, ready to paste into a postmortem.

User-controlled text (titles, summaries, templates) is escaped so that it cannot break a table or
inject HTML into a Markdown viewer.

>>> md_escape("a|b <script>")
'a\\\\|b &lt;script&gt;'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsradar.alerting.rootcause.scoring import FACTORS
from opsradar.explain import columns

if TYPE_CHECKING:
    from opsradar.alerting.rootcause.model import RootCauseReport

__all__ = ["md_code", "md_escape", "render_markdown"]


def md_escape(text: object) -> str:
    """Escape text for a Markdown table cell or line: HTML, pipes, backticks, line breaks."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in ("\\", "|", "`", "*", "_", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return " ".join(s.split())


def md_code(text: object) -> str:
    """Text as an inline code span (backticks removed; pipes escaped for tables).

    >>> md_code("a|b`c")
    '`a\\\\|bc`'
    """
    return "`" + " ".join(str(text).replace("`", "").replace("|", "\\|").split()) + "`"


def _ts(value: object) -> str:
    from datetime import datetime

    return f"{value:%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else str(value)


def render_markdown(r: RootCauseReport) -> str:
    out: list[str] = []
    w = out.append
    w(f"# Root cause report: {md_escape(r.title)}")
    w("")
    w(f"- Incident: {md_code(r.incident_id)} ({md_escape(r.status)}, {md_escape(r.severity)})")
    w(f"- Services: {md_escape(', '.join(r.services) or '—')}")
    w(f"- First seen {_ts(r.first_seen)} UTC, last seen {_ts(r.last_seen)} UTC; onset {_ts(r.onset)} UTC ({md_escape(r.onset_basis)})")
    w(f"- Changes considered: {_ts(r.window_start)} to {_ts(r.window_end)} UTC; "
      f"{len(r.candidates)} candidates shown, {r.excluded_unrelated} unrelated changes left out")
    if r.saved:
        w(f"- Saved on {_ts(r.generated_at)} UTC, before the store deleted the events it was built from "
          "(store.event_retention): shown as it was then")
    w("")
    w("## What changed (ranked)")
    w("")
    if not r.candidates:
        w("No change on a related entity in the look-back window.")
    else:
        w("| # | score | " + " | ".join(FACTORS) + " | when (UTC) | change | why |")
        w("|---|---|" + "---|" * len(FACTORS) + "---|---|---|")
        for c in r.candidates:
            factors = " | ".join(f"{c.factors.get(f, 1.0):.2f}" for f in FACTORS)
            w(f"| {c.rank} | {c.score:.3f} | {factors} | {_ts(c.ts)} | {md_escape(c.summary)} ({md_code(c.entity)}) | "
              f"{md_escape('; '.join(c.evidence))} |")
        w("")
        w("score = time × graph × reach × risk × order × logs (see `opsradar.alerting.rootcause.scoring`).")
    w("")
    w("## Timeline")
    w("")
    for t in r.timeline:
        rank = f" **#{t.candidate_rank}**" if t.candidate_rank else ""
        ent = f" {md_code(t.entity)}" if t.entity else ""
        detail = f" — {md_escape(t.detail)}" if t.detail else ""
        w(f"- {_ts(t.ts)} [{t.type}]{rank} {md_escape(t.title)}{ent}{detail}")
    w("")
    w("## Top anomalous features")
    w("")
    if r.top_features:
        w("| stream | feature | value | baseline | normal range | share |")
        w("|---|---|---|---|---|---|")
        for f in r.top_features:
            name, value, expected, usual = columns(f.feature, f.value, f.expected, f.low, f.high)
            w(f"| {md_code(f.stream)} | {md_escape(name)} ({md_code(f.feature)}) | {value} | {expected} | "
              f"{usual} | {f.contribution:.0%} |")
    else:
        w("No anomaly explanation available.")
    w("")
    w("## New and increased log templates")
    w("")
    if r.log_templates:
        w("| status | template | count | baseline | ratio | first seen | where |")
        w("|---|---|---|---|---|---|---|")
        for t in r.log_templates:
            ratio = f"{t.ratio:.1f}×" if t.ratio else "—"
            w(f"| {t.status} | {md_code(t.template)} | {t.count} | {t.baseline_count} | {ratio} | {_ts(t.first_seen)} | "
              f"{md_escape(', '.join(t.entities))} |")
    else:
        w("No new or increased log template on the affected services.")
    w("")
    w("## Similar past incidents")
    w("")
    if r.similar_incidents:
        for s in r.similar_incidents:
            w(f"- {md_code(s.id)} {md_escape(s.title)} (similarity {s.similarity:.2f}, {md_escape(s.status)}, "
              f"{_ts(s.first_seen)} UTC)")
            if s.root_cause:
                w(f"  - root cause then: {md_escape(s.root_cause)}")
            if s.resolution:
                w(f"  - resolution: {md_escape(s.resolution)}")
            for fb in s.feedback:
                w(f"  - feedback: {md_escape(fb)}")
    else:
        w("None found.")
    w("")
    return "\n".join(out)
