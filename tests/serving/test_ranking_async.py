"""Root-cause ranking off the alerting path (``Pipeline(rank_async=True)``, the Ray owner's mode).

No timings: the tests hold the ranking function on an event and wait for the ranker to be idle
(``Ranker.join``; its timeout only keeps a broken build from hanging the suite).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsradar.config import parse_config
from opsradar.models import Alert, Event
from opsradar.serving.pipeline import Pipeline, Ranker
from opsradar.store import Store

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
WAIT = 60.0  # a safety net, never reached when the code works
TOP = [{"entity": "repo:shop", "title": "deploy shop 1.2", "score": 0.9}]


class _Report:
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def root_cause_entries(self, n: int) -> list[dict[str, Any]]:
        return self.entries[:n]


def _pipeline(tmp_path: Path, **kw: Any) -> Pipeline:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text('receivers: [{name: sre, slack: {channel: "#sre"}}]\nroute: {receiver: sre}\n')
    # messages are posted at once: these tests are about the updates that a ranking makes
    cfg = parse_config("slack: {enabled: false, apply_group_wait: false}\n")
    return Pipeline(cfg, Store(f"sqlite:///{tmp_path}/s.db"), rules_paths=[str(rules)], **kw)


def _alert(service: str = "shop", name: str = "x") -> Alert:
    return Alert.from_labels(title=f"{service} is slow", labels={"service": service, "alertname": name}, starts_at=T0)


def _outbox(p: Pipeline, incident_id: str) -> list[str]:
    return [r["action"] for r in p.store.outbox_rows() if r["incident_id"] == incident_id]


def test_the_ranker_coalesces_waiting_requests_and_keeps_the_newest_time() -> None:
    gate, started = threading.Event(), threading.Event()
    calls: list[tuple[str, datetime]] = []

    def rank(incident_id: str, now: datetime) -> None:
        calls.append((incident_id, now))
        started.set()
        assert gate.wait(WAIT)

    ranker = Ranker(rank)
    try:
        ranker.submit("a", T0)
        assert started.wait(WAIT)  # "a" is being ranked: what follows waits
        for i, inc in enumerate(["b", "c", "b", "b", "a"]):
            ranker.submit(inc, T0 + timedelta(minutes=i))
        assert ranker.backlog == 4  # a (running), then b, c, a waiting
        gate.set()
        assert ranker.join(WAIT)
    finally:
        ranker.close()
    t = [T0 + timedelta(minutes=i) for i in range(5)]
    assert calls == [("a", T0), ("b", t[3]), ("c", t[1]), ("a", t[4])]
    assert (ranker.submitted, ranker.coalesced, ranker.ranked, ranker.failed) == (6, 2, 4, 0)


def test_async_ranking_attaches_the_causes_and_updates_the_message(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    def build_report(inc: Any, store: Any, graph: Any, *, now: datetime) -> _Report:
        assert gate.wait(WAIT)
        return _Report(TOP + [{"entity": f"repo:{i}", "title": "t", "score": 0.1} for i in range(3)])

    monkeypatch.setattr("opsradar.alerting.rootcause.build_report", build_report)
    p = _pipeline(tmp_path, rank_async=True)
    try:
        p._on_alert(_alert(), T0)  # returns while the ranking is held: alerting does not wait for it
        (inc,) = p.store.list_incidents()
        assert inc["root_cause"] == []
        assert _outbox(p, inc["id"]) == ["post"]
        gate.set()
        assert p.ranker is not None
        assert p.ranker.join(WAIT)
        got = p.correlator.get(inc["id"])
        assert got.root_cause == [*TOP, {"entity": "repo:0", "title": "t", "score": 0.1},
                                  {"entity": "repo:1", "title": "t", "score": 0.1}]  # the top three
        assert _outbox(p, inc["id"]) == ["post", "update"]  # the one message, updated in place
        assert p.ready()["rankings"] == 1
    finally:
        p.close()


def test_a_ranking_that_lands_after_an_update_of_the_same_revision_updates_the_message_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    def build_report(inc: Any, store: Any, graph: Any, *, now: datetime) -> _Report:
        assert gate.wait(WAIT)
        return _Report([{**TOP[0], "event_id": "deploy-1"}])

    monkeypatch.setattr("opsradar.alerting.rootcause.build_report", build_report)
    p = _pipeline(tmp_path, rank_async=True)
    assert p.ranker is not None
    try:
        p._on_alert(_alert(), T0)
        p._on_alert(_alert(name="y"), T0 + timedelta(minutes=1))  # joins while the ranking is held: update at its revision
        (inc,) = p.store.list_incidents()
        assert _outbox(p, inc["id"]) == ["post", "update"]
        gate.set()
        assert p.ranker.join(WAIT)
        # same revision, new causes: a second update (it was swallowed by the first one's key before)
        assert _outbox(p, inc["id"]) == ["post", "update", "update"]
        p._rank_later(inc["id"], T0 + timedelta(minutes=2))  # the same ranking again: nothing to send
        assert _outbox(p, inc["id"]) == ["post", "update", "update"]
    finally:
        p.close()


def test_a_failing_ranking_is_logged_and_alerting_and_ranking_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def build_report(inc: Any, store: Any, graph: Any, *, now: datetime) -> _Report:
        calls.append(inc.id)
        if len(calls) == 1:
            raise RuntimeError("store went away")
        return _Report(TOP)

    monkeypatch.setattr("opsradar.alerting.rootcause.build_report", build_report)
    p = _pipeline(tmp_path, rank_async=True)
    assert p.ranker is not None
    try:
        with caplog.at_level(logging.ERROR, logger="opsradar.serving.pipeline"):
            p._on_alert(_alert("shop", "x"), T0)
            assert p.ranker.join(WAIT)
        assert "root-cause ranking failed" in caplog.text
        assert "store went away" in caplog.text
        p._on_alert(_alert("pay", "y"), T0 + timedelta(minutes=1))
        assert p.ranker.join(WAIT)
    finally:
        p.close()
    incidents = {i["title"]: i for i in p.store.list_incidents()}
    assert p.stats.alerts == 2
    assert len(calls) == 2
    assert [i["root_cause"] for i in incidents.values()].count(TOP) == 1
    assert (p.ranker.ranked, p.ranker.failed) == (1, 1)


def test_close_does_not_wait_for_pending_rankings(tmp_path: Path) -> None:
    gate, started = threading.Event(), threading.Event()
    calls: list[str] = []

    def rank(incident_id: str, now: datetime) -> None:
        calls.append(incident_id)
        started.set()
        gate.wait(WAIT)

    ranker = Ranker(rank)
    ranker.submit("a", T0)
    assert started.wait(WAIT)
    ranker.submit("b", T0)
    ranker.close(timeout=0.01)  # "a" is still running: close returns, "b" is dropped
    ranker.submit("c", T0)  # ignored once closed
    assert not ranker.join(0)
    gate.set()
    ranker._thread.join(WAIT)
    assert calls == ["a"]
    assert not ranker._thread.is_alive()


def test_the_default_mode_ranks_before_the_first_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("opsradar.alerting.rootcause.build_report",
                        lambda inc, store, graph, *, now: _Report(TOP))
    p = _pipeline(tmp_path)
    assert p.ranker is None
    p._on_alert(_alert(), T0)
    (inc,) = p.store.list_incidents()
    assert inc["root_cause"] == TOP
    assert _outbox(p, inc["id"]) == ["post"]


def _graph_pipeline(tmp_path: Path, **kw: Any) -> Pipeline:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text('receivers: [{name: sre, slack: {channel: "#sre"}}]\nroute: {receiver: sre}\n')
    cfg = parse_config("slack: {enabled: false, apply_group_wait: false}\nentities:\n  services:\n    shop: {repos: [shop-svc]}\n"
                       "    crm: {repos: [crm-svc]}\n")
    return Pipeline(cfg, Store(f"sqlite:///{tmp_path}/s.db"), rules_paths=[str(rules)], **kw)


def _commit(sha: str, repo: str, ts: datetime) -> Event:
    return Event.new(source="git", native_id=sha, kind="commit", entity=f"repo:{repo}", ts=ts,
                     labels={"author": "ana"}, values={"lines_added": 40.0}, attrs={"message": f"change {sha}"})


@pytest.mark.parametrize("rank_async", [False, True])
def test_a_change_collected_after_its_incident_was_ranked_is_ranked_in(tmp_path: Path, rank_async: bool) -> None:
    """git is polled after the logs showed the trouble: the commit that caused it arrives once the
    incident is open and ranked without it. It is ranked in, and the message updated; a change on
    an unrelated service, or from long before, ranks nothing again."""
    p = _graph_pipeline(tmp_path, rank_async=rank_async)
    try:
        p._on_alert(_alert(), T0)
        (inc,) = p.store.list_incidents()
        if p.ranker is not None:
            assert p.ranker.join(WAIT)
        assert p.correlator.get(inc["id"]).root_cause == []
        ranked = dict(p._ranked_at)

        unrelated = [_commit("c0ffee", "crm-svc", T0 - timedelta(minutes=5)),
                     _commit("0ld", "shop-svc", T0 - timedelta(days=5))]
        p.store.add_events(unrelated)
        p.handle(unrelated, [])
        assert p._ranked_at == ranked  # no ranking asked

        late = [_commit("abc123", "shop-svc", T0 - timedelta(minutes=5))]
        p.store.add_events(late)
        p.handle(late, [])
        if p.ranker is not None:
            assert p.ranker.join(WAIT)
        top = p.correlator.get(inc["id"]).root_cause
        assert top
        assert top[0]["event_id"] == late[0].id
        assert _outbox(p, inc["id"]) == ["post", "update"]
    finally:
        p.close()
