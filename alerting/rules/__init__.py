"""YAML rules: filters, routing, silences, inhibition and event rules, compiled into a RuleEngine.

The public facade; the modules behind it are ``model`` (the file format and its JSON Schema),
``loader`` (strict loading, every error with file, line and path), ``engine`` (``RuleEngine`` and
``Decision``), ``silences``, ``reload`` (hot reload), ``testing`` (rule unit tests) and
``backtest``.
"""

from __future__ import annotations

from opsradar.alerting.rules.engine import Decision, RouteDecision, RuleEngine
from opsradar.alerting.rules.loader import RuleSet, load_rules, load_texts
from opsradar.alerting.rules.matchers import Matcher, parse_matcher
from opsradar.alerting.rules.metrics import RuleStats
from opsradar.alerting.rules.model import RuleFile, json_schema
from opsradar.alerting.rules.reload import ReloadResult, RuleManager
from opsradar.alerting.rules.silences import Silence, SilenceStore

__all__ = [
    "Decision",
    "Matcher",
    "ReloadResult",
    "RouteDecision",
    "RuleEngine",
    "RuleFile",
    "RuleManager",
    "RuleSet",
    "RuleStats",
    "Silence",
    "SilenceStore",
    "json_schema",
    "load_rules",
    "load_texts",
    "parse_matcher",
]
