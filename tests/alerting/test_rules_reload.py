"""Hot reload: a broken reload is rejected as a whole and the running rules stay in force."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsradar.alerting.rules import RuleManager, RuleStats
from opsradar.alerting.rules.reload import IN_FORCE_KEY, load_in_force
from opsradar.errors import RuleError
from opsradar.models import Alert
from opsradar.store import Store

T = datetime(2026, 3, 2, 10, tzinfo=UTC)
GOOD = "filters:\n  - {name: drop-noise, action: drop, matchers: ['alertname=\"noise\"']}\n"
GOOD2 = GOOD + "  - {name: drop-more, action: drop, matchers: ['alertname=\"more\"']}\n"
BROKEN = "filters:\n  - {name: drop-noise, action: drop, matchers: ['alertname=~\"(noise\"']}\n"


def noise(name: str = "noise") -> Alert:
    return Alert.from_labels(title="n", labels={"alertname": name}, starts_at=T)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Store, RuleManager]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(GOOD)
    store = Store(f"sqlite:///{tmp_path}/s.db")
    return rules, store, RuleManager([rules], store=store, stats=RuleStats(export=False))


def test_a_broken_reload_leaves_the_old_rules_running(setup: tuple[Path, Store, RuleManager]) -> None:
    rules, store, mgr = setup
    engine = mgr.engine
    (rules / "a.yaml").write_text(BROKEN)
    result = mgr.reload(actor="ana")
    assert not result.ok
    assert mgr.engine is engine
    assert mgr.engine.on_alert(noise()).dropped_by == "drop-noise"
    assert isinstance(mgr.last_error, RuleError)
    assert str(mgr.last_error.problems[0]).startswith(f"{rules / 'a.yaml'}:2: filters[0].matchers[0]: invalid regex")
    assert [r["action"] for r in store.audit_log()] == ["rules.reload", "rules.reload_rejected"]
    assert load_in_force(store) == {str(rules / "a.yaml"): GOOD}  # the snapshot did not move
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("opsradar_rules_last_reload_successful") == 0.0
    assert (REGISTRY.get_sample_value("opsradar_rules_reloads_total", {"outcome": "rejected"}) or 0) >= 1


def test_a_good_reload_is_atomic_audited_and_snapshotted(setup: tuple[Path, Store, RuleManager]) -> None:
    rules, store, mgr = setup
    (rules / "a.yaml").write_text(GOOD2)
    result = mgr.reload(actor="bo")
    assert result.ok
    assert result.changed
    assert mgr.last_error is None
    assert mgr.engine.on_alert(noise("more")).dropped_by == "drop-more"
    last = store.audit_log()[-1]
    assert (last["actor"], last["action"], last["subject"]) == ("bo", "rules.reload", mgr.engine.digest)
    assert "+  - {name: drop-more" in last["detail"]["diff"]
    blob = store.load_checkpoint(IN_FORCE_KEY)
    assert blob is not None
    assert json.loads(blob[0])["digest"] == mgr.engine.digest


def test_reload_on_file_change_and_state_carries_over(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    burst = ("event_rules:\n  - name: burst\n    trigger: {type: frequency, match: ['kind=\"log\"'], count: 2,"
             " window: 1h}\n")
    (rules / "a.yaml").write_text(burst)
    mgr = RuleManager([rules], stats=RuleStats(export=False))
    from opsradar.models import Event

    def log(i: int) -> Event:
        return Event.new(source="es", native_id=str(i), kind="log", ts=T, entity="service:shop")

    assert mgr.engine.on_event(log(1)) == []
    assert mgr.reload_if_changed() is None
    (rules / "b.yaml").write_text(GOOD)
    assert mgr.reload_if_changed() is not None
    assert mgr.engine.on_alert(noise()).dropped
    # the unchanged frequency rule kept its window across the reload
    assert [a.rule for a in mgr.engine.on_event(log(2))] == ["burst"]


def test_the_first_load_must_succeed(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BROKEN)
    with pytest.raises(RuleError):
        RuleManager([tmp_path / "a.yaml"])


def test_sighup_reloads_and_status_reports_the_rejection(setup: tuple[Path, Store, RuleManager]) -> None:
    import os
    import signal

    rules, _store, mgr = setup
    previous = signal.getsignal(signal.SIGHUP)
    try:
        mgr.install_sighup()
        (rules / "a.yaml").write_text(GOOD2)
        os.kill(os.getpid(), signal.SIGHUP)
        assert mgr.engine.on_alert(noise("more")).dropped
        (rules / "a.yaml").write_text(BROKEN)
        os.kill(os.getpid(), signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, previous)
    status = mgr.status()
    assert status["rules"] == ["drop-noise", "drop-more"]
    assert len(status["last_error"]) == 1
    assert "invalid regex '(noise'" in status["last_error"][0]


def test_from_config_uses_the_rules_section(tmp_path: Path) -> None:
    from opsradar.config import Config

    (tmp_path / "a.yaml").write_text(GOOD)
    cfg = Config.model_validate({"rules": {"paths": [str(tmp_path)], "watch": False},
                                 "entities": {"services": {"shop": {"jobs": ["shop-deploy"]}}}})
    mgr = RuleManager.from_config(cfg)
    assert mgr.engine.rule_names == ["drop-noise"]
    assert mgr.engine.graph is cfg.entities


def test_the_watcher_reloads_on_file_change(tmp_path: Path) -> None:
    import time

    (tmp_path / "a.yaml").write_text(GOOD)
    mgr = RuleManager([tmp_path], stats=RuleStats(export=False))
    thread = mgr.watch(interval=0.05)
    try:
        (tmp_path / "b.yaml").write_text("filters:\n  - {name: drop-more, action: drop, matchers: ['alertname=\"more\"']}\n")
        deadline = time.monotonic() + 20
        while "drop-more" not in mgr.engine.rule_names and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mgr.engine.rule_names == ["drop-noise", "drop-more"]
    finally:
        mgr.stop()
        thread.join(5)
    assert not thread.is_alive()
