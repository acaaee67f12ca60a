"""Root-cause reports outlive the events they are built from (store.event_retention)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from opsradar.alerting.rootcause import ReportSettings, build_report, report_for
from opsradar.cli import app
from opsradar.config import parse_config
from opsradar.models import Event
from opsradar.serving import pipeline as pipeline_mod
from opsradar.serving.pipeline import Pipeline
from opsradar.store import Store
from tests.alerting.rootcause_world import GRAPH, GRAPH_DOC, INCIDENT_ID, ONSET, populate

WORLD_INCIDENTS = ["inc-old", "inc-crm", INCIDENT_ID]  # oldest first


def _pipeline(store: Store) -> Pipeline:
    cfg = parse_config(yaml.safe_dump({"slack": {"enabled": False}, "store": {"event_retention": "30d"},
                                       "entities": GRAPH_DOC}))
    return Pipeline(cfg, store)


def _advance_to(p: Pipeline, store: Store, days: float) -> None:
    """A build ``days`` after the onset: event time (the watermark) moves there."""
    late = Event.new(source="jenkins", native_id=f"later{days}", kind="build", entity="job:shop-build",
                     ts=ONSET + timedelta(days=days), labels={"result": "SUCCESS"}, values={"duration_s": 300})
    store.add_events([late])
    p.handle([late], [])


def test_reports_are_saved_before_their_events_are_deleted_and_served_as_saved(store: Store, tmp_path: Path) -> None:
    ids = populate(store)
    before = build_report(INCIDENT_ID, store, GRAPH)
    assert [c.event_id for c in before.candidates][:2] == [ids["deploy"], ids["commit"]]
    p = _pipeline(store)
    _advance_to(p, store, 35)  # the retention's cutoff is now 5 days after the onset

    deleted = p.prune(force=True)

    assert deleted > 0
    assert store.count_events() == 1, "only the build 35 days later is left"
    assert p.stats.reports_saved == 3
    for incident_id in WORLD_INCIDENTS:
        assert store.has_saved_report(incident_id)
    rebuilt = build_report(INCIDENT_ID, store, GRAPH)
    assert rebuilt.candidates == [], "what a report built now would show: its changes are gone"
    served = report_for(INCIDENT_ID, store, GRAPH)
    assert served.saved
    assert [c.event_id for c in served.candidates] == [c.event_id for c in before.candidates]
    assert served.top_features == before.top_features
    assert "before the store deleted the events it was built from" in served.to_markdown()
    assert 'id="saved"' in served.to_html()
    # the incident's status now, not when the report was saved
    doc = store.get_incident(INCIDENT_ID)
    assert doc is not None
    store.save_incident({**doc, "status": "resolved"})
    assert report_for(INCIDENT_ID, store, GRAPH).status == "resolved"
    # a saved incident is not ranked again from what is left (it would lose its candidates)
    root_cause = store.get_incident(INCIDENT_ID)["root_cause"]  # type: ignore[index]
    p._rank_later(INCIDENT_ID, ONSET + timedelta(days=35))
    assert store.get_incident(INCIDENT_ID)["root_cause"] == root_cause  # type: ignore[index]
    # nothing is saved twice
    _advance_to(p, store, 36)
    p.prune(force=True)
    assert p.stats.reports_saved == 3
    # opsradar report reads the saved copy too
    cfg = tmp_path / "opsradar.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": store.url}, "entities": GRAPH_DOC}))
    res = CliRunner().invoke(app, ["report", INCIDENT_ID, "--format", "json", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["saved"] is True
    assert doc["candidates"][0]["event_id"] == ids["deploy"]


def test_only_the_reports_that_read_past_the_cutoff_are_saved(store: Store) -> None:
    populate(store)
    p = _pipeline(store)
    # cutoff: 10 days before the onset. A report reads events from 8 days and an hour before its
    # incident: inc-old (7 days before the onset) and inc-crm (3 days) read past the cutoff, the
    # latest incident does not
    _advance_to(p, store, 20)
    assert p.prune(force=True) == 0, "no event is that old"
    assert [i for i in WORLD_INCIDENTS if store.has_saved_report(i)] == ["inc-old", "inc-crm"]
    assert [d["id"] for d in store.incidents_without_report(first_seen_before=ONSET + timedelta(days=1))] == [INCIDENT_ID]
    assert report_for(INCIDENT_ID, store, GRAPH).saved is False
    assert report_for("inc-old", store, GRAPH).saved is True


def test_events_of_reports_not_saved_yet_are_kept_until_a_later_round(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    populate(store)
    monkeypatch.setattr(pipeline_mod, "SAVE_REPORTS_PER_PRUNE", 1)
    p = _pipeline(store)
    _advance_to(p, store, 35)
    events = store.count_events()
    reach = ReportSettings().reach

    assert p.prune(force=True) == 0, "the events of the two incidents not saved yet are kept"
    assert [i for i in WORLD_INCIDENTS if store.has_saved_report(i)] == ["inc-old"]
    assert p.prune(force=True) == 0
    assert [i for i in WORLD_INCIDENTS if store.has_saved_report(i)] == ["inc-old", "inc-crm"]
    assert store.count_events() == events
    assert min(e.ts for e in store.iter_events()) > ONSET - reach
    assert p.prune(force=True) == events - 1
    assert all(store.has_saved_report(i) for i in WORLD_INCIDENTS)
    assert report_for(INCIDENT_ID, store, GRAPH).candidates


def test_a_report_that_cannot_be_built_does_not_stop_the_retention(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    populate(store)
    p = _pipeline(store)
    _advance_to(p, store, 35)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("opsradar.alerting.rootcause.save_report", broken)
    assert p.prune(force=True) > 0
    assert p.stats.reports_saved == 0
    assert "could not save the root-cause report of incident inc-old" in caplog.text


def test_a_ranking_that_ran_while_the_report_was_saved_is_dropped(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import opsradar.alerting.rootcause as rootcause

    populate(store)
    doc = store.get_incident(INCIDENT_ID)
    assert doc is not None
    store.save_incident({**doc, "root_cause": []})
    p = _pipeline(store)
    real = rootcause.build_report

    def saved_meanwhile(*args: object, **kwargs: object) -> object:
        report = real(*args, **kwargs)  # type: ignore[arg-type]
        store.save_report(INCIDENT_ID, report.model_dump(mode="json"))  # the retention's round, in between
        return report

    monkeypatch.setattr(rootcause, "build_report", saved_meanwhile)
    p._rank_later(INCIDENT_ID, ONSET + timedelta(days=1))
    assert store.get_incident(INCIDENT_ID)["root_cause"] == []  # type: ignore[index]
    monkeypatch.setattr(rootcause, "build_report", real)
    store.save_incident({**doc, "id": "inc-other", "root_cause": []})
    p._rank_later("inc-other", ONSET + timedelta(days=1))
    assert store.get_incident("inc-other")["root_cause"], "without a saved report, the ranking is kept"  # type: ignore[index]
