"""Drive the simulated enterprise through the real collectors and pipeline.

:class:`DemoRunner` starts a :class:`~opsradar.demo.world.World`, then steps simulated time: at each
step the world loads what has happened into the fakes and git repositories, the collectors pull it
(incrementally, from their cursors), the new events of all sources go through the pipeline in
event-time order, and the outbox is delivered to the Slack fake. Every Slack message posted or
updated is reported as it happens (``on_message``), stamped with the simulated time of the step that
produced it: that is the time the benchmark's time-to-detect uses.

Two hosts run the same pipeline:

- ``mode="ray"`` (what ``opsradar demo`` uses): the Ray Serve application of
  :mod:`opsradar.serving.app`, with its HTTP API up on ``api.port``; the runner triggers the
  collectors deployment once per step instead of waiting for its schedule.
- ``mode="local"``: the :class:`~opsradar.serving.pipeline.Pipeline` in this process (the end-to-end
  tests and the scenario benchmark, to keep them fast).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from opsradar.alerting.notifiers.render import root_cause_line
from opsradar.collectors.registry import build_collectors
from opsradar.config import ApiConfig, ApiToken, Config
from opsradar.demo.world import World
from opsradar.models import Event, Incident
from opsradar.store import Store

__all__ = ["DEMO_TOKEN_ENV", "DemoResult", "DemoRunner", "SlackEvent"]

log = logging.getLogger(__name__)

#: The variable holding the demo API's reader/admin token (set by the runner, printed by the demo).
DEMO_TOKEN_ENV = "OPSRADAR_DEMO_API_TOKEN"  # noqa: S105 - a variable name
ROOT_RULES = Path(__file__).resolve().parents[2] / "rules"


@dataclass
class SlackEvent:
    """A Slack message as a user saw it appear or change, at a simulated time."""

    sim_time: datetime
    channel: str
    what: str  # posted | updated | reply
    text: str
    ts: str
    thread_ts: str | None = None


@dataclass
class DemoResult:
    world: dict[str, Any]
    incidents: list[dict[str, Any]]
    slack: list[SlackEvent]
    anomalies: int
    alerts: int
    api_url: str | None
    token: str
    notified_at: dict[str, datetime] = field(default_factory=dict)
    #: every channel's messages as a Slack user sees them at the end (name → messages)
    channels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events_by_id: dict[str, Event] = field(default_factory=dict)

    def incident_rows(self) -> list[dict[str, Any]]:
        """The summary: title, severity, sources, alert count, top root cause, report URL."""
        rows = []
        for inc in self.incidents:
            rows.append({
                "id": inc["id"], "title": inc["title"], "severity": inc["severity"], "status": inc["status"],
                "services": inc["services"], "sources": inc["sources"], "alerts": inc["alert_count"],
                "root_cause": root_cause_line(inc.get("root_cause") or []),
                "report_url": f"{self.api_url}/v1/incidents/{inc['id']}/report?format=html" if self.api_url else None,
            })
        return rows


def _find_rules() -> list[str]:
    for candidate in (Path("rules"), ROOT_RULES):
        if candidate.is_dir():
            return [str(candidate.resolve())]
    raise FileNotFoundError("no rules/ folder found (run from the opsradar checkout)")


class DemoRunner:
    """Runs a world end to end (see the module docstring)."""

    def __init__(self, scenario: str = "default", *, seed: int | None = None, days: float | None = None,
                 step: timedelta = timedelta(hours=1), mode: str = "ray", port: int = 8000,
                 workdir: str | os.PathLike[str] | None = None, rules: list[str] | None = None,
                 on_message: Callable[[SlackEvent], None] | None = None,
                 on_step: Callable[[datetime, datetime, datetime], None] | None = None) -> None:
        if mode not in ("ray", "local"):
            raise ValueError(f"mode must be 'ray' or 'local', got {mode!r}")
        self.world = World(scenario, seed=seed, days=days, workdir=workdir)
        self.step, self.mode, self.port = step, mode, port
        self.rules = rules or _find_rules()
        self.on_message = on_message
        self.on_step = on_step
        self.token = os.environ.get(DEMO_TOKEN_ENV) or secrets.token_urlsafe(16)
        self._seen: dict[tuple[str, str], tuple[int, int]] = {}
        self.slack_log: list[SlackEvent] = []
        self.notified_at: dict[str, datetime] = {}
        self._pipeline: Any = None
        self._app_started = False

    # ------------------------------------------------------------------ setup

    def _config(self) -> Config:
        cfg = self.world.config()
        os.environ[DEMO_TOKEN_ENV] = self.token
        return cfg.model_copy(update={
            "api": ApiConfig(host="127.0.0.1", port=self.port, tokens=[ApiToken(name="demo", role="admin", env=DEMO_TOKEN_ENV)]),
            "rules": cfg.rules.model_copy(update={"paths": self.rules, "watch": False}),
            # the demo plays days in minutes: group models refit at most every 10 s, not 30 min
            "detectors": cfg.detectors.model_copy(update={"refit_interval": timedelta(seconds=10)}),
            # group_wait and repeat_interval are wall-clock time: 30 s held here would be hours of demo
            # time, so post at once, and send no reminders
            "slack": cfg.slack.model_copy(update={"apply_group_wait": False, "apply_repeat_interval": False}),
        })

    def _create_channels(self, cfg: Config) -> None:
        """The demo workspace has every channel the rules route to, and the default one."""
        from opsradar.alerting.rules.loader import load_rules

        assert self.world.slack is not None
        channels = {cfg.slack.default_channel}
        for receiver in load_rules(self.rules).receivers:
            if receiver.slack is not None:
                channels.add(receiver.slack.channel)
        for name in sorted(channels):
            self.world.slack.add_channel(name)

    def _write_config(self, cfg: Config) -> Path:
        assert self.world.workdir is not None
        path = self.world.workdir / "opsradar.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False))
        return path

    # ------------------------------------------------------------------ the run

    def run(self, *, keep_running: bool = False) -> DemoResult:
        self.world.start()
        try:
            cfg = self._config()
            self.cfg = cfg
            self._create_channels(cfg)
            self.store = Store(cfg.store.url)
            if self.mode == "ray":
                self._start_ray(cfg)
            else:
                self._start_local(cfg)
            start = self.world.start_time
            t = start
            while t < self.world.end_time:
                t = min(t + self.step, self.world.end_time)
                self.world.advance(t)
                self._collect_and_process()
                self._deliver()
                self._observe_slack(t)
                if self.on_step is not None:
                    self.on_step(t, start, self.world.end_time)
            self._finish()
            self._observe_slack(self.world.end_time)
            return self._result()
        finally:
            if not keep_running:
                self.stop()

    def stop(self) -> None:
        if self._app_started:
            from opsradar.serving.run import shutdown

            shutdown(drain_timeout=5)
            self._app_started = False
        self.world.stop()

    # -- local host --
    def _start_local(self, cfg: Config) -> None:
        from opsradar.collectors.scheduler import Scheduler
        from opsradar.serving.pipeline import Pipeline
        from opsradar.serving.runtime import slack_worker

        self._pending: list[Event] = []
        self._scheduler = Scheduler(self.store, on_events=lambda _name, evs: self._pending.extend(evs))
        for c in build_collectors(cfg):
            self._scheduler.add(c, interval=cfg.sources[c.name].interval)
        worker = slack_worker(cfg, self.store, pace=0.0, sleep=lambda _s: None)
        self._pipeline = Pipeline(cfg, self.store, rules_paths=self.rules, worker=worker)

    # -- ray host --
    def _start_ray(self, cfg: Config) -> None:
        from ray import serve

        from opsradar.serving.app import build_app
        from opsradar.serving.run import APP_NAME, start

        path = self._write_config(cfg)
        start(cfg, config_path=str(path), collect=False, notify=True, app=build_app)
        self._app_started = True
        self._collect_handle = serve.get_deployment_handle("Collectors", app_name=APP_NAME)
        self._owner_handle = serve.get_deployment_handle("Owner", app_name=APP_NAME)

    def _collect_and_process(self) -> None:
        if self.mode == "ray":
            self._collect_handle.collect_now.remote().result(timeout_s=600)
            return
        self._scheduler.run_due(force=True)
        new, self._pending = self._pending, []
        if new:
            self._pipeline.process(new)

    def _deliver(self) -> None:
        if self.mode == "ray":
            while self._owner_handle.drain.remote().result(timeout_s=600):
                pass
        else:
            self._pipeline.drain_outbox()

    def _finish(self) -> None:
        if self.mode == "local":
            self._pipeline.checkpoint()

    # ------------------------------------------------------------------ what Slack users saw

    def _observe_slack(self, sim_time: datetime) -> None:
        slack = self.world.slack
        assert slack is not None
        for channel, messages in slack.all_messages().items():
            for m in messages:
                key = (channel, m["ts"])
                edits, replies = len(m.get("edits") or []), len(m.get("replies") or [])
                before = self._seen.get(key)
                events = []
                if before is None:
                    events.append(SlackEvent(sim_time, channel, "posted", m.get("text", ""), m["ts"]))
                elif edits > before[0]:
                    events.append(SlackEvent(sim_time, channel, "updated", m.get("text", ""), m["ts"]))
                for r in (m.get("replies") or [])[before[1] if before else 0:]:
                    events.append(SlackEvent(sim_time, channel, "reply", r.get("text", ""), r["ts"], m["ts"]))
                self._seen[key] = (edits, replies)
                for ev in events:
                    self.slack_log.append(ev)
                    if self.on_message is not None:
                        self.on_message(ev)
        for row in self.store.outbox_rows(status="done"):
            ids = [row["incident_id"]] if row["incident_id"] else list((row["payload"] or {}).get("members") or [])
            if row["action"] in ("post", "digest", "digest_update"):
                for iid in ids:
                    self.notified_at.setdefault(iid, sim_time)

    def _result(self) -> DemoResult:
        incidents = sorted(self.store.list_incidents(limit=10_000), key=lambda d: d["first_seen"])
        api_url = f"http://127.0.0.1:{self.port}" if self.mode == "ray" else None
        for inc in incidents:
            if inc["id"] in self.notified_at:
                inc["notified_at"] = self.notified_at[inc["id"]]
        return DemoResult(world=self.world.summary(), incidents=incidents, slack=self.slack_log,
                          anomalies=self.store.count_anomalies(), alerts=len(self._alerts()),
                          api_url=api_url, token=self.token, notified_at=dict(self.notified_at),
                          channels=self.world.slack.all_messages() if self.world.slack else {})

    def _alerts(self) -> list[str]:
        from sqlalchemy import select

        from opsradar import schema as t

        with self.store.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(t.alerts.c.fingerprint))]

    def events_for(self, incidents: list[dict[str, Any]]) -> dict[str, Event]:
        """The stored events named by the incidents' root-cause candidates (for scoring)."""
        out: dict[str, Event] = {}
        for inc in incidents:
            for cand in inc.get("root_cause") or []:
                eid = cand.get("event_id")
                if eid and eid not in out:
                    e = self.store.get_event(eid)
                    if e is not None:
                        out[eid] = e
        return out


_ = Incident
