"""The Elasticsearch collector against the loopback fake (and a real cluster when one is given)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opsradar.collectors.base import run_once
from opsradar.collectors.elasticsearch import ElasticsearchCollector, hit_to_event
from opsradar.collectors.registry import build_collector
from opsradar.collectors.scheduler import Scheduler
from opsradar.config import ElasticsearchSource
from opsradar.demo.fakes.elasticsearch import ElasticsearchFake
from opsradar.errors import CollectorError, SourceAuthError, SourceUnavailable
from opsradar.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def app_log(i: int, *, service: str = "shop", minutes: int = 0) -> dict[str, Any]:
    ts = T0 + timedelta(minutes=minutes, seconds=i)
    return {"_id": f"app-{minutes}-{i}", "@timestamp": ts.isoformat().replace("+00:00", "Z"),
            "message": f"order {1000 + i} paid in {i} ms", "log.level": "INFO", "service.name": service,
            "host.name": f"{service}-1", "event.dataset": f"{service}.app"}


@pytest.fixture(scope="module")
def server() -> Iterator[ElasticsearchFake]:
    with ElasticsearchFake() as es:
        yield es  # type: ignore[misc]


@pytest.fixture
def fake(server: ElasticsearchFake, monkeypatch: pytest.MonkeyPatch) -> ElasticsearchFake:
    server.clear()
    server.api_keys, server.users = {}, {}
    monkeypatch.setenv("TEST_ES_KEY", server.add_api_key("opsradar", "s3cret"))
    return server


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store("sqlite://")
    yield s
    s.close()


def source(fake: ElasticsearchFake, **kw: Any) -> ElasticsearchSource:
    args: dict[str, Any] = {"url": fake.url, "index": "logs-*", "api_key_env": "TEST_ES_KEY", "batch_size": 10,
                            "overlap": "1m"}
    args.update(kw)
    return ElasticsearchSource(**args)


def test_incremental_pull_across_two_runs_with_pagination_no_gaps_no_duplicates(fake: ElasticsearchFake, store: Store) -> None:
    fake.index_documents("logs-shop", [app_log(i) for i in range(35)])
    col = ElasticsearchCollector("logs", source(fake))
    first = run_once(col, store)
    assert (first.new, first.batches) == (35, 4)  # pages of 10: past one page
    cursor = store.get_cursor("logs")
    assert cursor["ts"] == "2026-03-02T09:00:34Z"
    assert cursor["id"] == "logs-shop/app-0-34"
    # new documents later, and one that is late but within the overlap
    fake.index_documents("logs-shop", [app_log(i, minutes=5) for i in range(7)] + [app_log(99, minutes=-1)])
    second = run_once(col, store)
    assert second.new == 8
    assert store.count_events(source="logs") == 43
    assert run_once(col, store).new == 0  # the overlap re-reads, dedup by id keeps one copy
    ids = [e.id for e in store.iter_events()]
    assert len(ids) == len(set(ids)) == 43
    assert fake.open_pits() == 0  # every point in time was closed


@pytest.mark.parametrize("index", ["logs-shop", "logs-*", "logs-shop,logs-pay"])
def test_indices_that_do_not_exist_yet_hold_no_documents(fake: ElasticsearchFake, store: Store, index: str) -> None:
    col = ElasticsearchCollector("logs", source(fake, index=index))
    assert run_once(col, store).new == 0  # not an error: nothing was written yet
    assert store.get_cursor("logs") is None
    fake.index_documents("logs-shop", [app_log(i) for i in range(3)])
    assert run_once(col, store).new == 3
    assert run_once(col, store).new == 0


def test_a_window_under_a_page_is_one_search_and_a_fuller_one_uses_a_point_in_time(fake: ElasticsearchFake,
                                                                                  store: Store) -> None:
    fake.index_documents("logs-shop", [app_log(i) for i in range(4)])
    col = ElasticsearchCollector("logs", source(fake))
    before = len(fake.requests)
    assert run_once(col, store).new == 4
    assert run_once(col, store).new == 0  # the overlap re-reads the 4, deduplicated
    polls = fake.requests[before:]
    assert [(r.method, r.path) for r in polls] == [("POST", "/logs-*/_search")] * 2
    assert all(r.arg("ignore_unavailable") == "true" for r in polls)
    fake.index_documents("logs-shop", [app_log(i, minutes=2) for i in range(12)])
    before = len(fake.requests)
    result = run_once(col, store)
    assert (result.new, result.batches) == (12, 2)  # 16 in the window: read through a point in time
    assert [r.path for r in fake.requests[before:]] == ["/logs-*/_search", "/logs-*/_pit", "/_search", "/_search", "/_pit"]
    assert fake.open_pits() == 0


def test_a_crash_between_fetch_and_commit_then_resume_loses_nothing(fake: ElasticsearchFake, store: Store) -> None:
    fake.index_documents("logs-shop", [app_log(i) for i in range(30)])
    col = ElasticsearchCollector("logs", source(fake))
    real_add = store.add_events
    calls = {"n": 0}

    def crashing_add(events: Any, **kw: Any) -> Any:
        if "conn" not in kw:  # the outer call of a batch (add_events calls itself inside its transaction)
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("process killed after fetching the second page, before committing it")
        return real_add(events, **kw)

    store.add_events = crashing_add  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        run_once(col, store)
    store.add_events = real_add  # type: ignore[method-assign]
    assert store.count_events() == 10  # only the first batch was committed, with its cursor
    assert store.get_cursor("logs")["id"] == "logs-shop/app-0-9"
    resumed = run_once(col, store)
    assert resumed.new == 20
    assert store.count_events() == 30


def test_wrong_credentials_give_a_clear_error_while_another_source_carries_on(fake: ElasticsearchFake, store: Store,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake.index_documents("logs-shop", [app_log(i) for i in range(5)])
    monkeypatch.setenv("BAD_ES_KEY", "b3BzcmFkYXI6d3Jvbmc=")  # opsradar:wrong
    good = ElasticsearchCollector("good", source(fake))
    bad = ElasticsearchCollector("bad", source(fake, api_key_env="BAD_ES_KEY"))
    sched = Scheduler(store)
    sched.add(bad, interval=timedelta(minutes=1), seed=1)
    sched.add(good, interval=timedelta(minutes=1), seed=1)
    results = sched.run_due()
    err = results["bad"]
    assert isinstance(err, SourceAuthError)
    assert "401 security_exception: unable to authenticate" in str(err)
    assert "check api_key_env" in str(err)
    assert results["good"].new == 5  # type: ignore[union-attr]
    assert sched.health()["bad"].status == "failing"
    assert sched.health()["good"].status == "ok"


def test_429_retry_after_is_honoured_within_the_run(fake: ElasticsearchFake, store: Store) -> None:
    fake.index_documents("logs-shop", [app_log(i) for i in range(25)])
    slept: list[float] = []
    col = ElasticsearchCollector("logs", source(fake), sleep=slept.append)
    fake.fail_next(429, retry_after=2, path="/_search", times=2)
    result = run_once(col, store)
    assert slept == [2.0, 2.0]
    assert result.new == 25


def test_a_long_retry_after_ends_the_run_for_the_scheduler(fake: ElasticsearchFake, store: Store) -> None:
    fake.index_documents("logs-shop", [app_log(i) for i in range(5)])
    slept: list[float] = []
    col = ElasticsearchCollector("logs", source(fake, max_retry_wait="30s"), sleep=slept.append)
    fake.fail_next(503, retry_after=120)
    with pytest.raises(SourceUnavailable) as info:
        run_once(col, store)
    assert info.value.retry_after == 120.0
    assert slept == []
    assert "503 cluster_block_exception" in str(info.value)
    assert run_once(col, store).new == 5  # and the next run goes through


def test_malformed_records_are_rejected_with_the_reason_and_the_rest_kept(fake: ElasticsearchFake, store: Store) -> None:
    docs = [app_log(i) for i in range(4)]
    docs.append({"_id": "orphan", "@timestamp": "2026-03-02T09:00:10Z", "message": "who am I"})
    docs.append({"_id": "badstatus", "@timestamp": "2026-03-02T09:00:11Z", "service.name": "shop",
                 "event.dataset": "nginx.access", "http.response.status_code": "teapot"})
    fake.index_documents("logs-shop", docs)
    result = run_once(ElasticsearchCollector("logs", source(fake)), store)
    assert result.new == 4
    reasons = {r.record_id: r.reason for r in result.rejected}
    assert set(reasons) == {"logs-shop/orphan", "logs-shop/badstatus"}
    assert "no entity" in reasons["logs-shop/orphan"]
    assert "http.response.status_code must be a number, got 'teapot'" in reasons["logs-shop/badstatus"]


def test_log_access_and_audit_events_and_templates(fake: ElasticsearchFake, store: Store) -> None:
    fake.index_documents("logs-mixed", [
        {"_id": "1", "@timestamp": "2026-03-02T09:00:00Z", "service": {"name": "shop"}, "log": {"level": "WARN"},
         "host": {"name": "shop-1"}, "message": "cache miss for user 17"},
        {"_id": "2", "@timestamp": "2026-03-02T09:00:01Z", "service.name": "shop", "message": "cache miss for user 42",
         "event": {"duration": 31_000_000}},
        {"_id": "3", "@timestamp": "2026-03-02T09:00:02Z", "service.name": "shop", "event.dataset": "nginx.access",
         "url.path": "/api/orders/123", "http.request.method": "get", "http.response.status_code": 503,
         "event.duration": 250_000_000, "source.ip": "10.0.0.9"},
        {"_id": "4", "@timestamp": "2026-03-02T09:00:03Z", "service.name": "shop", "event.category": ["iam"],
         "user.name": "ana", "event.action": "role-granted", "event.outcome": "success",
         "orchestrator.resource.name": "shop-db"},
    ])
    result = run_once(ElasticsearchCollector("logs", source(fake)), store, keep_new_events=True)
    by_id = {e.attrs.get("message") or e.kind: e for e in result.new_events}
    log1, log2 = by_id["cache miss for user 17"], by_id["cache miss for user 42"]
    assert log1.kind == "log"
    assert log1.entity == "service:shop"
    assert log1.labels["level"] == "warn"
    assert log1.labels["host"] == "shop-1"
    assert log1.labels["template_id"] == log2.labels["template_id"]  # same template, different user id
    assert log1.values == {}
    assert log2.values == {"duration_ms": 31.0}  # what the line measured (ECS event.duration, ns)
    assert "<*>" in log1.attrs["template"]
    access = by_id["access"]
    assert access.labels == {"service": "shop", "path": "/api/orders/{id}", "method": "GET", "status_class": "5xx"}
    assert access.values == {"status": 503.0, "duration_ms": 250.0}
    audit = by_id["audit"]
    assert audit.entity == "user:ana"
    assert audit.labels == {"user": "ana", "resource": "shop-db", "action": "role-granted", "outcome": "success",
                            "service": "shop"}
    assert {e.source for e in result.new_events} == {"logs"}


def test_field_map_reads_non_ecs_documents() -> None:
    hit = {"_index": "app", "_id": "x", "_source": {"time": "2026-03-02T09:00:00.123456789Z", "app": "pay",
                                                    "severity": "ERROR", "msg": "boom"}}
    ev = hit_to_event(hit, source_name="logs", field_map={"@timestamp": "time", "service.name": "app",
                                                          "log.level": "severity", "message": "msg"})
    assert (ev.kind, ev.entity, ev.labels["level"], ev.attrs["message"]) == ("log", "service:pay", "error", "boom")
    assert ev.ts == datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)


def test_the_extra_query_and_until_bound_the_pull(fake: ElasticsearchFake, store: Store) -> None:
    fake.index_documents("logs-shop", [app_log(i) for i in range(10)] + [app_log(i, service="pay") for i in range(10, 20)])
    col = ElasticsearchCollector("logs", source(fake, query={"term": {"service.name": "pay"}}))
    until = T0 + timedelta(seconds=15)
    assert run_once(col, store, until=until).new == 5
    assert {e.entity for e in store.iter_events()} == {"service:pay"}


def test_an_unsupported_query_is_a_clear_error(fake: ElasticsearchFake, store: Store) -> None:
    fake.index_documents("logs-shop", [app_log(0)])
    col = ElasticsearchCollector("logs", source(fake, query={"match": {"message": "x"}}))
    with pytest.raises(CollectorError) as info:
        run_once(col, store)
    assert "400 parsing_exception" in str(info.value)
    assert "check query and field_map" in str(info.value)


def test_the_registry_builds_the_collector(fake: ElasticsearchFake) -> None:
    col = build_collector("logs", source(fake))
    assert isinstance(col, ElasticsearchCollector)


ES_URL = os.environ.get("OPSRADAR_TEST_ES_URL")


@pytest.mark.skipif(not ES_URL, reason="OPSRADAR_TEST_ES_URL is not set: no real Elasticsearch to test against")
def test_against_a_real_elasticsearch(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from elasticsearch import Elasticsearch, helpers

    assert ES_URL is not None
    kw: dict[str, Any] = {}
    if os.environ.get("OPSRADAR_TEST_ES_API_KEY"):
        kw["api_key"] = os.environ["OPSRADAR_TEST_ES_API_KEY"]
        monkeypatch.setenv("REAL_ES_KEY", os.environ["OPSRADAR_TEST_ES_API_KEY"])
    index = f"opsradar-test-{uuid.uuid4().hex[:8]}"
    client = Elasticsearch(ES_URL, **kw)
    try:
        helpers.bulk(client, [{"_index": index, "_id": d.pop("_id"), "_source": d} for d in
                              [app_log(i) for i in range(25)]], refresh=True)
        cfg = ElasticsearchSource(url=ES_URL, index=index, batch_size=10,
                                  api_key_env="REAL_ES_KEY" if kw else None)
        col = ElasticsearchCollector("real", cfg)
        assert run_once(col, store).new == 25
        assert run_once(col, store).new == 0
        col.close()
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)
        client.close()


def test_basic_auth_from_the_config(fake: ElasticsearchFake, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add_user("collector", "pw")
    monkeypatch.setenv("TEST_ES_PASSWORD", "pw")
    fake.index_documents("logs-shop", [app_log(i) for i in range(3)])
    cfg = source(fake, api_key_env=None, user="collector", password_env="TEST_ES_PASSWORD")
    assert run_once(ElasticsearchCollector("logs", cfg), store).new == 3
    assert (fake.requests[-1].header("authorization") or "").startswith("Basic ")
