"""``opsradar rules backtest``: replay a store through candidate rules and the rules in force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from opsradar.alerting.rules import RuleManager, RuleStats, load_texts
from opsradar.alerting.rules.backtest import backtest
from opsradar.cli import app
from opsradar.models import Anomaly, Event
from opsradar.store import Store

T = datetime(2026, 3, 2, 10, tzinfo=UTC)

IN_FORCE = """
receivers: [{name: sre}, {name: ci}]
route:
  receiver: sre
  group_by: [service]
  routes:
    - {matchers: ['kind="build"'], receiver: ci}
filters:
  - {name: drop-nightly, action: drop, matchers: ['entity=~"job:nightly-.*"']}
event_rules:
  - name: build-failures
    trigger: {type: frequency, match: ['kind="build"', 'labels.result="FAILURE"'], count: 2, window: 1h}
"""

CANDIDATE = """
receivers: [{name: sre}, {name: ci}]
route:
  receiver: sre
  group_by: [alertname]
filters:
  - {name: drop-nightly, action: drop, matchers: ['entity=~"job:nightly-.*"']}
  - {name: drop-flaky, action: drop, matchers: ['entity="job:flaky"']}
event_rules:
  - name: build-failures
    trigger: {type: frequency, match: ['kind="build"', 'labels.result="FAILURE"'], count: 2, window: 1h}
  - name: any-deploy
    trigger: {type: pattern, match: ['kind="deploy"']}
"""


def anomaly(i: int, entity: str, kind: str = "build", service: str = "") -> dict[str, object]:
    a = Anomaly(id=f"an{i}", stream=f"jenkins|{kind}|{entity}", detector="hst", detector_version="1",
                ts=T + timedelta(minutes=i), source="jenkins", kind=kind, entity=entity, score=0.995, threshold=0.99,
                raw_score=1.0, labels={"service": service} if service else {})
    return a.model_dump(mode="json")


def fill(store: Store) -> None:
    events = [
        Event.new(source="jenkins", native_id="b1", kind="build", ts=T, entity="job:shop-build",
                  labels={"result": "FAILURE"}),
        Event.new(source="jenkins", native_id="b2", kind="build", ts=T + timedelta(minutes=5), entity="job:shop-build",
                  labels={"result": "FAILURE"}),
        Event.new(source="jenkins", native_id="d1", kind="deploy", ts=T + timedelta(minutes=6),
                  entity="job:shop-deploy"),
        Event.new(source="jenkins", native_id="d2", kind="deploy", ts=T + timedelta(minutes=7),
                  entity="job:pay-deploy"),
    ]
    store.add_events(events)
    for doc in (anomaly(1, "job:flaky"), anomaly(2, "job:flaky"), anomaly(3, "job:nightly-etl"),
                anomaly(4, "service:shop", "log", "shop"), anomaly(5, "service:pay", "log", "pay")):
        store.add_anomaly(doc)


def test_backtest_prints_a_rule_by_rule_diff(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    store = Store(url)
    fill(store)
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "r.yaml").write_text(IN_FORCE)
    RuleManager([tmp_path / "live"], store=store, stats=RuleStats(export=False))  # snapshots the rules in force
    store.close()
    (tmp_path / "cand").mkdir()
    (tmp_path / "cand" / "r.yaml").write_text(CANDIDATE)
    (tmp_path / "opsradar.yaml").write_text(f"store: {{url: '{url}'}}\n")
    result = CliRunner().invoke(app, ["rules", "backtest", str(tmp_path / "cand"), "--config",
                                      str(tmp_path / "opsradar.yaml"), "--since", "2026-03-02T00:00:00",
                                      "--until", "2026-03-03T00:00:00"])
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert out[0] == "backtest: 4 events, 5 anomalies replayed"
    assert out[1].startswith("  in force:  1 files, 2 rules, digest ")
    assert out[1].endswith("(snapshot in the store)")
    assert out[3] == "alerts: 6 in force, 8 candidate; notified: 5 -> 5"
    assert out[4:7] == [
        "changes per rule:",
        "  any-deploy  2 newly raised",
        "  drop-flaky  2 newly dropped",
    ]
    assert out[7:10] == [
        "routing changes:",
        "  ['ci'] -> ['sre']: 1 alerts",
        "severity changes: none",
    ]
    # in force: the log anomalies of shop and pay are grouped by service, in two incidents;
    # the candidate groups by alertname, so the correlator puts them in one
    assert out[10:12] == [
        "incidents (correlated): 3 in force, 3 candidate; 1 would merge, 0 would split",
        "  merged: 2 incidents in force become one: anomaly:an4, anomaly:an5",
    ]


def test_backtest_without_the_correlator_approximates_incidents_by_groups(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    fill(store)
    report = backtest(store, load_texts({"c.yaml": CANDIDATE}), in_force=load_texts({"l.yaml": IN_FORCE}),
                      in_force_label="live", candidate_label="cand", correlate=False)
    assert report.render().splitlines()[-2:] == [
        "incidents (approximated by groups): 3 in force, 3 candidate; 1 would merge, 0 would split",
        "  merged: 2 incidents in force become one: anomaly:an4, anomaly:an5",
    ]


def test_backtest_without_anything_in_force_compares_with_no_rules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    fill(Store(url))
    (tmp_path / "cand.yaml").write_text(CANDIDATE)
    (tmp_path / "opsradar.yaml").write_text(f"store: {{url: '{url}'}}\n")
    result = CliRunner().invoke(app, ["rules", "backtest", str(tmp_path / "cand.yaml"), "-c",
                                      str(tmp_path / "opsradar.yaml")])
    assert result.exit_code == 0, result.output
    assert "  in force:  no rules (nothing in force yet)" in result.output
    assert "  build-failures  1 newly raised" in result.output
    assert "  drop-nightly    1 newly dropped" in result.output
