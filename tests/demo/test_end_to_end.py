"""End to end: the simulated world through the real collectors, detectors, rules, correlation, the
Slack notifier and root-cause ranking (the in-process host; the Ray host has its own test)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from opsradar.cli import app
from opsradar.demo.runner import DemoResult, DemoRunner
from opsradar.demo.world import World
from opsradar.models import Event

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoRunner, DemoResult]]:
    runner = DemoRunner("compact", step=timedelta(hours=1), mode="local",
                        workdir=tmp_path_factory.mktemp("world"))
    result = runner.run()
    yield runner, result
    runner.store.close()


def test_every_source_was_collected(run: tuple[DemoRunner, DemoResult]) -> None:
    runner, _ = run
    store = runner.store
    for source, kind in [("jira", "issue"), ("git", "commit"), ("jenkins", "build"), ("jenkins", "deploy"),
                         ("jenkins", "test_run"), ("app-logs", "log"), ("access-logs", "access"), ("audit-logs", "audit")]:
        assert store.count_events(source=source, kind=kind) > 0, (source, kind)
    health = store.source_health()
    assert set(health) == {"jira", "git", "jenkins", "app-logs", "access-logs", "audit-logs"}


def test_the_bad_deploy_reaches_slack_with_its_root_cause(run: tuple[DemoRunner, DemoResult]) -> None:
    runner, result = run
    truth = next(i for i in runner.world.ground_truth.incidents if i.id == "bad-deploy")
    matching = [inc for inc in result.incidents
                if set(inc["services"]) & set(truth.services)
                and truth.start - timedelta(minutes=15) <= _ts(inc["first_seen"]) <= truth.end + timedelta(hours=2)]
    assert matching, f"no incident for {truth.title}; got {[i['title'] for i in result.incidents]}"
    inc = max(matching, key=lambda i: i["alert_count"])
    events = runner.events_for([inc])
    top: Event = events[inc["root_cause"][0]["event_id"]]
    assert truth.candidate_is_root_cause(inc["root_cause"][0], events), top
    # what an SRE sees: one parent message for the incident, with its title and the top candidate
    assert inc["slack_ts"] is not None
    parent = next(m for msgs in result.channels.values() for m in msgs if m["ts"] == inc["slack_ts"])
    assert inc["title"] in parent["text"]
    assert "/v1/incidents/" in json.dumps(parent["blocks"])


def test_each_incident_has_one_parent_message_per_channel(run: tuple[DemoRunner, DemoResult]) -> None:
    runner, result = run
    posted = [e for e in result.slack if e.what == "posted"]
    keys = [(e.channel, e.ts) for e in posted]
    assert len(keys) == len(set(keys))
    rows = runner.store.outbox_rows()
    assert rows
    assert not [r for r in rows if r["status"] == "dead"], [r["last_error"] for r in rows if r["status"] == "dead"]


def test_reports_render_for_every_incident(run: tuple[DemoRunner, DemoResult]) -> None:
    from opsradar.alerting.rootcause import build_report

    runner, result = run
    assert result.incidents
    for inc in result.incidents:
        report = build_report(inc["id"], runner.store, runner.cfg.entities)
        assert "<svg" in report.to_html()
        assert inc["id"] in report.to_markdown()
        assert json.loads(report.to_json())["incident_id"] == inc["id"]


def test_anomalies_explain_themselves(run: tuple[DemoRunner, DemoResult]) -> None:
    runner, _ = run
    docs = list(runner.store.iter_anomalies())
    assert docs
    for doc in docs:
        assert doc["explanation"], doc["stream"]
        first = doc["explanation"][0]
        assert first["low"] <= first["expected"] <= first["high"]


def test_collect_json_against_the_world(tmp_path: Path) -> None:
    world = World("default", days=1.0, workdir=tmp_path / "w")
    with world:
        world.run_to_end()
        cfg = world.config(store_url=f"sqlite:///{tmp_path}/collect.db")
        path = tmp_path / "opsradar.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
        result = CliRunner().invoke(app, ["collect", "--config", str(path), "--json", "--no-detect"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    sources = summary["sources"]
    assert set(sources) == {"jira", "git", "jenkins", "app-logs", "access-logs", "audit-logs"}
    assert all(s["ok"] and s["new"] > 0 for s in sources.values()), sources
    assert sources["jenkins"]["by_kind"]["build"] > 0
    assert sources["git"]["by_kind"]["commit"] > 0


def _ts(value: str) -> object:
    from datetime import datetime

    return datetime.fromisoformat(value)


def test_demo_json_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parents[2])
    result = CliRunner().invoke(app, ["demo", "--json", "--local", "--days", "2", "--step", "60"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["incidents"], summary
    for inc in summary["incidents"]:
        assert set(inc) >= {"title", "severity", "sources", "alerts", "root_cause", "report_url"}
        assert inc["alerts"] >= 1
    assert summary["world"]["incidents"] >= 1
