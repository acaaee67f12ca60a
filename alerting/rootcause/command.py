"""The logic behind ``opsradar report INCIDENT_ID [--format md|json|html]``.

>>> FORMATS
('md', 'json', 'html')
"""

from __future__ import annotations

from opsradar.alerting.rootcause.builder import report_for
from opsradar.alerting.rootcause.model import RootCauseReport
from opsradar.config import Config
from opsradar.store import Store

__all__ = ["FORMATS", "render", "report_text"]

FORMATS = ("md", "json", "html")


def render(report: RootCauseReport, fmt: str) -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "md":
        return str(report.to_markdown())
    if fmt == "json":
        return str(report.to_json())
    if fmt == "html":
        return str(report.to_html())
    raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


def report_text(cfg: Config, incident_id: str, fmt: str) -> str:
    """Open the configured store, build the report of ``incident_id`` (or take its saved copy:
    :func:`~opsradar.alerting.rootcause.builder.report_for`) and render it.

    Raises :class:`~opsradar.alerting.rootcause.builder.IncidentNotFound` for an unknown id.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    store = Store(cfg.store.resolved_url())
    try:
        return render(report_for(incident_id, store, cfg.entities), fmt)
    finally:
        store.close()
