"""The root-cause report as data: pydantic models that render to JSON, Markdown and HTML.

A :class:`RootCauseReport` holds the ranked :class:`Candidate` changes (each with its score broken
down by factor), the timeline of alerts and changes, the top anomalous features with their baseline,
new and increased log templates, similar past incidents, and the series drawn in the HTML chart.

>>> from datetime import datetime, timezone
>>> c = Candidate(event_id="git-1", kind="commit", entity="repo:shop", source="git",
...               ts=datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc), summary="fix cart",
...               score=0.5, factors={"time": 1.0, "graph": 1.0, "reach": 1.0, "risk": 0.5, "order": 1.0, "logs": 1.0})
>>> c.factor_product() == c.score
True
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from opsradar.models import UtcDatetime

__all__ = [
    "Candidate",
    "FeatureDeviation",
    "RootCauseReport",
    "Series",
    "SeriesPoint",
    "SimilarIncident",
    "TemplateChange",
    "TimelineItem",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Model):
    """One change that may have caused the incident, with its score broken down by factor.

    ``score`` is the product of ``factors`` (see :mod:`opsradar.alerting.rootcause.scoring`).
    ``effective_ts`` is when the change reached production (a commit's deploy, when known).
    """

    rank: int = 0
    event_id: str
    kind: str
    entity: str
    source: str
    ts: UtcDatetime
    effective_ts: UtcDatetime | None = None
    service: str | None = None
    summary: str
    score: float = Field(ge=0.0, le=1.0)
    factors: dict[str, float]
    evidence: list[str] = Field(default_factory=list)
    related_event_ids: list[str] = Field(default_factory=list, description="deploys of this commit, or commits of this deploy")
    url: str | None = None

    def factor_product(self) -> float:
        """The product of the factors (equals ``score`` up to rounding)."""
        return round(math.prod(self.factors.values()), 6)


class TimelineItem(_Model):
    """One alert, anomaly onset or change on the incident's timeline."""

    ts: UtcDatetime
    type: str = Field(description="alert, change, onset, incident")
    title: str
    entity: str | None = None
    detail: str = ""
    candidate_rank: int | None = None


class FeatureDeviation(_Model):
    """An anomalous feature against its learnt baseline (from an anomaly's explanation)."""

    stream: str
    entity: str
    ts: UtcDatetime
    feature: str
    value: float
    expected: float
    low: float
    high: float
    contribution: float
    anomaly_score: float


class TemplateChange(_Model):
    """A log template that is new in the incident window, or whose rate increased."""

    template_id: str
    template: str
    status: str = Field(description="new or increased")
    entities: list[str]
    count: int
    baseline_count: int
    ratio: float | None = Field(default=None, description="rate in the window / baseline rate")
    first_seen: UtcDatetime


class SimilarIncident(_Model):
    """A past incident that looks like this one, and how it ended."""

    id: str
    title: str
    similarity: float
    status: str
    first_seen: UtcDatetime
    resolved_at: UtcDatetime | None = None
    services: list[str] = Field(default_factory=list)
    resolution: str = ""
    root_cause: str | None = None
    feedback: list[str] = Field(default_factory=list)


class SeriesPoint(_Model):
    ts: UtcDatetime
    value: float
    anomalous: bool = False


class Series(_Model):
    """One affected stream, as drawn in the chart: its values (or event counts) over time."""

    stream: str
    entity: str
    feature: str
    points: list[SeriesPoint]


class RootCauseReport(_Model):
    """What changed before this incident, ranked and explained."""

    incident_id: str
    title: str
    status: str
    severity: str
    services: list[str]
    entities: list[str]
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    onset: UtcDatetime
    first_anomaly: UtcDatetime
    onset_basis: str = Field("first anomaly", description="first anomaly, or the estimated start of a drift")
    generated_at: UtcDatetime
    window_start: UtcDatetime
    window_end: UtcDatetime
    chart_start: UtcDatetime
    chart_end: UtcDatetime
    candidates: list[Candidate]
    excluded_unrelated: int = Field(0, description="changes in the window on entities unrelated to the incident")
    timeline: list[TimelineItem]
    top_features: list[FeatureDeviation]
    log_templates: list[TemplateChange]
    similar_incidents: list[SimilarIncident]
    series: list[Series]
    scoring: dict[str, Any] = Field(default_factory=dict, description="the parameters the scores were computed with")
    saved: bool = Field(False, description=(
        "true when this is the copy saved before the store's retention (store.event_retention) deleted the "
        "events it was built from: it is shown as it was then (generated_at), with the incident's current status"))

    @property
    def top(self) -> Candidate | None:
        """The best candidate, if any."""
        return self.candidates[0] if self.candidates else None

    def root_cause_entries(self, limit: int = 3) -> list[dict[str, Any]]:
        """The top candidates as plain dicts, for ``Incident.root_cause`` (what the notifier shows)."""
        keys = ("rank", "event_id", "kind", "entity", "ts", "summary", "score", "factors", "related_event_ids", "url")
        return [c.model_dump(mode="json", include=set(keys)) for c in self.candidates[:limit]]

    def to_json(self, *, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    def to_markdown(self) -> str:
        from opsradar.alerting.rootcause.render_markdown import render_markdown

        return str(render_markdown(self))

    def to_html(self) -> str:
        from opsradar.alerting.rootcause.render_html import render_html

        return str(render_html(self))
