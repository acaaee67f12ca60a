"""The root-cause report built from a store: candidates, evidence, and the three renderings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from opsradar.alerting.rootcause import FACTORS, IncidentNotFound, RootCauseReport, build_report
from opsradar.cli import app
from opsradar.models import Incident
from opsradar.store import Store
from tests.alerting.rootcause_world import GRAPH, GRAPH_DOC, HOSTILE_TITLE, INCIDENT_ID, ONSET, populate


@pytest.fixture
def world(store: Store) -> tuple[Store, dict[str, str]]:
    return store, populate(store)


def test_the_deploy_of_the_affected_service_ranks_first_and_the_decoy_is_left_out(world: tuple[Store, dict[str, str]]) -> None:
    store, ids = world
    report = build_report(INCIDENT_ID, store, GRAPH)
    assert report.onset == ONSET
    ranked = [c.event_id for c in report.candidates]
    assert ranked[:3] == [ids["deploy"], ids["commit"], ids["build"]]
    assert ids["decoy"] not in ranked
    assert ids["decoy_commit"] not in ranked
    assert report.excluded_unrelated == 2
    top = report.top
    assert top is not None
    assert top.rank == 1
    assert top.summary == "deploy job:shop-deploy #17 (SUCCESS)"
    assert tuple(top.factors) == FACTORS
    assert top.score == pytest.approx(top.factor_product(), abs=1e-6)
    assert top.factors["logs"] == 1.0  # the timeout template appeared after it
    commit = report.candidates[1]
    assert commit.related_event_ids == [ids["deploy"]]
    assert commit.effective_ts is not None
    assert commit.effective_ts < ONSET


def test_the_report_gathers_features_templates_timeline_and_similar_incidents(world: tuple[Store, dict[str, str]]) -> None:
    store, _ids = world
    report = build_report(INCIDENT_ID, store, GRAPH)
    f = report.top_features[0]
    assert (f.feature, f.expected, f.low, f.high) == ("latency_ms", 122.0, 110.0, 140.0)
    assert [(t.template_id, t.status, t.count) for t in report.log_templates] == [("t-timeout", "new", 10)]
    types = [t.type for t in report.timeline]
    assert {"onset", "alert", "change", "incident"} <= set(types)
    assert [t.ts for t in report.timeline] == sorted(t.ts for t in report.timeline)
    ranked_changes = {t.candidate_rank for t in report.timeline if t.type == "change"}
    assert {1, 2, 3} <= ranked_changes
    assert [s.id for s in report.similar_incidents] == ["inc-old"]
    old = report.similar_incidents[0]
    assert "rolled back shop-deploy #12" in old.resolution
    assert old.root_cause == "deploy job:shop-deploy #12"
    assert old.feedback == ["true_positive: real outage, rollback fixed it (bo)"]
    (series,) = report.series
    assert series.stream == "elasticsearch|access|service:shop"
    assert series.feature == "latency_ms"
    assert sum(p.anomalous for p in series.points) == 3
    assert max(p.value for p in series.points) >= 900


def test_json_is_structured_and_round_trips(world: tuple[Store, dict[str, str]]) -> None:
    store, _ = world
    report = build_report(INCIDENT_ID, store, GRAPH)
    doc = json.loads(report.to_json())
    assert doc["candidates"][0]["factors"].keys() == set(FACTORS)
    assert doc["scoring"]["time_scale"] == 1800.0
    assert RootCauseReport.model_validate(doc) == report
    assert report.model_dump()["incident_id"] == INCIDENT_ID
    (entry,) = report.root_cause_entries(limit=1)
    assert entry["summary"] == "deploy job:shop-deploy #17 (SUCCESS)"
    assert entry["score"] == report.candidates[0].score
    assert isinstance(entry["ts"], str)


def test_markdown_and_html_escape_user_text(world: tuple[Store, dict[str, str]]) -> None:
    store, _ = world
    report = build_report(INCIDENT_ID, store, GRAPH)
    md = report.to_markdown()
    assert "## What changed (ranked)" in md
    assert "| 1 | 0.5" in md
    assert "<script>" not in md
    assert "&lt;script&gt;" in md
    page = report.to_html()
    assert HOSTILE_TITLE not in page
    assert "<script" not in page.lower()  # the hostile title is escaped, and the page has no script of its own
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;pay&gt; timeout" in page  # a log template
    assert 'href="http://jenkins.local/job/shop-deploy/17/"' in page
    assert "javascript:" not in page  # a hostile link is dropped (the decoy is not shown anyway)


def test_the_html_page_is_self_contained_with_an_inline_chart(world: tuple[Store, dict[str, str]]) -> None:
    store, _ = world
    page = build_report(INCIDENT_ID, store, GRAPH).to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 1
    assert 'id="rc-chart"' in page
    assert "<polyline" in page
    assert 'class="anomaly"' in page
    assert 'class="change" data-rank="1"' in page
    for factor in FACTORS:  # every candidate's score is shown broken down by factor
        assert f"<th>{factor}</th>" in page
    # no external asset: the only URLs are the SVG namespace and the candidates' own links
    urls = set(re.findall(r'(?:src|href)="([^"]+)"', page)) | set(re.findall(r"url\(([^)]+)\)", page))
    assert urls == {"http://jenkins.local/job/shop-deploy/17/"}
    assert "<link" not in page
    assert "<img" not in page
    assert "@import" not in page


def test_an_unknown_incident_is_a_clear_error(store: Store) -> None:
    with pytest.raises(IncidentNotFound, match="no incident with id 'nope'"):
        build_report("nope", store, GRAPH)


def test_an_incident_with_nothing_around_it_still_has_a_report(store: Store) -> None:
    inc = Incident(id="lonely", title="nothing here", services=["ghost"], first_seen=ONSET, last_seen=ONSET)
    report = build_report(inc, store, GRAPH)
    assert report.candidates == []
    assert report.series == []
    assert report.onset == ONSET
    assert "No change on a related entity" in report.to_markdown()
    assert "no anomalous series recorded" in report.to_html()


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    db = tmp_path / "state.db"
    store = Store(f"sqlite:///{db}")
    populate(store)
    store.close()
    cfg = tmp_path / "opsradar.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{db}"}, "entities": GRAPH_DOC}))
    return cfg


def test_cli_report_in_every_format(cli_config: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["report", INCIDENT_ID, "--format", "json", "--config", str(cli_config)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["candidates"][0]["summary"] == "deploy job:shop-deploy #17 (SUCCESS)"
    res = runner.invoke(app, ["report", INCIDENT_ID, "--config", str(cli_config)])
    assert res.exit_code == 0
    assert res.stdout.startswith("# Root cause report:")
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", INCIDENT_ID, "-f", "html", "-o", str(out), "--config", str(cli_config)])
    assert res.exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_cli_report_errors(cli_config: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["report", "missing", "--config", str(cli_config)])
    assert res.exit_code == 1
    assert "no incident with id 'missing'" in res.output
    res = runner.invoke(app, ["report", INCIDENT_ID, "--format", "pdf", "--config", str(cli_config)])
    assert res.exit_code == 2
    assert "--format must be one of md, json, html, got 'pdf'" in res.output
