"""Ground-truth matching and the scenario benchmark's scoring, on hand-built inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opsradar.demo.groundtruth import ChangeRef, ExpectedSignal, GroundTruth, InjectedIncident
from opsradar.demo.scoring import count_incident_messages, match_incidents, score
from opsradar.models import Event, Incident

T0 = datetime(2026, 3, 6, 10, 0, tzinfo=UTC)
SHA = "3f2a9c0d1e4b5a6978877665544332211aabbccd"
DEPLOY = ChangeRef(source="jenkins", kind="deploy", entity="job:checkout-deploy", job="checkout-deploy", number=104)
COMMIT = ChangeRef(source="git", kind="commit", entity="repo:checkout-svc", repo="checkout-svc", sha=SHA)


def _gt() -> GroundTruth:
    h = timedelta(hours=1)
    return GroundTruth(scenario="t", seed=1, start=T0 - 24 * h, end=T0 + 48 * h, incidents=[
        InjectedIncident(id="bad-deploy", type="bad_deploy", title="bad", start=T0, end=T0 + h,
                         services=["checkout"], entities=["service:checkout", "job:checkout-deploy"],
                         root_cause=[DEPLOY, COMMIT]),
        InjectedIncident(id="flood", type="request_flood", title="flood", start=T0 + 5 * h, end=T0 + 6 * h,
                         services=["gateway"]),
        InjectedIncident(id="storm", type="alert_storm", title="storm", start=T0 + 20 * h, end=T0 + 21 * h,
                         services=["auth", "gateway", "checkout"], signals=[
                             ExpectedSignal(source="app-logs", kind="log", entity=f"service:{s}", start=T0 + 20 * h,
                                            end=T0 + 21 * h, what="errors") for s in ("auth", "gateway", "checkout")
                         ] + [ExpectedSignal(source="jenkins", kind="deploy", entity="job:auth-deploy", start=T0 + 20 * h,
                                             end=T0 + 20 * h, what="the deploy")], root_cause=[
                             ChangeRef(source="jenkins", kind="deploy", entity="job:auth-deploy", job="auth-deploy", number=9)]),
        InjectedIncident(id="creep", type="build_creep", title="creep", start=T0 + 30 * h, end=T0 + 40 * h,
                         services=["search"]),
    ])


def _event(source: str, native: str, kind: str, entity: str, **attrs: object) -> Event:
    return Event.new(source=source, native_id=native, kind=kind, ts=T0, entity=entity, attrs=dict(attrs))


def test_change_refs_match_the_collectors_events() -> None:
    assert DEPLOY.matches_event(_event("jenkins", "checkout-deploy#104", "deploy", "job:checkout-deploy"))
    assert not DEPLOY.matches_event(_event("jenkins", "checkout-deploy#103", "deploy", "job:checkout-deploy"))
    assert not DEPLOY.matches_event(_event("jenkins", "checkout-deploy#104/tests", "test_run", "job:checkout-build"))
    assert COMMIT.matches_event(_event("git", f"checkout-svc:{SHA}", "commit", "repo:checkout-svc"))
    # by attrs when the native id convention differs
    assert COMMIT.matches_event(_event("git2", "x", "commit", "repo:checkout-svc", sha=SHA[:12]))
    assert not COMMIT.matches_event(_event("git", "x", "commit", "repo:payments-svc", sha=SHA))
    issue = ChangeRef(source="jira", kind="issue", entity="project:CHK", key="CHK-7")
    ev = Event.new(source="jira", native_id="CHK-7@created", kind="issue", ts=T0, entity="project:CHK",
                   labels={"issue_key": "CHK-7"})
    assert issue.matches_event(ev)
    gt = _gt()
    assert gt.root_cause_of(_event("git", f"checkout-svc:{SHA}", "commit", "repo:checkout-svc")) == ["bad-deploy"]


def test_candidates_match_by_event_id_by_lookup_or_by_text() -> None:
    inc = _gt().incident("bad-deploy")
    ev = _event("git", "whatever", "commit", "repo:checkout-svc", sha=SHA)
    assert inc.candidate_is_root_cause({"event_id": Event.make_id("jenkins", "checkout-deploy#104", T0)})
    assert inc.candidate_is_root_cause({"event_id": ev.id}, {ev.id: ev})
    assert inc.candidate_is_root_cause({"entity": "repo:checkout-svc", "summary": f"{SHA[:7]} Switch pricing"})
    assert not inc.candidate_is_root_cause({"entity": "job:checkout-deploy", "summary": "checkout-deploy #1040"})
    assert not inc.candidate_is_root_cause({"event_id": "git-unknown"})


def _det(id: str, services: list[str], first: timedelta, *, notified: timedelta | None = None, alerts: int = 1,
         causes: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {"id": id, "services": services, "first_seen": T0 + first, "alert_count": alerts,
            "notified_at": T0 + notified if notified is not None else None, "root_cause": causes or []}


def test_score_on_a_hand_built_run() -> None:
    m = timedelta(minutes=1)
    h = timedelta(hours=1)
    deploy_id = Event.make_id("jenkins", "checkout-deploy#104", T0)
    detected = [
        # the bad deploy, found twice (split), the bigger one ranks the deploy second
        _det("a", ["checkout"], 4 * m, notified=6 * m, alerts=5,
             causes=[{"event_id": "other"}, {"event_id": deploy_id}]),
        _det("b", ["checkout"], 30 * m, notified=31 * m, alerts=1, causes=[{"event_id": deploy_id}]),
        # the flood, found late
        _det("c", ["gateway"], 5 * h + 20 * m, notified=5 * h + 40 * m, alerts=3),
        # the storm, one incident, the right cause first
        _det("d", ["auth", "gateway"], 20 * h + 2 * m, notified=20 * h + 3 * m, alerts=9,
             causes=[Event.make_id("jenkins", "auth-deploy#9", T0 + timedelta(hours=20))]),  # type: ignore[list-item]  # a bare id
        # noise: a service with nothing injected, and the right service long after
        _det("e", ["inventory"], 10 * h, notified=10 * h),
        _det("f", ["checkout"], 12 * h, notified=12 * h),
    ]
    s = score(_gt(), detected, anomalies_count=80, alerts_count=40,
              slack_messages=[{"ts": str(i)} for i in range(6)] + [{"ts": "9", "thread_ts": "1"}])
    assert s["recall"] == 0.75  # creep missed
    assert s["precision"] == round(4 / 6, 4)
    assert s["compression"] == 20.0
    assert s["alerts_per_message"] == round(40 / 6, 2)
    # TTDs: 6 min (bad deploy), 40 min (flood), 3 min (storm)
    assert s["ttd_median_s"] == 360.0
    assert s["ttd_p90_s"] == pytest.approx(360 + 0.8 * (2400 - 360), abs=0.1)
    assert s["rca_n"] == 2
    assert s["rca_top1"] == 0.5
    assert s["rca_top3"] == 1.0
    assert s["fragmentation"] == round(4 / 3, 2)
    assert s["grouped_as_one"] == round(2 / 3, 4)
    assert s["unmatched"] == ["e", "f"]
    per = {p["id"]: p for p in s["per_incident"]}
    assert per["storm"]["signal_coverage"] == 0.5  # auth and gateway of four expected signals
    assert s["signal_coverage"] == 0.5  # the other found incidents list no expected signals
    assert per["bad-deploy"]["incidents"] == ["a", "b"]
    assert per["bad-deploy"]["rca_rank"] == 2
    assert per["creep"]["detected"] is False
    assert per["creep"]["ttd_s"] is None


def test_score_with_nothing_found_and_with_incident_models() -> None:
    s = score(_gt(), [], anomalies_count=3, alerts_count=0, slack_messages=0)
    assert s["recall"] == 0.0
    assert s["precision"] is None
    assert s["compression"] is None
    assert s["ttd_median_s"] is None
    assert s["rca_top1"] is None
    model = Incident(id="x", title="t", services=["search"], first_seen=T0 + timedelta(hours=31),
                     last_seen=T0 + timedelta(hours=32))
    s = score(_gt(), [model], anomalies_count=3, alerts_count=1, slack_messages=1)
    assert s["recall"] == 0.25
    assert s["precision"] == 1.0
    assert s["ttd_n"] == 0


def test_matching_prefers_the_injected_incident_sharing_most_services() -> None:
    gt = _gt()
    gt.incidents[1] = gt.incidents[1].model_copy(update={"start": T0 + 20 * timedelta(hours=1),
                                                         "end": T0 + 21 * timedelta(hours=1)})
    found = match_incidents(gt, [_det("z", ["auth", "gateway"], timedelta(hours=20, minutes=5))])
    assert found == {"z": "storm"}
    assert count_incident_messages(4) == 4


def test_rca_is_read_from_the_detection_holding_the_expected_signals() -> None:
    h = timedelta(hours=1)
    ref = ChangeRef(source="git", kind="commit", entity="repo:search-svc", repo="search-svc", sha=SHA)
    gt = GroundTruth(scenario="t", seed=1, start=T0, end=T0 + 24 * h, incidents=[
        InjectedIncident(id="creep", type="build_creep", title="creep", start=T0, end=T0 + 10 * h, services=["search"],
                         signals=[ExpectedSignal(source="jenkins", kind="build", entity="job:search-build", start=T0,
                                                 end=T0 + 10 * h, what="slower builds")], root_cause=[ref])])
    right = {"id": "small", "services": ["search"], "entities": ["job:search-build"], "first_seen": T0 + 2 * h,
             "alert_count": 1, "root_cause": [{"entity": "repo:search-svc", "summary": f"commit {SHA[:10]} by Kai"}]}
    mixed = {"id": "big", "services": ["search", "auth", "gateway"], "entities": ["job:gateway-build"],
             "first_seen": T0 + 9 * h, "alert_count": 9, "root_cause": [{"event_id": "something-else"}]}
    s = score(gt, [mixed, right], anomalies_count=10, alerts_count=10, slack_messages=2)
    assert s["per_incident"][0]["incidents"] == ["small", "big"]
    assert s["rca_top1"] == 1.0
    assert s["signal_coverage"] == 1.0
