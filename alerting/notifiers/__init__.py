"""Notifiers: incident updates → the persistent outbox → Slack.

- :class:`Notifier` (``outbox``): an :class:`~opsradar.alerting.correlation.IncidentUpdate` becomes
  outbox rows, once per (incident, state change, channel); storm mode digests.
- :class:`OutboxWorker` (``outbox``): drains the outbox in order, at Slack's pace, with retries.
- :class:`SlackTransport`, :func:`make_slack_worker`, :class:`InteractionHandler` (``slack``).
- :class:`Renderer` (``render``): Jinja2 templates with Slack mrkdwn escaping.
"""

from __future__ import annotations

from opsradar.alerting.notifiers.outbox import Destination, DrainStats, Notifier, OutboxWorker
from opsradar.alerting.notifiers.render import Renderer, escape_mrkdwn
from opsradar.alerting.notifiers.slack import (
    InteractionHandler,
    InteractionResult,
    InvalidSignature,
    SlackTransport,
    make_slack_worker,
    record_message_ts,
)

__all__ = [
    "Destination",
    "DrainStats",
    "InteractionHandler",
    "InteractionResult",
    "InvalidSignature",
    "Notifier",
    "OutboxWorker",
    "Renderer",
    "SlackTransport",
    "escape_mrkdwn",
    "make_slack_worker",
    "record_message_ts",
]
