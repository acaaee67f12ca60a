"""Correlation: alert storms become one incident, lifecycle, flapping, dedup under concurrency, feedback."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from opsradar.alerting.correlation import Change, Correlator, title_similarity
from opsradar.alerting.incidents import feedback_counts
from opsradar.alerting.noise import NoiseMetrics
from opsradar.config import CorrelationConfig, EntityGraph
from opsradar.models import Alert, AlertStatus, IncidentStatus, Severity
from opsradar.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

GRAPH = EntityGraph.model_validate({"services": {
    "shop": {"repos": ["shop-svc"], "jobs": ["shop-build", "shop-deploy"], "jira_projects": ["SHOP"],
             "es_services": ["shop-api"]},
    "checkout": {"repos": ["checkout-svc"], "jobs": ["checkout-deploy"], "depends_on": ["shop"]},
    "payments": {"repos": ["payments-svc"], "jobs": ["payments-deploy"], "jira_projects": ["PAY"]},
    "search": {"repos": ["search-svc"], "jobs": ["search-build"]},
    "web": {"jobs": ["web-deploy"], "depends_on": ["checkout"]},
    "mobile": {"jobs": ["mobile-deploy"], "depends_on": ["web"]},
}})


def alert(title: str, *, at: datetime = T0, severity: Severity = Severity.warning, status: AlertStatus = AlertStatus.firing,
          **labels: str) -> Alert:
    labels.setdefault("alertname", title.split()[0])
    return Alert.from_labels(title=title, labels=labels, starts_at=at, severity=severity, status=status)


@pytest.fixture
def corr(store: Store) -> Correlator:
    return Correlator(store, GRAPH, CorrelationConfig(window=timedelta(minutes=30), quiet_period=timedelta(hours=1),
                                                      reopen_window=timedelta(minutes=30)))


def storm() -> list[Alert]:
    """One bad deploy of shop: alerts from Jenkins, Elasticsearch, Jira and git across shop and checkout."""
    return [
        alert("Deploy duration anomalous", entity="job:shop-deploy", source="jenkins"),
        alert("Error rate up: NullPointerException in CartController", entity="service:shop-api",
              source="elasticsearch", service="shop"),
        alert("Timeouts calling shop", entity="service:checkout", service="checkout", source="elasticsearch",
              severity=Severity.error),
        alert("Incident tickets spike", entity="project:SHOP", source="jira"),
        alert("Late commit burst", entity="repo:shop-svc", source="git"),
        alert("Checkout deploy failed", entity="job:checkout-deploy", source="jenkins", severity=Severity.critical),
    ]


def test_an_alert_storm_across_services_and_sources_becomes_one_incident(corr: Correlator) -> None:
    updates = [corr.add(a, T0 + timedelta(minutes=i)) for i, a in enumerate(storm())]
    assert updates[0].changes == (Change.opened,)
    assert {u.incident_id for u in updates} == {updates[0].incident_id}
    inc = corr.get(updates[0].incident_id or "")
    assert inc.alert_count == 6
    assert inc.services == ["checkout", "shop"]
    assert inc.sources == ["elasticsearch", "git", "jenkins", "jira"]
    assert inc.severity == Severity.critical
    changes = [c for u in updates for c in u.changes]
    assert Change.new_service in changes
    assert Change.escalated in changes
    assert len(corr.store.alerts_of(inc.id)) == 6


def test_incidents_grow_around_their_origin_and_do_not_chain(corr: Correlator) -> None:
    # mobile → web → checkout → shop: mobile is 3 hops from shop, where the incident started,
    # though only 1 hop from web, which joined it
    a = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    b = corr.add(alert("Timeouts", entity="job:checkout-deploy", source="jenkins"), T0 + timedelta(minutes=1))
    c = corr.add(alert("Web errors", entity="job:web-deploy", source="jenkins"), T0 + timedelta(minutes=2))
    d = corr.add(alert("Mobile crash rate up", entity="job:mobile-deploy", source="jenkins"), T0 + timedelta(minutes=3))
    assert a.incident_id == b.incident_id == c.incident_id
    assert d.incident_id != a.incident_id


def test_unrelated_services_make_separate_incidents(corr: Correlator) -> None:
    a = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    b = corr.add(alert("Payment errors", entity="job:payments-deploy", source="jenkins"), T0 + timedelta(minutes=1))
    c = corr.add(alert("Search build slow", entity="job:search-build", source="jenkins"), T0 + timedelta(minutes=2))
    assert len({a.incident_id, b.incident_id, c.incident_id}) == 3


def test_related_alerts_outside_the_window_open_a_new_incident(corr: Correlator) -> None:
    a = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    b = corr.add(alert("Errors up", service="shop", source="elasticsearch"), T0 + timedelta(minutes=45))
    assert a.incident_id != b.incident_id


def test_group_by_key_groups_alerts_the_graph_does_not_know(corr: Correlator) -> None:
    a = corr.add(alert("Disk full on db-1", team="dba", cluster="c1"), T0, group_by=["cluster"])
    b = corr.add(alert("Replica lag", team="dba", cluster="c1"), T0 + timedelta(minutes=1), group_by=["cluster"])
    c = corr.add(alert("Replica lag", team="dba", cluster="c2"), T0 + timedelta(minutes=2), group_by=["cluster"])
    assert a.incident_id == b.incident_id != c.incident_id


def test_title_similarity_joins_alerts_of_unknown_entities_only(corr: Correlator) -> None:
    assert title_similarity("Timeout after 3000 ms calling db-7", "Timeout after 5000 ms calling db-9") == 1.0
    a = corr.add(alert("Timeout after 3000 ms calling db-7", entity="host:h1", source="elasticsearch"), T0)
    b = corr.add(alert("Timeout after 5000 ms calling db-9", entity="host:h2", source="elasticsearch"),
                 T0 + timedelta(minutes=1))
    assert a.incident_id == b.incident_id
    # Known, unrelated services are not merged by a similar title alone.
    c = corr.add(alert("Build duration anomalous", entity="job:search-build", source="jenkins"), T0)
    d = corr.add(alert("Build duration anomalous", entity="job:payments-deploy", source="jenkins"), T0)
    assert c.incident_id != d.incident_id


def test_duplicates_change_nothing_but_last_seen(corr: Correlator) -> None:
    a = alert("Deploy failed", entity="job:shop-deploy", source="jenkins")
    first = corr.add(a, T0)
    again = corr.add(a, T0 + timedelta(minutes=5))
    assert again.changes == (Change.duplicate,)
    assert not again.visible
    inc = corr.get(first.incident_id or "")
    assert inc.alert_count == 1
    assert inc.last_seen == T0 + timedelta(minutes=5)


def test_lifecycle_ack_resolve_and_auto_resolve(corr: Correlator) -> None:
    u = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    iid = u.incident_id or ""
    ack = corr.ack(iid, "ana", T0 + timedelta(minutes=1))
    assert ack.changes == (Change.acknowledged,)
    assert ack.incident
    assert ack.incident.acknowledged_by == "ana"
    assert corr.ack(iid, "ana").changes == ()
    assert corr.tick(T0 + timedelta(minutes=30)) == []
    resolved = corr.tick(T0 + timedelta(hours=1, minutes=1))
    assert [r.incident_id for r in resolved] == [iid]
    assert corr.get(iid).status == IncidentStatus.resolved
    actions = [r["action"] for r in corr.store.audit_log()]
    assert "incident.acknowledged" in actions
    assert "incident.auto_resolve" in actions


def test_flapping_reopens_instead_of_duplicating(corr: Correlator) -> None:
    a = alert("Deploy failed", entity="job:shop-deploy", source="jenkins")
    first = corr.add(a, T0)
    corr.resolve(first.incident_id or "", "ana", T0 + timedelta(minutes=5))
    again = corr.add(a, T0 + timedelta(minutes=15))
    assert again.incident_id == first.incident_id
    assert Change.reopened in again.changes
    inc = corr.get(first.incident_id or "")
    assert inc.status == IncidentStatus.open
    assert inc.reopen_count == 1
    # Flapping again and again stays one incident.
    for k in range(3):
        corr.resolve(inc.id, "ana", T0 + timedelta(minutes=20 + 10 * k))
        assert corr.add(a, T0 + timedelta(minutes=25 + 10 * k)).incident_id == inc.id
    assert corr.get(inc.id).reopen_count == 4
    assert len(corr.store.list_incidents()) == 1


def test_firing_again_long_after_resolution_opens_a_new_incident(corr: Correlator) -> None:
    a = alert("Deploy failed", entity="job:shop-deploy", source="jenkins")
    first = corr.add(a, T0)
    corr.resolve(first.incident_id or "", "ana", T0 + timedelta(minutes=5))
    later = corr.add(a, T0 + timedelta(hours=3))
    assert later.changes == (Change.opened,)
    assert later.incident_id != first.incident_id
    assert corr.store.get_alert(a.fingerprint)[1] == later.incident_id  # type: ignore[index]


def test_a_resolved_incident_never_absorbs_unrelated_or_related_new_alerts(corr: Correlator) -> None:
    first = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    corr.resolve(first.incident_id or "", "ana", T0 + timedelta(minutes=2))
    related = corr.add(alert("Errors up", service="shop", source="elasticsearch"), T0 + timedelta(minutes=3))
    unrelated = corr.add(alert("Payments slow", entity="job:payments-deploy", source="jenkins"), T0 + timedelta(minutes=3))
    assert related.incident_id != first.incident_id
    assert unrelated.incident_id != first.incident_id
    assert corr.get(first.incident_id or "").alert_count == 1
    assert corr.get(first.incident_id or "").status == IncidentStatus.resolved


def test_source_resolution_of_every_alert_resolves_the_incident(corr: Correlator) -> None:
    a = alert("Deploy failed", entity="job:shop-deploy", source="jenkins")
    b = alert("Errors up", service="shop", source="elasticsearch")
    iid = corr.add(a, T0).incident_id
    corr.add(b, T0 + timedelta(minutes=1))
    assert corr.add(a.model_copy(update={"status": AlertStatus.resolved}), T0 + timedelta(minutes=2)).changes == ()
    done = corr.add(b.model_copy(update={"status": AlertStatus.resolved}), T0 + timedelta(minutes=3))
    assert done.incident_id == iid
    assert done.changes == (Change.resolved,)


def test_concurrent_duplicate_alerts_from_threads_make_one_incident(corr: Correlator) -> None:
    a = alert("Deploy failed", entity="job:shop-deploy", source="jenkins")
    barrier = threading.Barrier(8)
    results: list[str | None] = []

    def go() -> None:
        barrier.wait()
        results.append(corr.add(a, T0).incident_id)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(results)) == 1
    assert len(corr.store.list_incidents()) == 1
    assert corr.get(results[0] or "").alert_count == 1


def _add_in_process(url: str, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue[str]) -> None:  # type: ignore[name-defined]
    store = Store(url)
    c = Correlator(store, GRAPH, CorrelationConfig())
    start.wait(10)
    out.put(c.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0).incident_id or "")
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_duplicate_alerts_from_two_processes_make_one_incident(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    url = f"sqlite:///{tmp_path}/state.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    Store(url).close()  # migrate once
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_add_in_process, args=(url, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    ids = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert len(set(ids)) == 1
    store = Store(url)
    assert len(store.list_incidents()) == 1
    store.close()


def test_feedback_is_stored_exposed_and_proposes_a_drop_rule(corr: Correlator) -> None:
    a = alert("Build slow", entity="job:shop-build", source="jenkins", stream="jenkins|build|job:shop-build")
    iid = corr.add(a, T0).incident_id or ""
    fb = corr.feedback("incident", iid, "false_positive", "ana", "nightly rebuild")
    assert fb.proposed_rule is not None
    rule = yaml.safe_load(fb.proposed_rule)["filters"][0]
    assert rule["action"] == "drop"
    assert 'alertname="Build"' in rule["matchers"]
    assert 'entity="job:shop-build"' in rule["matchers"]
    assert corr.get(iid).feedback == "false_positive"
    rows = corr.store.feedback_for("incident", iid)
    assert rows[0]["actor"] == "ana"
    assert rows[0]["reason"] == "nightly rebuild"
    assert feedback_counts(corr.store)["jenkins|build|job:shop-build"]["false_positive"] == 1
    tp = corr.feedback("alert", a.fingerprint, "true_positive", "bo")
    assert tp.proposed_rule is None
    with pytest.raises(ValueError, match="verdict"):
        corr.feedback("alert", a.fingerprint, "maybe", "bo")


def test_noise_metrics_count_alerts_and_incidents(store: Store) -> None:
    m = NoiseMetrics(registry=CollectorRegistry())
    c = Correlator(store, GRAPH, CorrelationConfig(), metrics=m)
    for i, a in enumerate(storm()):
        c.add(a, T0 + timedelta(minutes=i))
    c.add(storm()[0], T0 + timedelta(minutes=9))  # a duplicate is not counted
    snap = m.snapshot()
    assert snap["totals"]["alerts"] == 6
    assert snap["totals"]["incidents"] == 1
    assert snap["compression"]["alerts_per_incident"] == 6.0


def test_a_big_storm_keeps_a_bounded_timeline_and_a_growing_revision(corr: Correlator) -> None:
    from opsradar.alerting.incidents import MAX_JOINED_ENTRIES

    revs = []
    for i in range(MAX_JOINED_ENTRIES + 30):
        u = corr.add(alert(f"Error {i} in shop", service="shop", source="elasticsearch", n=str(i)),
                     T0 + timedelta(seconds=i))
        revs.append(u.revision)
    inc = corr.get(u.incident_id or "")
    assert inc.alert_count == MAX_JOINED_ENTRIES + 30
    assert sum(1 for e in inc.timeline if e.what == "joined") == MAX_JOINED_ENTRIES
    assert revs == sorted(set(revs)), "every change has a new, larger revision"


def test_root_cause_is_set_without_losing_concurrent_changes(corr: Correlator) -> None:
    u = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    corr.add(alert("Errors up", service="shop", source="elasticsearch"), T0 + timedelta(minutes=1))
    inc = corr.set_root_cause(u.incident_id or "", [{"summary": "deploy #41", "score": 0.9}])
    assert inc.alert_count == 2
    assert corr.get(inc.id).root_cause == [{"summary": "deploy #41", "score": 0.9}]


def test_a_lone_weaker_alert_does_not_absorb_a_stronger_burst_on_another_entity(corr: Correlator) -> None:
    # checkout depends on shop: a lone warning on shop's build, then errors on checkout
    slow = corr.add(alert("Build slow", entity="job:shop-build", source="jenkins"), T0)
    errors = corr.add(alert("Timeouts calling shop", entity="service:checkout", service="checkout",
                            source="elasticsearch", severity=Severity.error), T0 + timedelta(minutes=20))
    assert errors.changes == (Change.opened,)
    assert errors.incident_id != slow.incident_id
    # the same entity still joins; once the incident holds two alerts, the graph joins as before
    same = corr.add(alert("Build failed", entity="job:shop-build", source="jenkins", severity=Severity.error),
                    T0 + timedelta(minutes=21))
    near = corr.add(alert("Shop deploy slow", entity="job:shop-deploy", source="jenkins"), T0 + timedelta(minutes=22))
    assert same.incident_id == slow.incident_id
    assert near.incident_id == slow.incident_id
