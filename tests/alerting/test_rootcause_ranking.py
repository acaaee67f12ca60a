"""Ranking of root-cause candidates on small hand-built timelines (no store)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opsradar.alerting.rootcause import FACTORS, ScoringParams, change_risk, rank_changes
from opsradar.config import EntityGraph
from opsradar.models import Event

ONSET = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

GRAPH = EntityGraph.model_validate({"services": {
    "shop": {"repos": ["shop-svc"], "jobs": ["shop-build", "shop-deploy"], "jira_projects": ["SHOP"],
             "depends_on": ["pay"]},
    "pay": {"repos": ["pay-svc"], "jobs": ["pay-deploy"]},
    "inventory": {"repos": ["inv-svc"], "jobs": ["inv-deploy"], "depends_on": ["pay"]},
    "crm": {"repos": ["crm-svc"], "jobs": ["crm-deploy"]},
}})


def ev(name: str, kind: str, entity: str, minutes_before: float, *, labels: dict[str, str] | None = None,
       values: dict[str, float] | None = None, attrs: dict[str, Any] | None = None, source: str | None = None) -> Event:
    src = source or {"commit": "git", "issue": "jira"}.get(kind, "jenkins")
    return Event.new(source=src, native_id=name, kind=kind, entity=entity, ts=ONSET - timedelta(minutes=minutes_before),
                     labels=labels or {}, values=values or {}, attrs=attrs or {})


def anomaly_at(entity: str, minutes_before: float) -> tuple[datetime, str]:
    return (ONSET - timedelta(minutes=minutes_before), entity)


SHOP_SYMPTOMS = [anomaly_at("service:shop", 0), anomaly_at("service:shop", -3)]


def by_name(ranked: list[Any]) -> dict[str, Any]:
    return {c.event_id: c for c in ranked}


def test_a_small_change_on_the_affected_service_beats_a_large_one_on_an_unrelated_service() -> None:
    small = ev("small", "deploy", "job:shop-deploy", 25, labels={"result": "SUCCESS"})
    decoy = ev("decoy", "deploy", "job:crm-deploy", 5, labels={"result": "FAILURE"}, values={"failed_tests": 12})
    decoy_commit = ev("decoy-commit", "commit", "repo:crm-svc", 6, values={"lines_added": 4000, "files": 80},
                      labels={"first_time_author": "true", "off_hours": "true", "late": "true"})
    changes = [decoy, decoy_commit, small]
    ranked = rank_changes(changes, graph=GRAPH, affected=["service:shop"], onset=ONSET, anomalies=SHOP_SYMPTOMS)
    assert [c.event_id for c in ranked] == [small.id]  # unrelated changes are not candidates at all

    everything = rank_changes(changes, graph=GRAPH, affected=["service:shop"], onset=ONSET, anomalies=SHOP_SYMPTOMS,
                              include_unrelated=True)
    assert everything[0].event_id == small.id
    c = by_name(everything)
    assert c[decoy.id].factors["graph"] == 0.0
    assert c[decoy.id].score == 0.0
    assert c[decoy.id].factors["risk"] > c[small.id].factors["risk"]  # it was riskier, and still loses


def test_a_large_risky_change_two_hops_away_ranks_below_a_small_change_on_the_affected_service() -> None:
    small = ev("small", "deploy", "job:shop-deploy", 40)
    decoy = ev("decoy", "deploy", "job:inv-deploy", 5, labels={"result": "UNSTABLE"}, values={"failed_tests": 7})
    decoy_commit = ev("decoy-commit", "commit", "repo:inv-svc", 8, values={"lines_added": 2500, "lines_deleted": 900},
                      labels={"first_time_author": "true", "late": "true"})
    ranked = rank_changes([decoy, decoy_commit, small], graph=GRAPH, affected=["service:shop"], onset=ONSET,
                          anomalies=SHOP_SYMPTOMS)
    assert ranked[0].event_id == small.id
    c = by_name(ranked)
    assert c[decoy.id].factors["graph"] == 0.25  # inventory → pay → shop
    assert c[decoy.id].factors["time"] > c[small.id].factors["time"]  # closer in time, and still below


def test_a_dependency_one_hop_away_counts_half() -> None:
    dep = ev("pay", "deploy", "job:pay-deploy", 10)
    ranked = rank_changes([dep], graph=GRAPH, affected=["service:shop"], onset=ONSET)
    assert ranked[0].factors["graph"] == 0.5
    assert "1 hop" in ranked[0].evidence[1]


def test_time_proximity_orders_otherwise_equal_changes_and_changes_after_the_onset_rank_last() -> None:
    near = ev("near", "deploy", "job:shop-deploy", 10)
    far = ev("far", "deploy", "job:shop-deploy", 180)
    after = ev("after", "deploy", "job:shop-deploy", -15)
    skew = ev("skew", "deploy", "job:shop-deploy", -1)  # within the clock-skew grace
    ranked = rank_changes([after, far, near, skew], graph=GRAPH, affected=["service:shop"], onset=ONSET,
                          anomalies=SHOP_SYMPTOMS)
    assert [c.event_id for c in ranked] == [skew.id, near.id, far.id, after.id]
    c = by_name(ranked)
    assert c[near.id].factors["time"] == pytest.approx(1 / (1 + 10 / 30), abs=1e-4)
    assert c[far.id].factors["time"] == pytest.approx(1 / (1 + 180 / 30), abs=1e-4)
    assert c[after.id].factors["time"] == ScoringParams().after_onset
    assert c[skew.id].factors["time"] == 1.0


def test_a_service_that_was_anomalous_before_the_change_is_penalised() -> None:
    pay_deploy = ev("pay", "deploy", "job:pay-deploy", 10)
    symptoms = [anomaly_at("service:pay", 30), *SHOP_SYMPTOMS]  # pay was already in trouble
    before = rank_changes([pay_deploy], graph=GRAPH, affected=["service:shop", "service:pay"], onset=ONSET,
                          anomalies=symptoms)[0]
    assert before.factors["order"] == ScoringParams().order_before
    later = [anomaly_at("service:pay", 5), *SHOP_SYMPTOMS]
    after = rank_changes([pay_deploy], graph=GRAPH, affected=["service:shop", "service:pay"], onset=ONSET,
                         anomalies=later)[0]
    assert after.factors["order"] == ScoringParams().order_after
    quiet = rank_changes([pay_deploy], graph=GRAPH, affected=["service:shop"], onset=ONSET, anomalies=SHOP_SYMPTOMS)[0]
    assert quiet.factors["order"] == ScoringParams().order_unknown
    assert after.score > quiet.score > before.score


def test_a_commit_counts_from_the_deploy_that_shipped_it() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    commit = ev("c1", "commit", "repo:shop-svc", 360, labels={"sha": sha, "author": "ana"},
                values={"lines_added": 300, "lines_deleted": 20})
    deploy = ev("d1", "deploy", "job:shop-deploy", 10, attrs={"commits": [sha[:12]]}, labels={"result": "SUCCESS"})
    other = ev("c0", "commit", "repo:shop-svc", 120, labels={"sha": "f" * 40}, values={"lines_added": 2})
    ranked = rank_changes([commit, deploy, other], graph=GRAPH, affected=["service:shop"], onset=ONSET,
                          anomalies=SHOP_SYMPTOMS)
    c = by_name(ranked)
    assert c[commit.id].effective_ts == deploy.ts
    assert c[commit.id].factors["time"] == pytest.approx(1 / (1 + 10 / 30), abs=1e-4)
    assert c[commit.id].related_event_ids == [deploy.id]
    assert c[deploy.id].related_event_ids == [commit.id]
    assert c[deploy.id].factors["risk"] >= c[commit.id].factors["risk"]  # it carries the commit's size
    assert "320 lines changed" in " ".join(c[deploy.id].evidence)
    assert [x.event_id for x in ranked[:2]] == [deploy.id, commit.id]
    assert ranked[2].event_id == other.id


def test_risk_signals_combine_as_a_noisy_or_and_degrade_gracefully() -> None:
    bare = ev("bare", "commit", "repo:shop-svc", 5)
    assert change_risk(bare) == (0.0, [])
    risky = ev("risky", "commit", "repo:shop-svc", 5, values={"lines_added": 200, "late_hours": 3},
               labels={"off_hours": "true", "first_time_author": "true"})
    r, why = change_risk(risky)
    assert why == ["200 lines changed", "late check-in", "off-hours", "first-time author"]
    assert r == pytest.approx(1 - (1 - 0.5) * (1 - 0.3) * (1 - 0.2) * (1 - 0.3))
    build = ev("b", "build", "job:shop-build", 5, values={"failed_tests": 3}, labels={"result": "UNSTABLE"})
    r_build, why_build = change_risk(build)
    assert why_build == ["3 failed tests", "result UNSTABLE"]
    assert r_build == pytest.approx(1 - 0.4 * 0.6)
    issue = ev("i", "issue", "project:SHOP", 5, labels={"priority": "Highest", "status": "Done"})
    assert change_risk(issue)[1] == ["priority Highest"]
    assert change_risk(bare, flagged=True)[1] == ["flagged by a detector or rule"]


def test_every_candidate_shows_all_factors_and_the_score_is_their_product() -> None:
    changes = [ev("a", "commit", "repo:shop-svc", 50, values={"lines_added": 40}),
               ev("b", "issue", "project:SHOP", 15, labels={"status": "Done"}),
               ev("c", "config", "service:pay", 20),
               ev("d", "build", "job:shop-build", 30, values={"failed_tests": 1})]
    ranked = rank_changes(changes, graph=GRAPH, affected=["service:shop"], onset=ONSET, anomalies=SHOP_SYMPTOMS)
    assert len(ranked) == 4
    assert [c.rank for c in ranked] == [1, 2, 3, 4]
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    for c in ranked:
        assert tuple(c.factors) == FACTORS
        assert all(0.0 < v <= 1.0 for v in c.factors.values())
        assert c.score == pytest.approx(math.prod(c.factors.values()), abs=1e-6)
        assert c.evidence
        assert c.summary


def test_a_new_log_template_after_the_change_supports_it() -> None:
    first = ev("first", "deploy", "job:shop-deploy", 20)
    second = ev("second", "deploy", "job:shop-deploy", 20, labels={"number": "2"})
    new_template = [("service:shop", ONSET - timedelta(minutes=25))]  # appeared before both: supports neither
    ranked = rank_changes([first, second], graph=GRAPH, affected=["service:shop"], onset=ONSET, new_templates=new_template)
    assert {c.factors["logs"] for c in ranked} == {ScoringParams().logs_none}
    new_template = [("service:shop", ONSET - timedelta(minutes=15))]
    ranked = rank_changes([first, second], graph=GRAPH, affected=["service:shop"], onset=ONSET, new_templates=new_template)
    assert {c.factors["logs"] for c in ranked} == {ScoringParams().logs_new}
    assert any("new log template" in x for x in ranked[0].evidence)


def test_non_change_events_are_not_candidates() -> None:
    log = ev("log", "log", "service:shop", 5, source="es")
    access = ev("acc", "access", "service:shop", 5, source="es")
    assert rank_changes([log, access], graph=GRAPH, affected=["service:shop"], onset=ONSET) == []


def test_unknown_entities_fall_back_to_their_raw_graph_distance() -> None:
    # A host that is not in the graph is unrelated; a service not in the graph is related only to itself.
    host = ev("h", "config", "host:db-1", 5)
    svc = ev("s", "config", "service:ledger", 5)
    ranked = rank_changes([host, svc], graph=GRAPH, affected=["service:ledger"], onset=ONSET)
    assert [c.event_id for c in ranked] == [svc.id]
    assert ranked[0].factors["graph"] == 1.0


def test_production_symptoms_need_a_change_that_reached_production() -> None:
    p = ScoringParams()
    unshipped = ev("unshipped", "commit", "repo:shop-svc", 2, labels={"sha": "a" * 40}, values={"lines_added": 30})
    deploy = ev("deploy", "deploy", "job:shop-deploy", 10)
    build = ev("build", "build", "job:shop-build", 3)
    issue = ev("issue", "issue", "project:SHOP", 1, labels={"status": "Done"})
    prod = [(ONSET, "service:shop", "access")]
    ranked = rank_changes([unshipped, deploy, build, issue], graph=GRAPH, affected=["service:shop"], onset=ONSET,
                          anomalies=prod)
    c = by_name(ranked)
    assert ranked[0].event_id == deploy.id
    assert c[deploy.id].factors["reach"] == 1.0
    # No deploy of shop says what it shipped: whether the commit was deployed is unknown.
    assert c[unshipped.id].factors["reach"] == p.reach_unknown
    assert c[build.id].factors["reach"] == p.reach_not
    assert c[issue.id].factors["reach"] == p.reach_not
    # Once shop's deploys list their commits, a commit that none lists is known not to be deployed.
    tracked = ev("tracked", "deploy", "job:shop-deploy", 10, attrs={"commits": ["c" * 40]})
    ranked = rank_changes([unshipped, tracked], graph=GRAPH, affected=["service:shop"], onset=ONSET, anomalies=prod)
    assert by_name(ranked)[unshipped.id].factors["reach"] == p.reach_not
    # CI symptoms (a build stream) are reached by commits, not by deploys or builds.
    ci = [(ONSET, "job:shop-build", "build")]
    ranked = rank_changes([unshipped, deploy, build], graph=GRAPH, affected=["job:shop-build"], onset=ONSET, anomalies=ci)
    c = by_name(ranked)
    assert ranked[0].event_id == unshipped.id
    assert c[unshipped.id].factors["reach"] == 1.0
    assert c[deploy.id].factors["reach"] == p.reach_not
    assert c[build.id].factors["reach"] == p.reach_not
    # No symptom at all: nothing to reach, the factor is neutral.
    ranked = rank_changes([unshipped, deploy], graph=GRAPH, affected=["service:shop"], onset=ONSET)
    assert {x.factors["reach"] for x in ranked} == {1.0}


def test_a_commit_takes_the_failed_tests_of_the_build_that_built_it() -> None:
    sha = "b" * 40
    commit = ev("c", "commit", "repo:shop-svc", 40, labels={"sha": sha})
    build = ev("b", "build", "job:shop-build", 30, labels={"result": "UNSTABLE", "commit_sha": sha},
               values={"failed_tests": 35})
    ranked = rank_changes([commit, build], graph=GRAPH, affected=["job:shop-build"], onset=ONSET,
                          anomalies=[(ONSET, "job:shop-build", "build")])
    c = by_name(ranked)
    assert "35 failed tests in its build" in " ".join(c[commit.id].evidence)
    assert c[build.id].related_event_ids == [commit.id]


def test_during_an_estimated_drift_time_counts_by_distance_to_its_start() -> None:
    drift = ONSET - timedelta(hours=6)
    at_start = ev("start", "commit", "repo:shop-svc", 6 * 60 + 20)  # 20 min before the estimated start
    inside = ev("inside", "commit", "repo:shop-svc", 3 * 60)  # 3 h after it, before the first anomaly
    after = ev("after", "commit", "repo:shop-svc", -10)  # after the first anomaly
    ranked = rank_changes([inside, after, at_start], graph=GRAPH, affected=["job:shop-build"], onset=drift,
                          first_anomaly=ONSET, anomalies=[(ONSET, "job:shop-build", "build")])
    assert [c.event_id for c in ranked] == [at_start.id, inside.id, after.id]
    c = by_name(ranked)
    assert c[inside.id].factors["time"] == pytest.approx(1 / (1 + 180 / 30), abs=1e-4)
    assert "during the drift" in c[inside.id].evidence[0]
    assert c[after.id].factors["time"] == ScoringParams().after_onset


def test_lateness_follows_the_collectors_label_then_the_hours_to_the_release() -> None:
    def late(**kw: Any) -> bool:
        return "late check-in" in change_risk(ev("c", "commit", "repo:shop-svc", 5, **kw))[1]

    assert late(labels={"late": "true"}, values={"late_hours": 300})
    assert not late(labels={"late": "false"}, values={"late_hours": 2})
    assert not late(labels={"late": "unknown"})
    assert late(values={"late_hours": 2})
    assert not late(values={"late_hours": 300})  # the next release is 12 days away: not late
    assert late(values={"hours_to_release": 1})


def test_new_templates_seen_before_a_change_do_not_move_the_onset() -> None:
    # Regression: a template first seen 40 min before the onset once shadowed the first-anomaly time.
    deploy = ev("d", "deploy", "job:shop-deploy", 10)
    ranked = rank_changes([deploy], graph=GRAPH, affected=["service:shop"], onset=ONSET,
                          new_templates=[("service:shop", ONSET - timedelta(minutes=40))])
    assert ranked[0].factors["time"] == pytest.approx(1 / (1 + 10 / 30), abs=1e-4)


def test_a_merge_carries_the_size_and_signals_of_the_branch_it_merges() -> None:
    def commit(name: str, minutes: float, parents: list[str], lines: float = 0, **labels: str) -> Event:
        return ev(name, "commit", "repo:shop-svc", minutes, labels=labels, values={"lines_added": lines},
                  attrs={"sha": name * 20, "parents": [p * 20 for p in parents]})

    base = commit("a0", 24 * 60 - 1, [])
    branch = [commit("b1", 20 * 60, ["a0"], 400), commit("b2", 15 * 60, ["b1"], 300, first_time_author="true"),
              commit("b3", 10 * 60, ["b2"], 250)]
    small = commit("s1", 4, ["a0"], 37)
    merge = commit("m1", 3, ["s1", "b3"], 0, merge="true")
    build = ev("build", "build", "job:shop-build", 2, attrs={"commits": [merge.attrs["sha"], small.attrs["sha"]]},
               values={"failed_tests": 35})
    ranked = rank_changes([base, *branch, small, merge, build], graph=GRAPH, affected=["job:shop-build"], onset=ONSET,
                          anomalies=[(ONSET, "job:shop-build", "test_run")])
    assert ranked[0].event_id == merge.id
    why = " ".join(ranked[0].evidence)
    assert "merges 3 commits of its branch" in why
    assert "950 lines changed" in why
    assert "first-time author" in why
    assert ranked[1].event_id == small.id
