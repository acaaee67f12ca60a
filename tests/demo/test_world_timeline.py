"""The simulated world's timeline: seeded, with rhythm, modest volumes, and consistent ground truth."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from datetime import timedelta

import pytest

from opsradar.demo.scenario import INCIDENT_TYPES, Scenario, load_scenario
from opsradar.demo.timeline import INDICES, Timeline, generate
from opsradar.errors import ConfigError


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("default")


_TIMELINES: dict[int, Timeline] = {}


@pytest.fixture(scope="module", params=[1, 2, 7], ids=lambda s: f"seed{s}")
def tl(request: pytest.FixtureRequest, scenario: Scenario) -> Timeline:
    """The default world with its own seed, the held-out seed 2, and another: every check holds for each."""
    seed = request.param
    if seed not in _TIMELINES:
        _TIMELINES[seed] = generate(scenario, seed=seed)
    return _TIMELINES[seed]


@pytest.fixture(scope="module")
def tl2(scenario: Scenario) -> Timeline:
    return generate(scenario, seed=2)


def test_default_scenario_has_every_incident_type_and_a_modest_size(scenario: Scenario, tl: Timeline) -> None:
    assert sorted({i.type for i in scenario.incidents}) == sorted(INCIDENT_TYPES)
    assert 4 <= len(scenario.services) <= 6
    assert 3 <= scenario.days <= 5
    counts = tl.counts()
    total = counts["commits"] + counts["builds"] + counts["issues"] + counts["issue_updates"] + counts["docs"]
    assert 3_000 <= total <= 40_000, counts
    for index in INDICES.values():
        assert counts[f"docs.{index}"] > 0
    assert counts["deploys"] > 5
    assert counts["tags"] >= len(scenario.services)


def test_same_seed_same_world_other_seed_other_background_and_timings(scenario: Scenario, tl2: Timeline) -> None:
    tl = generate(scenario)
    assert generate(scenario).digest() == tl.digest()
    assert tl2.digest() != tl.digest()
    gt1, gt2 = tl.ground_truth, tl2.ground_truth
    assert sorted(i.id for i in gt1.incidents) == sorted(i.id for i in gt2.incidents)
    starts1 = {i.id: i.start for i in gt1.incidents}
    starts2 = {i.id: i.start for i in gt2.incidents}
    assert sum(starts1[k] != starts2[k] for k in starts1) >= len(starts1) - 1
    shas1 = {r.sha for i in gt1.incidents for r in i.root_cause if r.sha}
    shas2 = {r.sha for i in gt2.incidents for r in i.root_cause if r.sha}
    assert shas1
    assert not shas1 & shas2


def test_incidents_start_inside_their_windows_and_apart(scenario: Scenario, tl2: Timeline) -> None:
    gt = tl2.ground_truth
    for spec in scenario.incidents:
        inc = gt.incident(spec.id)
        assert scenario.start + spec.window[0] <= inc.start <= scenario.start + spec.window[1]
    starts = sorted(i.start for i in gt.incidents)
    assert all(b - a >= scenario.min_gap for a, b in itertools.pairwise(starts))


def test_daily_and_weekly_rhythm(tl: Timeline) -> None:
    access = [d for d in tl.docs if d.index == INDICES["access"] and d.ts.weekday() < 5]
    by_hour = Counter(d.ts.hour for d in access)
    day = sum(by_hour[h] for h in range(10, 16))
    night = sum(by_hour[h] for h in range(1, 7))
    assert day > 3 * night
    commits = [c for c in tl.commits if c.committed >= tl.start]
    weekend = sum(c.committed.weekday() >= 5 for c in commits)
    weekday = len(commits) - weekend
    assert weekday > 5 * max(1, weekend)
    night_commits = [c for c in commits if c.committed.hour < 6]
    assert len(night_commits) <= 1  # people commit in working hours (the late commit is at 21-23h)


def test_bad_deploy_ground_truth_names_the_deploy_and_its_commit(tl: Timeline) -> None:
    inc = tl.ground_truth.incident("bad-deploy")
    deploy_ref = next(r for r in inc.root_cause if r.kind == "deploy")
    commit_ref = next(r for r in inc.root_cause if r.kind == "commit")
    build = next(b for b in tl.builds if b.job == deploy_ref.job and b.number == deploy_ref.number)
    assert build.deploy
    assert build.commit_sha == commit_ref.sha
    assert any(c.sha == commit_ref.sha and c.repo == commit_ref.repo for c in tl.commits)
    rollback = next(b for b in tl.builds if b.job == deploy_ref.job and b.start > build.start)
    assert rollback.params.get("ROLLBACK") == "true"
    assert rollback.commit_sha not in (None, commit_ref.sha)
    assert rollback.end <= inc.end + timedelta(minutes=1)
    assert build.end <= inc.start + timedelta(minutes=1)
    errors = [d for d in tl.docs if d.index == INDICES["app"] and d.source["service"]["name"] == "checkout"
              and d.source["log"]["level"] == "error"]
    during = sum(inc.start <= d.ts <= inc.end for d in errors)
    assert during > 10 * max(1, len(errors) - during) * (inc.end - inc.start) / (tl.end - tl.start)
    slow = [d.source["event"]["duration"] for d in tl.docs if d.index == INDICES["access"]
            and d.source["service"]["name"] == "checkout" and inc.start <= d.ts < inc.end]
    normal = [d.source["event"]["duration"] for d in tl.docs if d.index == INDICES["access"]
              and d.source["service"]["name"] == "checkout" and d.ts < inc.start - timedelta(hours=1)]
    assert sorted(slow)[len(slow) // 2] > 3 * sorted(normal)[len(normal) // 2]
    assert {"app-logs", "access-logs", "jenkins", "jira"} <= set(inc.sources)


def test_build_creep_test_failures_and_late_commit(tl: Timeline) -> None:
    creep = tl.ground_truth.incident("build-creep")
    durations = [b.duration_s for b in sorted(tl.builds, key=lambda b: b.start)
                 if b.job == "search-build" and b.result != "FAILURE"]
    before = [b.duration_s for b in tl.builds if b.job == "search-build" and b.start < creep.start and b.result != "FAILURE"]
    late = [b.duration_s for b in tl.builds if b.job == "search-build" and b.start > creep.end - timedelta(hours=2)
            and b.result != "FAILURE"]
    assert len(durations) > 30
    assert late
    assert statistics.median(late) > 2 * statistics.median(before)  # growth 2.5 at the end

    tf = tl.ground_truth.incident("test-failures")
    merge = next(c for c in tl.commits if c.sha == tf.root_cause[0].sha)
    assert len(merge.parents) == 2
    fix = next(c for c in tl.commits if c.repo == "payments-svc" and c.message.startswith("Fix refund"))
    failing = [b for b in tl.builds if b.job == "payments-build" and tf.start <= b.start < fix.committed and b.tests]
    assert len(failing) >= 4
    assert all(b.tests and b.tests.failed >= 30 for b in failing)
    after = [b for b in tl.builds if b.job == "payments-build" and fix.committed <= b.start and b.tests]
    assert after
    assert after[0].tests
    assert after[0].tests.failed <= 1

    llc = tl.ground_truth.incident("late-large-commit")
    big = next(c for c in tl.commits if c.sha == llc.root_cause[0].sha)
    assert len(big.changed) >= 50
    assert big.committed.hour >= 21
    tag = next(t for t in tl.tags if t.name == "v2.0.0")
    assert timedelta(0) < tag.ts - big.committed <= timedelta(hours=1)
    assert tag.target == big.cid


def test_security_flood_leak_and_storm_signals(tl: Timeline) -> None:
    sa = tl.ground_truth.incident("sensitive-access")
    reads = [d for d in tl.docs if d.index == INDICES["audit"] and d.source["user"]["name"] == "tmp-contractor"]
    assert len(reads) >= 50
    assert all(sa.start <= d.ts <= sa.end for d in reads)
    assert sa.start.hour < 6
    assert not sa.root_cause
    others = [d for d in tl.docs if d.index == INDICES["audit"] and d.source["labels"]["repository"] == "secrets-config"
              and d.source["user"]["name"] != "tmp-contractor"]
    assert {d.source["user"]["name"] for d in others} <= {"gus", "hana"}

    flood = tl.ground_truth.incident("request-flood")
    hits = [d for d in tl.docs if d.index == INDICES["access"] and d.source["url"]["path"] == "/api/v1/search"]
    per_min_flood = sum(flood.start <= d.ts < flood.end for d in hits) / ((flood.end - flood.start).total_seconds() / 60)
    per_min_normal = len(hits) / ((tl.end - tl.start).total_seconds() / 60)
    assert per_min_flood > 20 * per_min_normal

    leak = tl.ground_truth.incident("memory-leak")
    gc = [d for d in tl.docs if d.index == INDICES["app"] and d.source["service"]["name"] == "inventory"
          and d.source["log"]["logger"].endswith(".gc") and leak.start <= d.ts < leak.end]
    heap = [d.source["jvm"]["memory"]["heap"]["used"]["pct"] for d in gc]
    assert heap[-1] > 0.85 > 0.6 > heap[0]
    assert any("OutOfMemoryError" in d.source["message"] for d in tl.docs if leak.end - timedelta(minutes=5) <= d.ts <= leak.end)

    storm = tl.ground_truth.incident("alert-storm")
    assert len(storm.services) >= 3
    assert len(storm.sources) >= 4
    assert storm.root_cause
    erroring = {d.source["service"]["name"] for d in tl.docs if d.index == INDICES["app"]
                and d.source["log"]["level"] == "error" and storm.start <= d.ts <= storm.end}
    assert set(storm.services) <= erroring


def test_scenario_errors_name_the_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from opsradar.demo.scenario import scenario_path

    text = scenario_path("default").read_text()
    text = text.replace("service: checkout\n    window", "service: nope\n    window")
    text = text.replace("depends_on: [checkout, search, inventory, auth]", "depends_on: [ghost]")
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(p))
    msg = str(exc.value)
    assert "unknown service 'nope'" in msg
    assert "unknown service 'ghost'" in msg
    assert "bad.yaml" in msg
    # field errors come with their line and path (the incident type tag left out)
    text = scenario_path("default").read_text().replace("window: [2d01h, 2d04h]", "window: [2d04h, 2d01h]")
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(p))
    line = text.splitlines().index("  - id: sensitive-access") + 1
    assert f"bad.yaml:{line}: incidents[2]: window end 2 days, 1:00:00 is before its start 2 days, 4:00:00" in str(exc.value)


def test_size_knob_scales_the_background(scenario: Scenario) -> None:
    small = generate(scenario.with_changes(days=1.0, incidents=[]))
    big = generate(scenario.with_changes(days=1.0, incidents=[], volume={**scenario.volume.model_dump(), "scale": 3.0}))
    assert big.counts()["docs"] > 2.2 * small.counts()["docs"]


def test_flaky_tests_are_a_few_known_ones(tl: Timeline) -> None:
    windows = [(i.start, i.end) for i in tl.ground_truth.incidents]
    flaky: dict[str, set[str]] = {}
    for b in tl.builds:
        if b.tests and b.tests.failed and not any(a <= b.start <= e for a, e in windows):
            flaky.setdefault(b.job, set()).update(case for _, case, _ in b.tests.failures)
    assert flaky
    assert all(len(cases) <= 2 for cases in flaky.values()), flaky


def test_the_compact_scenario_packs_every_incident_type_into_three_days(scenario: Scenario) -> None:
    compact = load_scenario("compact")
    assert sorted({i.type for i in compact.incidents}) == sorted(INCIDENT_TYPES)
    assert compact.days == 3
    assert compact.services == scenario.services
    tl = generate(compact, seed=2)
    assert all(tl.start < i.start and i.end < tl.end for i in tl.ground_truth.incidents)
    assert tl.counts()["docs"] < 0.7 * generate(scenario, seed=2).counts()["docs"]
