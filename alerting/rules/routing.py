"""The routing tree: a config :class:`~opsradar.alerting.rules.model.Route` compiled into runtime nodes.

Alertmanager's semantics: a node matches when all its matchers match; its children are tried in
order, and the first child that matches ends the search unless it has ``continue: true``; when no
child matches, the node itself is the match. Children inherit every unset option from their parent.

>>> from opsradar.alerting.rules.model import Route
>>> root = compile_route(Route.model_validate({"receiver": "default", "group_by": ["service"], "routes": [
...     {"matchers": ['team="db"'], "receiver": "db", "continue": True},
...     {"matchers": ['severity="critical"'], "receiver": "pager"}]}))
>>> [n.receiver for n in root.match({"team": "db", "severity": "critical"})]
['db', 'pager']
>>> [n.receiver for n in root.match({"team": "web"})]
['default']
>>> root.match({"team": "db"})[0].group_key({"team": "db", "service": "shop"})
'route/0{service="shop"}'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from opsradar.alerting.rules.matchers import Matcher, parse_matcher
from opsradar.alerting.rules.model import Route

__all__ = ["DEFAULT_GROUP_INTERVAL", "DEFAULT_GROUP_WAIT", "DEFAULT_REPEAT_INTERVAL", "RouteNode", "compile_route"]

DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)


@dataclass
class RouteNode:
    """A runtime route with its inherited options resolved."""

    id: str
    matchers: list[Matcher]
    receiver: str | None
    group_by: tuple[str, ...]
    group_all: bool
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    continue_: bool = False
    children: list[RouteNode] = field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def match(self, labels: Mapping[str, str]) -> list[RouteNode]:
        """The nodes that take an alert with ``labels`` (empty when this node does not match)."""
        if not self.matches(labels):
            return []
        found: list[RouteNode] = []
        for child in self.children:
            got = child.match(labels)
            found += got
            if got and not child.continue_:
                break
        return found or [self]

    def group_key(self, labels: Mapping[str, str]) -> str:
        """The aggregation group of an alert on this route (``group_by: ['...']``: one per alert)."""
        names = sorted(labels) if self.group_all else sorted(self.group_by)
        inner = ",".join(f'{n}="{labels.get(n, "")}"' for n in names)
        return f"{self.id}{{{inner}}}"


def compile_route(route: Route | None, parent: RouteNode | None = None, rid: str = "route") -> RouteNode:
    """Compile ``route`` (None: a root that matches everything and routes nowhere)."""
    route = route or Route()
    group_by = route.group_by if route.group_by is not None else (
        list(parent.group_by) + (["..."] if parent.group_all else []) if parent else [])
    node = RouteNode(
        id=rid,
        matchers=[parse_matcher(m) for m in route.matchers],
        receiver=route.receiver or (parent.receiver if parent else None),
        group_by=tuple(g for g in group_by if g != "..."),
        group_all="..." in group_by,
        group_wait=route.group_wait or (parent.group_wait if parent else DEFAULT_GROUP_WAIT),
        group_interval=route.group_interval or (parent.group_interval if parent else DEFAULT_GROUP_INTERVAL),
        repeat_interval=route.repeat_interval or (parent.repeat_interval if parent else DEFAULT_REPEAT_INTERVAL),
        continue_=route.continue_,
    )
    node.children = [compile_route(c, node, f"{rid}/{i}") for i, c in enumerate(route.routes)]
    return node
