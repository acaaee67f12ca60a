"""The rule file format: pydantic models, strict (unknown keys are errors), and the JSON Schema.

One rule file is a mapping with any of these sections; a rule set is the union of its files::

    receivers        Slack channels (with mentions) that alerts are routed to
    time_intervals   named weekly time windows (change windows, nights, weekends)
    route            the routing tree (at most one file defines it)
    filters          rules over alerts: drop, set, escalate, route
    event_rules      rules over events that raise alerts on their own (known-bad patterns):
                     pattern, frequency, new_term, flatline, sequence
    silences         matchers + start and end, creator and comment
    inhibit_rules    source matchers, target matchers, equal labels

>>> f = RuleFile.model_validate({"filters": [{"name": "drop-nightly", "action": "drop",
...                                          "matchers": ['entity=~"job:nightly-.*"']}]})
>>> f.filters[0].action
'drop'
"""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from opsradar.alerting.rules.matchers import parse_matcher
from opsradar.config import parse_duration
from opsradar.models import Severity, UtcDatetime

__all__ = [
    "EventRule",
    "FilterRule",
    "FlatlineTrigger",
    "FrequencyTrigger",
    "InhibitRule",
    "NewTermTrigger",
    "PatternTrigger",
    "Receiver",
    "Route",
    "RuleFile",
    "SequenceStep",
    "SequenceTrigger",
    "SilenceSpec",
    "SlackTarget",
    "TimeInterval",
    "TimeRange",
    "json_schema",
]


def _duration(value: Any) -> timedelta:
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w))+\s*$"},
            {"type": "number", "minimum": 0},
        ],
        "description": "a duration: '30s', '5m', '1h30m', '2d', or seconds",
    }),
]


def _check_matcher(text: str) -> str:
    parse_matcher(text)
    return text


MatcherText = Annotated[
    str,
    AfterValidator(_check_matcher),
    WithJsonSchema({
        "type": "string",
        "pattern": r"^\s*[A-Za-z0-9_.\-]+\s*(=~|!~|!=|>=|<=|=|>|<)",
        "description": "NAME OP VALUE, OP one of = != =~ !~ > >= < <=; regexes are RE2, fully anchored",
        "examples": ['service="shop"', 'entity=~"job:.*-deploy"', "values.duration_s>600"],
    }),
]

EVENT_FIELDS = ("source", "kind", "entity", "entity_type", "entity_name", "service", "id")
_EVENT_PREFIXES = ("labels.", "values.", "attrs.")


def _check_event_field(name: str) -> str:
    if name in EVENT_FIELDS or (name.startswith(_EVENT_PREFIXES) and name.split(".", 1)[1]):
        return name
    raise ValueError(f"unknown event field {name!r}: use {', '.join(EVENT_FIELDS)}, or labels.x, values.x, attrs.x")


def _check_event_matcher(text: str) -> str:
    _check_event_field(parse_matcher(text).name)
    return text


EventField = Annotated[str, AfterValidator(_check_event_field)]
EventMatcherText = Annotated[
    str,
    AfterValidator(_check_matcher),
    AfterValidator(_check_event_matcher),
    WithJsonSchema({
        "type": "string",
        "pattern": r"^\s*(source|kind|entity|entity_type|entity_name|service|id|(labels|values|attrs)\.[A-Za-z0-9_.\-]+)"
                   r"\s*(=~|!~|!=|>=|<=|=|>|<)",
        "description": "FIELD OP VALUE on an event: source, kind, entity, entity_type, entity_name, service, id, "
                       "labels.x, values.x, attrs.x",
        "examples": ['kind="deploy"', 'labels.level=~"(?i)error"', "values.failed>=20"],
    }),
]

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=100)]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# ----------------------------------------------------------------------------- receivers, time


class SlackTarget(_Strict):
    channel: str = Field(pattern=r"^(#[a-z0-9_\-.]+|[CGD][A-Z0-9]{6,})$", description="'#name' or a channel id")
    mentions: list[str] = Field(default_factory=list, description="e.g. '@oncall', '<!here>', '<@U123>'")


class Receiver(_Strict):
    """Where alerts go. A receiver without a target is a sink (routed, never notified)."""

    name: Name
    slack: SlackTarget | None = None


class TimeRange(_Strict):
    start: time = Field(description="HH:MM, inclusive")
    end: time = Field(description="HH:MM, exclusive; an end before the start wraps midnight")

    @model_validator(mode="after")
    def _not_empty(self) -> TimeRange:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start.isoformat('minutes')}: the range is empty")
        return self


class TimeInterval(_Strict):
    """A weekly window: on these weekdays (all when empty), within these times (all day when empty)."""

    name: Name
    weekdays: list[Weekday] = Field(default_factory=list)
    times: list[TimeRange] = Field(default_factory=list)
    location: str = Field(default="UTC", description="IANA time zone, e.g. 'Europe/Paris'")

    @field_validator("location")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    def contains(self, ts: datetime) -> bool:
        local = ts.astimezone(zoneinfo.ZoneInfo(self.location))
        if self.weekdays and WEEKDAYS[local.weekday()] not in self.weekdays:
            return False
        if not self.times:
            return True
        t = local.time().replace(tzinfo=None)
        for r in self.times:
            if r.start <= r.end and r.start <= t < r.end:
                return True
            if r.start > r.end and (t >= r.start or t < r.end):
                return True
        return False


class _TimeScoped(_Strict):
    active_time_intervals: list[str] = Field(
        default_factory=list, description="the rule applies only inside one of these intervals"
    )
    outside_time_intervals: list[str] = Field(
        default_factory=list, description="the rule applies only outside all of these intervals"
    )


# ----------------------------------------------------------------------------- routing


class Route(_Strict):
    """A node of the routing tree. Unset options are inherited from the parent (Alertmanager)."""

    receiver: str | None = None
    matchers: list[MatcherText] = Field(default_factory=list)
    group_by: list[str] | None = Field(default=None, description="labels to group by; ['...'] = no grouping")
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(default=False, alias="continue", description="keep matching siblings")
    routes: list[Route] = Field(default_factory=list)


# ----------------------------------------------------------------------------- filters over alerts


class FilterRule(_TimeScoped):
    """A rule over alerts, applied in file order: the first ``drop`` stops everything."""

    name: Name
    description: str = ""
    matchers: list[MatcherText] = Field(default_factory=list, description="all must match; empty = every alert")
    action: Literal["drop", "set", "escalate", "route"]
    severity: Severity | None = Field(default=None, description="set: this severity; escalate: at least this")
    team: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    receivers: list[str] = Field(default_factory=list, description="route: also send to these receivers")
    group_by: list[str] | None = Field(default=None, description="route: grouping for these receivers")
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None

    @model_validator(mode="after")
    def _fits_action(self) -> FilterRule:
        grouping = (self.group_by is not None or self.group_wait or self.group_interval or self.repeat_interval)
        if grouping and self.action != "route":
            raise ValueError("group_by and group windows go with action 'route' (or in the routing tree)")
        if self.action == "drop" and (self.severity or self.team or self.labels or self.receivers):
            raise ValueError("action 'drop' takes no severity, team, labels or receivers")
        if self.action == "set" and not (self.severity or self.team or self.labels):
            raise ValueError("action 'set' needs severity, team or labels")
        if self.action == "route" and not self.receivers:
            raise ValueError("action 'route' needs receivers")
        return self


# ----------------------------------------------------------------------------- rules over events


class _Trigger(_Strict):
    match: list[EventMatcherText] = Field(
        default_factory=list,
        description="event matchers on source, kind, entity, entity_type, service, labels.x, values.x, attrs.x",
    )


class PatternTrigger(_Trigger):
    """Every matching event raises an alert (a known-bad pattern)."""

    type: Literal["pattern"]


class FrequencyTrigger(_Trigger):
    """``count`` matching events within ``window`` (per ``group_by`` values) raise an alert."""

    type: Literal["frequency"]
    count: int = Field(ge=1)
    window: Duration
    group_by: list[EventField] = Field(default_factory=list)


class NewTermTrigger(_Trigger):
    """A value of ``fields`` never seen before raises an alert (after ``learn_for`` of learning)."""

    type: Literal["new_term"]
    fields: list[EventField] = Field(min_length=1)
    learn_for: Duration = Field(default=timedelta(days=1), description="values seen this early are learned silently")


class FlatlineTrigger(_Trigger):
    """Fewer than ``threshold`` matching events within ``window`` (per ``group_by``) raise an alert."""

    type: Literal["flatline"]
    threshold: int = Field(ge=1)
    window: Duration
    group_by: list[EventField] = Field(default_factory=list)


class SequenceStep(_Strict):
    match: list[EventMatcherText] = Field(min_length=1)
    count: int = Field(default=1, ge=1, description="events needed to complete this step")


class SequenceTrigger(_Strict):
    """The steps in order (A then B …), all within ``window`` of the first, sharing the ``by`` values."""

    type: Literal["sequence"]
    steps: list[SequenceStep] = Field(min_length=2)
    window: Duration
    by: list[EventField] = Field(default_factory=list, description="fields the steps must share, e.g. [service]")


Trigger = Annotated[
    PatternTrigger | FrequencyTrigger | NewTermTrigger | FlatlineTrigger | SequenceTrigger,
    Field(discriminator="type"),
]


class EventRule(_TimeScoped):
    """A rule over the event stream that raises alerts on its own, without any anomaly."""

    name: Name
    description: str = ""
    trigger: Trigger
    title: str = Field(default="", description="alert title; {field} placeholders take event fields")
    severity: Severity = Severity.warning
    team: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


# ----------------------------------------------------------------------------- silences, inhibition


class SilenceSpec(_Strict):
    matchers: list[MatcherText] = Field(min_length=1)
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    created_by: str = Field(min_length=1)
    comment: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> SilenceSpec:
        if self.ends_at <= self.starts_at:
            raise ValueError(f"ends_at {self.ends_at.isoformat()} is not after starts_at {self.starts_at.isoformat()}")
        return self


class InhibitRule(_Strict):
    """While a source alert fires, target alerts with the same ``equal`` labels are inhibited."""

    name: Name | None = None
    source_matchers: list[MatcherText] = Field(default_factory=list)
    source_rules: list[str] = Field(default_factory=list, description="shorthand: alertname is one of these rules")
    target_matchers: list[MatcherText] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)
    source_ttl: Duration = Field(default=timedelta(hours=1), description="a source without ends_at fires this long")

    @model_validator(mode="after")
    def _has_source(self) -> InhibitRule:
        if not self.source_matchers and not self.source_rules:
            raise ValueError("give source_matchers or source_rules")
        return self


# ----------------------------------------------------------------------------- the file


class RuleFile(_Strict):
    """One rule file. Every section is optional."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True,
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "opsradar rule file"},
    )

    receivers: list[Receiver] = Field(default_factory=list)
    time_intervals: list[TimeInterval] = Field(default_factory=list)
    route: Route | None = None
    filters: list[FilterRule] = Field(default_factory=list)
    event_rules: list[EventRule] = Field(default_factory=list)
    silences: list[SilenceSpec] = Field(default_factory=list)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)


def json_schema() -> str:
    """The JSON Schema of a rule file, as committed in ``rules/schema.json``."""
    return json.dumps(RuleFile.model_json_schema(by_alias=True), indent=2, sort_keys=True) + "\n"
