"""Root-cause reports: what changed before an incident, ranked and explained.

The public facade. :func:`build_report` reads an incident and its surroundings from the store and
returns a :class:`RootCauseReport` (``model_dump()`` / ``to_json()``, ``to_markdown()``,
``to_html()``); :func:`rank_changes` ranks change events without a store. How the score is computed
is documented in :mod:`opsradar.alerting.rootcause.scoring` and ``docs/rootcause.md``.

>>> from opsradar.alerting.rootcause import FACTORS
>>> FACTORS
('time', 'graph', 'reach', 'risk', 'order', 'logs')
"""

from __future__ import annotations

from opsradar.alerting.rootcause.builder import IncidentNotFound, ReportSettings, build_report, report_for, save_report
from opsradar.alerting.rootcause.model import (
    Candidate,
    FeatureDeviation,
    RootCauseReport,
    Series,
    SeriesPoint,
    SimilarIncident,
    TemplateChange,
    TimelineItem,
)
from opsradar.alerting.rootcause.scoring import FACTORS, ScoringParams, change_risk, describe_change, rank_changes

__all__ = [
    "FACTORS",
    "Candidate",
    "FeatureDeviation",
    "IncidentNotFound",
    "ReportSettings",
    "RootCauseReport",
    "ScoringParams",
    "Series",
    "SeriesPoint",
    "SimilarIncident",
    "TemplateChange",
    "TimelineItem",
    "build_report",
    "change_risk",
    "describe_change",
    "rank_changes",
    "report_for",
    "save_report",
]
