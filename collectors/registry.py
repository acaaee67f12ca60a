"""Builds collectors from the config: source type → collector class.

Each collector module registers itself with :func:`register`; :func:`build_collectors` makes one
collector per enabled source in the config.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from opsradar.collectors.base import Collector
from opsradar.config import Config

__all__ = ["build_collector", "build_collectors", "register"]

Factory = Callable[[str, Any], Collector]
_FACTORIES: dict[str, Factory] = {}
_MODULES = {
    "jira": "opsradar.collectors.jira",
    "jenkins": "opsradar.collectors.jenkins",
    "elasticsearch": "opsradar.collectors.elasticsearch",
    "git": "opsradar.collectors.git",
}


def register(source_type: str, factory: Factory) -> None:
    """Register ``factory(name, source_config) -> Collector`` for ``source_type``."""
    _FACTORIES[source_type] = factory


def build_collector(name: str, source: Any) -> Collector:
    if source.type not in _FACTORIES and source.type in _MODULES:
        importlib.import_module(_MODULES[source.type])
    try:
        factory = _FACTORIES[source.type]
    except KeyError:
        raise ValueError(f"no collector for source type {source.type!r}") from None
    return factory(name, source)


def build_collectors(cfg: Config, *, only: str | None = None) -> list[Collector]:
    """One collector per enabled source (or just ``only``)."""
    out = []
    for name, source in cfg.sources.items():
        if only is not None and name != only:
            continue
        if source.enabled:
            out.append(build_collector(name, source))
    return out
