"""The world played into the running fakes and real git repositories, read by the real collectors."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from opsradar.collectors.registry import build_collectors
from opsradar.demo.world import ENV, World
from opsradar.models import Event


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    rules = Path(__file__).parents[2] / "rules"
    w = World("default", days=2.0, scale=0.5, rules_paths=[rules])  # Thursday and Friday: the bad deploy and the late large commit
    with w:
        yield w


def _git(w: World, repo: str, *args: str) -> str:
    assert w.repos is not None
    return subprocess.run(["git", "-C", str(w.repos.path(repo)), *args], capture_output=True, text=True,
                          check=True).stdout


def test_time_moves_forward_and_loads_only_the_past(world: World) -> None:
    inc = world.ground_truth.incident("bad-deploy")
    deploy = next(r for r in inc.root_cause if r.kind == "deploy")
    commit = next(r for r in inc.root_cause if r.kind == "commit")
    assert world.jenkins is not None
    assert world.elasticsearch is not None
    world.advance(inc.start - timedelta(hours=1))
    with pytest.raises(KeyError):
        world.jenkins.get_build(deploy.job or "", deploy.number or 0)
    assert commit.sha not in _git(world, "checkout-svc", "log", "--all", "--format=%H")
    assert set(world.elasticsearch.indices()) >= {"logs-app", "logs-access", "logs-audit"}
    docs_before = world.elasticsearch.count("logs-*")
    assert docs_before == world.loaded["docs"] > 0
    with pytest.raises(ValueError, match="only moves forward"):
        world.advance(inc.start - timedelta(hours=2))

    world.advance(inc.start + timedelta(minutes=30))
    build = world.jenkins.get_build(deploy.job or "", deploy.number or 0)
    assert build["result"] == "SUCCESS"
    assert build["changeSet"]["items"][0]["commitId"] == commit.sha
    assert commit.sha in _git(world, "checkout-svc", "log", "--all", "--format=%H")
    assert world.elasticsearch.count("logs-*") > docs_before
    assert world.clock() == inc.start + timedelta(minutes=30)
    for c in _git(world, "checkout-svc", "log", "--all", "--format=%ct").split():
        assert int(c) <= world.clock().timestamp()


def test_the_collectors_read_the_world_and_find_the_root_causes(world: World) -> None:
    world.run_to_end()
    assert world.loaded["builds"] == len(world.timeline.builds)
    assert world.loaded["docs"] == len(world.timeline.docs)
    cfg = world.config()
    assert os.environ[ENV["jira"]] == world.secrets["jira"]
    events: list[Event] = []
    rejected = []
    for col in build_collectors(cfg):
        for batch in col.pull(None, until=world.clock()):
            events += batch.events
            rejected += batch.rejected
    assert rejected == []
    by_source: dict[str, int] = {}
    for e in events:
        by_source[e.source] = by_source.get(e.source, 0) + 1
    assert set(by_source) == set(cfg.sources)
    assert by_source["app-logs"] + by_source["access-logs"] + by_source["audit-logs"] == len(world.timeline.docs)
    bad = world.ground_truth.incident("bad-deploy")
    causes = [e for e in events if bad.is_root_cause(e)]
    assert {e.kind for e in causes} == {"deploy", "commit"}
    late = world.ground_truth.incident("late-large-commit")
    commit = next(e for e in events if late.is_root_cause(e))
    assert commit.values["files"] >= 50
    assert commit.labels["off_hours"] == "true"
    assert any(e.kind == "release" and e.labels.get("tag") == "v2.0.0" for e in events)
    # every entity the pipeline will see belongs to the graph (users and hosts aside)
    graph = cfg.entities
    for e in events:
        if e.entity_type in ("service", "repo", "job", "project"):
            assert graph.service_of(e.entity) is not None, e.entity


def test_config_points_at_the_fakes_with_credentials(world: World) -> None:
    cfg = world.config()
    assert world.slack is not None
    assert cfg.slack.base_url == world.slack.url + "/api/"
    token = os.environ[cfg.slack.token_env]
    r = httpx.post(cfg.slack.base_url + "auth.test", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["ok"] is True
    assert cfg.entities.service_of("repo:secrets-config") == "auth"
    # the channels the shipped routing rules post to exist in the Slack fake
    names = {c["name"] for c in httpx.post(cfg.slack.base_url + "conversations.list",
                                           headers={"Authorization": f"Bearer {token}"}).json()["channels"]}
    assert {"opsradar", "sre-alerts", "security-alerts"} <= names
    assert cfg.entities.distance("service:gateway", "service:auth") == 1


def test_running_builds_show_as_building_until_they_finish() -> None:
    from opsradar.collectors.jenkins import JenkinsCollector

    with World("default", days=1.0, scale=0.3, incidents=False, running_builds=True) as w:
        assert w.jenkins is not None
        b = next(b for b in w.timeline.builds if b.start > w.start_time + timedelta(hours=9))
        w.advance(b.start + (b.end - b.start) / 2)
        assert w.jenkins.get_build(b.job, b.number)["building"] is True
        col = JenkinsCollector("jenkins", w.config().sources["jenkins"])  # type: ignore[arg-type]
        seen = {Event.record_id_of(e.id) for batch in col.pull(None, until=w.clock()) for e in batch.events}
        build_id = Event.record_id("jenkins", f"{b.job}#{b.number}")
        assert build_id not in seen
        w.advance(b.end)
        doc = w.jenkins.get_build(b.job, b.number)
        assert doc["building"] is False
        assert doc["result"] == b.result
        assert build_id in {Event.record_id_of(e.id) for batch in col.pull(None, until=w.clock()) for e in batch.events}


def test_the_held_out_seed_has_its_own_root_causes_found_by_the_collectors() -> None:
    with World("default", seed=2, days=2.0, scale=0.3) as w:
        w.run_to_end()
        cfg = w.config()
        events = [e for col in build_collectors(cfg) if col.name in ("git", "jenkins")
                  for batch in col.pull(None, until=w.clock()) for e in batch.events]
        for inc in w.ground_truth.incidents:
            assert inc.root_cause
            kinds = {e.kind for e in events if inc.is_root_cause(e)}
            assert {r.kind for r in inc.root_cause} <= kinds, inc.id
        seed1 = World("default", seed=1, days=2.0).ground_truth
        assert {r.sha for i in seed1.incidents for r in i.root_cause if r.sha}.isdisjoint(
            {r.sha for i in w.ground_truth.incidents for r in i.root_cause if r.sha})
