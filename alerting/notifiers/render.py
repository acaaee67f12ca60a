"""Message rendering: Jinja2 templates (overridable) into Slack mrkdwn text and Block Kit blocks.

Templates live in ``opsradar/alerting/templates/*.j2``; a file with the same name in
``SlackConfig.templates_dir`` overrides the packaged one. Templates run in Jinja's immutable sandbox,
and **every** ``{{ value }}`` is escaped for Slack mrkdwn (``&`` → ``&amp;``, ``<`` → ``&lt;``,
``>`` → ``&gt;``) unless it is a :class:`Safe` string built by opsradar itself (links, mentions from
the config). User-controlled text — alert titles, label values, names — can therefore never ping
``<!channel>`` or forge a link.

>>> escape_mrkdwn("<!channel> & <http://evil|click>")
'&lt;!channel&gt; &amp; &lt;http://evil|click&gt;'
>>> r = Renderer()
>>> r.env.from_string("{{ x }} {{ y }}").render(x="a<b", y=Safe("<https://x|x>"))
'a&lt;b <https://x|x>'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from opsradar.models import Incident, IncidentStatus

__all__ = ["ACTIONS", "WEAK_ROOT_CAUSE", "Renderer", "Safe", "escape_mrkdwn", "evidence_lines", "link", "root_cause_line"]

_PACKAGED = Path(__file__).resolve().parents[1] / "templates"

#: The interactive buttons: action_id → label.
ACTIONS = {
    "opsradar_ack": "Acknowledge",
    "opsradar_resolve": "Resolve",
    "opsradar_silence_1h": "Silence 1h",
    "opsradar_false_positive": "False positive",
}

#: Below this score the top root-cause candidate is shown as the closest change, not a likely cause.
#: For scale (see :mod:`opsradar.alerting.rootcause.scoring`): a change on the affected service an
#: hour before the onset with no risk signal scores about 0.13; under 0.05 several factors speak
#: against it (a Jira change that reaches nothing, a neighbour's change hours before).
WEAK_ROOT_CAUSE = 0.05

_STATUS = {
    IncidentStatus.open: (":red_circle:", "open"),
    IncidentStatus.acknowledged: (":large_yellow_circle:", "acknowledged"),
    IncidentStatus.resolved: (":large_green_circle:", "resolved"),
}


class Safe(str):
    """Text opsradar built itself and that must not be escaped (links, configured mentions)."""

    __slots__ = ()


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> Safe:
    """A mrkdwn link whose label is escaped (and whose URL cannot break out of the ``<…>``)."""
    clean = url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C").replace(" ", "%20")
    return Safe(f"<{clean}|{escape_mrkdwn(label).replace('|', '¦')}>")


def _finalize(value: Any) -> Any:
    if isinstance(value, Safe):
        return value
    if value is None:
        return ""
    return escape_mrkdwn(value if isinstance(value, str) else str(value))


def _fmt(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC") if ts else "—"


def _plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


def evidence_lines(alerts: Sequence[Mapping[str, Any]], limit: int = 3) -> tuple[list[str], int]:
    """What the incident's alerts saw, in words, for the message: at most ``limit`` lines (most
    severe first, then earliest; identical lines once) and how many alerts are not shown.

    An anomaly's alert says which features left their range (its ``summary`` annotation); a rule's
    alert gives its ``detail``, else the rule's ``description``.

    >>> evidence_lines([
    ...     {"title": "Anomalous build on job:a", "severity": "error", "starts_at": "2026-01-05T10:00:00Z",
    ...      "annotations": {"summary": "duration 41 min (usual 4.8–6.8 min) — score 0.99 ≥ 0.50"}},
    ...     {"title": "deploy-then-errors", "severity": "critical", "starts_at": "2026-01-05T10:05:00Z",
    ...      "annotations": {"description": "A deploy, then 10 error logs within 30 minutes."}},
    ...     {"title": "Anomalous log on service:b", "severity": "warning", "starts_at": "2026-01-05T10:06:00Z",
    ...      "annotations": {}}], limit=2)
    (['deploy-then-errors: A deploy, then 10 error logs within 30 minutes.', 'Anomalous build on job:a: duration 41 min (usual 4.8–6.8 min) — score 0.99 ≥ 0.50'], 1)
    """
    ordered = sorted(alerts, key=lambda a: (-_RANK.get(str(a.get("severity")), 0), str(a.get("starts_at", ""))))
    lines: list[str] = []
    for a in ordered:
        notes = a.get("annotations") or {}
        what = notes.get("summary") or notes.get("detail") or notes.get("description") or ""
        line = _plain(f"{a.get('title', '')}: {what}" if what else str(a.get("title", "")), 300)
        if line and line not in lines:
            lines.append(line)
    return lines[:limit], max(0, len(ordered) - min(limit, len(lines)))


def root_cause_line(candidates: Sequence[Mapping[str, Any]]) -> str | None:
    """The top root-cause candidate in one line, with its score; None when there is none.

    A candidate scoring under :data:`WEAK_ROOT_CAUSE` is shown as what it is, the closest change, not
    a likely cause (a flood of requests need not follow any change):

    >>> root_cause_line([{"summary": "deploy shop-deploy #41", "score": 0.62}])
    'deploy shop-deploy #41 (score 0.62)'
    >>> root_cause_line([{"summary": "issue SHOP-7 → Done", "score": 0.009}])
    'no change clearly linked (closest: issue SHOP-7 → Done, score 0.01)'
    """
    if not candidates:
        return None
    top = candidates[0]
    for key in ("summary", "title", "description", "entity", "id"):
        if top.get(key):
            text = str(top[key])
            score = top.get("score")
            if not isinstance(score, int | float):
                return text
            if score < WEAK_ROOT_CAUSE:
                return f"no change clearly linked (closest: {text}, score {float(score):.2f})"
            return f"{text} (score {float(score):.2f})"
    return None


_BUTTON_STYLES = {"opsradar_resolve": "primary", "opsradar_false_positive": "danger"}


def _button(action_id: str, incident_id: str) -> dict[str, Any]:
    """One of the :data:`ACTIONS` as a Block Kit button for ``incident_id`` (the interaction handler
    reads the action and the incident from it)."""
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "value": incident_id,
                              "text": {"type": "plain_text", "text": ACTIONS[action_id]}}
    style = _BUTTON_STYLES.get(action_id)
    if style:
        button["style"] = style
    return button


class Renderer:
    """Renders incidents into text and blocks with the (possibly overridden) templates."""

    def __init__(self, templates_dir: str | Path | None = None, *, public_url: str | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir:
            loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
        loaders.append(jinja2.FileSystemLoader(str(_PACKAGED)))
        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders), finalize=_finalize, undefined=jinja2.StrictUndefined,
            autoescape=False, keep_trailing_newline=False,
        )
        self.public_url = (public_url or "http://127.0.0.1:8000").rstrip("/")

    def report_url(self, incident_id: str) -> str:
        return f"{self.public_url}/v1/incidents/{incident_id}/report?format=html"

    @staticmethod
    def root_cause_text(incident: Incident) -> str:
        """The top candidate and its score (see :func:`root_cause_line`), or "—"."""
        return root_cause_line(incident.root_cause) or "—"

    def _context(self, incident: Incident, mentions: list[str], evidence: Sequence[str] = (),
                 more: int = 0) -> dict[str, Any]:
        emoji, status_text = _STATUS[incident.status]
        if incident.status == IncidentStatus.acknowledged and incident.acknowledged_by:
            status_text = f"acknowledged by {incident.acknowledged_by}"
        return {
            "incident": incident,
            "status_emoji": Safe(emoji),
            "status_text": status_text,
            "services": ", ".join(incident.services),
            "sources": ", ".join(incident.sources),
            "first_seen": _fmt(incident.first_seen),
            "last_seen": _fmt(incident.last_seen),
            "root_cause": self.root_cause_text(incident),
            "report_link": link(self.report_url(incident.id), "Full report"),
            "mentions": Safe(" ".join(mentions) + " ") if mentions else Safe(""),
            "evidence": list(evidence),
            "more_alerts": more,
        }

    def incident_text(self, incident: Incident, *, mentions: list[str] | None = None,
                      evidence: Sequence[str] = (), more: int = 0) -> str:
        """The incident's message; ``evidence`` and ``more`` come from :func:`evidence_lines`."""
        context = self._context(incident, mentions or [], evidence, more)
        return self.env.get_template("slack_incident.j2").render(**context).strip()

    def incident_blocks(self, incident: Incident, *, mentions: list[str] | None = None,
                        evidence: Sequence[str] = (), more: int = 0) -> list[dict[str, Any]]:
        """Block Kit: a header, the templated summary, the facts, and the action buttons."""
        text = self.incident_text(incident, mentions=mentions, evidence=evidence, more=more)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _plain(incident.title, 150), "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _plain(text, 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape_mrkdwn(f"opsradar incident {incident.id}")}]},
        ]
        buttons = []
        for action_id in ACTIONS:
            if incident.status == IncidentStatus.resolved and action_id in ("opsradar_ack", "opsradar_resolve"):
                continue
            if incident.status == IncidentStatus.acknowledged and action_id == "opsradar_ack":
                continue
            buttons.append(_button(action_id, incident.id))
        if buttons:
            blocks.append({"type": "actions", "block_id": f"opsradar:{incident.id}", "elements": buttons})
        return blocks

    def reminder_blocks(self, incident: Incident, text: str) -> list[dict[str, Any]]:
        """A reminder in the thread: its text, and Acknowledge and Resolve buttons, so that whoever
        the reminder reaches can stop it from there (the same actions as the message's buttons)."""
        buttons = [_button(action_id, incident.id) for action_id in ("opsradar_ack", "opsradar_resolve")]
        return [{"type": "section", "text": {"type": "mrkdwn", "text": _plain(text, 3000)}},
                {"type": "actions", "block_id": f"opsradar:{incident.id}:reminder", "elements": buttons}]

    def reply_text(self, change: str, *, detail: str = "", actor: str | None = None,
                   mentions: list[str] | None = None) -> str:
        return self.env.get_template("slack_reply.j2").render(
            change=change, detail=detail, actor=actor or "",
            mentions=Safe(" ".join(mentions) + " ") if mentions else Safe(""),
        ).strip()

    def digest_text(self, incidents: list[Incident], *, started: datetime,
                    links: dict[str, str] | None = None) -> str:
        items = [{"incident": inc, "services": ", ".join(inc.services),
                  "link": link((links or {}).get(inc.id) or self.report_url(inc.id), inc.id)} for inc in incidents]
        return self.env.get_template("slack_digest.j2").render(incidents=items, started=_fmt(started)).strip()

    def digest_reminder_text(self, incidents: list[Incident], *, detail: str,
                             mentions: list[str] | None = None) -> str:
        """A reminder in a storm digest's thread of its ``incidents`` still open and not acknowledged."""
        items = [{"incident": inc, "services": ", ".join(inc.services), "link": link(self.report_url(inc.id), inc.id)}
                 for inc in incidents]
        return self.env.get_template("slack_digest_reminder.j2").render(
            incidents=items, detail=detail, mentions=Safe(" ".join(mentions) + " ") if mentions else Safe(""),
        ).strip()

    def section_blocks(self, text: str) -> list[dict[str, Any]]:
        """``text`` as one Block Kit section (Slack's limit: 3,000 characters)."""
        return [{"type": "section", "text": {"type": "mrkdwn", "text": _plain(text, 3000)}}]

    def digest_blocks(self, incidents: list[Incident], *, started: datetime) -> list[dict[str, Any]]:
        return self.section_blocks(self.digest_text(incidents, started=started))
