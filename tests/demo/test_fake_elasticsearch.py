"""The Elasticsearch fake answers as the reference documentation shows, and the official client works."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from elasticsearch import ApiError, AuthenticationException, BadRequestError, Elasticsearch, NotFoundError, helpers

from opsradar.demo.fakes.elasticsearch import ElasticsearchFake

DOCS = [
    {"_id": f"d{i}", "@timestamp": f"2026-01-05T09:{i // 60:02d}:{i % 60:02d}Z", "message": f"line {i}",
     "service.name": "shop" if i % 2 else "pay", "log.level": "error" if i % 5 == 0 else "info", "n": i}
    for i in range(30)
]

# The key sets of the documented responses (Elasticsearch reference: root API, open/close point in
# time, search, bulk, and the error object).
ROOT_VERSION_KEYS = {"number", "build_flavor", "build_type", "build_hash", "build_date", "build_snapshot",
                     "lucene_version", "minimum_wire_compatibility_version", "minimum_index_compatibility_version"}
BULK_ITEM_KEYS = {"_index", "_id", "_version", "result", "_shards", "status", "_seq_no", "_primary_term"}


@pytest.fixture(scope="module")
def server() -> Iterator[ElasticsearchFake]:
    with ElasticsearchFake() as es:
        yield es  # type: ignore[misc]


@pytest.fixture
def fake(server: ElasticsearchFake) -> ElasticsearchFake:
    server.clear()
    server.api_keys = {"k1": "secret"}
    server.users = {"elastic": "changeme"}
    server.index_documents("logs-app-2026.01.05", DOCS)
    return server


@pytest.fixture
def client(fake: ElasticsearchFake) -> Iterator[Elasticsearch]:
    c = Elasticsearch(fake.url, api_key=("k1", "secret"), max_retries=0)
    yield c
    c.close()


def test_root_api_has_the_documented_fields_and_the_product_header(fake: ElasticsearchFake) -> None:
    r = httpx.get(fake.url + "/", auth=("elastic", "changeme"))
    assert r.status_code == 200
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    body = r.json()
    assert set(body) == {"name", "cluster_name", "cluster_uuid", "version", "tagline"}
    assert set(body["version"]) == ROOT_VERSION_KEYS
    assert body["tagline"] == "You Know, for Search"


def test_the_official_client_verifies_the_product_and_reads_info(client: Elasticsearch) -> None:
    info = client.info()
    assert info["version"]["number"].startswith("9.")
    assert info.meta.headers["content-type"].startswith("application/vnd.elasticsearch+json")


def test_client_sends_compatibility_headers_that_are_checked(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    client.search(index="logs-*", query={"match_all": {}})
    req = fake.requests[-1]
    assert "compatible-with=9" in (req.header("accept") or "")
    assert "compatible-with=9" in (req.header("content-type") or "")
    headers = {"Accept": "application/vnd.elasticsearch+json; compatible-with=7"}
    r = httpx.get(fake.url + "/", headers=headers, auth=("elastic", "changeme"))
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "media_type_header_exception"
    r = httpx.post(fake.url + "/_search", content=b"{}", headers={"Content-Type": "text/plain"},
                   auth=("elastic", "changeme"))
    assert r.status_code == 406
    assert r.json() == {"error": "Content-Type header [text/plain] is not supported", "status": 406}


def test_auth_api_key_basic_and_failures_in_security_exception_shape(fake: ElasticsearchFake) -> None:
    assert Elasticsearch(fake.url, basic_auth=("elastic", "changeme")).info()["cluster_name"]
    for kwargs in ({"api_key": ("k1", "wrong")}, {"basic_auth": ("elastic", "nope")}, {}):
        with pytest.raises(AuthenticationException) as info:
            Elasticsearch(fake.url, max_retries=0, **kwargs).info()  # type: ignore[arg-type]
        body = info.value.body
        assert body["status"] == 401
        assert body["error"]["type"] == "security_exception"
        assert body["error"]["root_cause"][0]["type"] == "security_exception"
        assert "ApiKey" in body["error"]["header"]["WWW-Authenticate"]
    r = httpx.get(fake.url + "/")
    assert r.status_code == 401
    assert "missing authentication credentials for REST request [/]" in r.json()["error"]["reason"]
    assert r.headers["www-authenticate"].startswith("Basic")


def test_open_search_and_close_point_in_time_with_search_after(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    opened = client.open_point_in_time(index="logs-*", keep_alive="1m")
    assert set(opened.body) == {"id", "_shards"}
    pit = opened["id"]
    fake.index_documents("logs-app-2026.01.05", [{"@timestamp": "2026-01-05T10:00:00Z", "message": "late"}])
    sort: list[Any] = [{"@timestamp": {"order": "asc", "format": "strict_date_optional_time_nanos"}}, {"_shard_doc": "asc"}]
    seen: list[str] = []
    after: list[Any] | None = None
    while True:
        resp = client.search(pit={"id": pit, "keep_alive": "1m"}, size=7, sort=sort, search_after=after,
                             query={"bool": {"filter": [{"range": {"@timestamp": {"gte": "2026-01-05T09:00:05Z"}}}]}})
        assert {"pit_id", "took", "timed_out", "_shards", "hits"} <= set(resp.body)
        pit = resp["pit_id"]
        hits = resp["hits"]["hits"]
        if not hits:
            break
        for h in hits:
            assert set(h) == {"_index", "_id", "_score", "_source", "sort"}
        seen += [h["_id"] for h in hits]
        after = hits[-1]["sort"]
    # a frozen view: 25 documents from 09:00:05, none of those indexed after the PIT opened
    assert seen == [f"d{i}" for i in range(5, 30)]
    assert after is not None
    assert after[0] == "2026-01-05T09:00:29.000Z"
    assert client.close_point_in_time(id=pit).body == {"succeeded": True, "num_freed": 1}
    assert fake.open_pits() == 0
    with pytest.raises(NotFoundError) as info:
        client.search(pit={"id": pit}, size=1)
    assert info.value.body["error"]["type"] == "search_context_missing_exception"


def test_bool_term_range_and_numeric_sort_values(client: Elasticsearch) -> None:
    resp = client.search(index="logs-*", size=100, sort=[{"@timestamp": "desc"}],
                         query={"bool": {"must": [{"term": {"service.name": "shop"}}],
                                         "filter": [{"range": {"n": {"gte": 10, "lt": 20}}}],
                                         "must_not": [{"term": {"log.level": "error"}}]}})
    ns = [h["_source"]["n"] for h in resp["hits"]["hits"]]
    assert ns == [19, 17, 13, 11]
    # a date sort without a format gives epoch milliseconds, as Elasticsearch does
    assert resp["hits"]["hits"][0]["sort"] == [1767603619000]
    assert resp["hits"]["total"] == {"value": 4, "relation": "eq"}
    assert client.count(index="logs-*", query={"terms": {"log.level": ["error"]}})["count"] == 6


def test_unsupported_queries_and_bad_requests_answer_400_in_the_error_shape(client: Elasticsearch) -> None:
    for query, reason in (({"match": {"message": "x"}}, "query [match] is not supported"),
                          ({"fancy": {}}, "unknown query [fancy]")):
        with pytest.raises(BadRequestError) as info:
            client.search(index="logs-*", query=query)
        body = info.value.body
        assert body["status"] == 400
        assert body["error"]["type"] == "parsing_exception"
        assert reason in body["error"]["root_cause"][0]["reason"]
    with pytest.raises(BadRequestError) as info:
        client.search(index="logs-*", sort=["_shard_doc"])
    assert "cannot be used without [point in time]" in info.value.body["error"]["reason"]
    with pytest.raises(BadRequestError):
        client.search(index="logs-*", size=20_000)


def test_index_patterns_exclusions_and_missing_indices(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    fake.index_documents("logs-audit", [{"@timestamp": "2026-01-05T09:00:00Z", "user.name": "ana"}])
    fake.index_documents("metrics-x", [{"@timestamp": "2026-01-05T09:00:00Z"}])
    assert client.count(index="logs-*")["count"] == 31
    assert client.count(index="logs-*,-logs-audit")["count"] == 30
    assert client.count(index="nothing-*")["count"] == 0
    with pytest.raises(NotFoundError) as info:
        client.search(index="missing")
    assert info.value.body["error"]["type"] == "index_not_found_exception"


def test_ignore_unavailable_and_allow_no_indices(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    assert client.search(index="missing", ignore_unavailable=True, allow_no_indices=True)["hits"]["hits"] == []
    assert client.count(index="missing,logs-*", ignore_unavailable=True)["count"] == 30
    with pytest.raises(NotFoundError) as info:  # the default: a missing concrete index is an error
        client.count(index="missing,logs-*")
    assert info.value.body["error"]["reason"] == "no such index [missing]"
    with pytest.raises(NotFoundError) as info:  # naming no index at all, when that is not allowed
        client.search(index="nothing-*", allow_no_indices=False)
    assert info.value.body["error"]["type"] == "index_not_found_exception"
    with pytest.raises(NotFoundError):
        client.open_point_in_time(index="missing", keep_alive="1m")
    pit = client.open_point_in_time(index="missing", keep_alive="1m", ignore_unavailable=True)
    assert pit["_shards"]["total"] == 0
    assert client.search(pit={"id": pit["id"]}, sort=["_shard_doc"])["hits"]["hits"] == []
    client.close_point_in_time(id=pit["id"])
    r = httpx.get(fake.url + "/logs-*/_count", params={"ignore_unavailable": "maybe"}, auth=("elastic", "changeme"))
    assert r.status_code == 400
    assert r.json()["error"]["reason"] == "Failed to parse value [maybe] as only [true] or [false] are allowed."


def test_a_date_range_filter_finds_what_a_full_scan_finds(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    fake.clear()
    docs: list[dict[str, Any]] = [{"_id": f"a{i}", "@timestamp": f"2026-01-05T09:{i:02d}:00Z", "n": i} for i in range(40)]
    docs += [{"_id": "millis", "@timestamp": 1767604500000}, {"_id": "list", "@timestamp": ["2026-01-05T09:10:00Z"]},
             {"_id": "none", "@timestamp": None}, {"_id": "absent"}, {"_id": "junk", "@timestamp": "soon"},
             {"_id": "offset", "@timestamp": "2026-01-05T10:15:00+01:00"}]
    fake.index_documents("logs-a", docs[:25])
    fake.index_documents("logs-b", docs[25:])
    fake.index_documents("logs-a", [{"_id": "a3", "@timestamp": "2026-01-05T09:33:30Z"}])  # moved by an update
    client.bulk(operations=[{"delete": {"_index": "logs-a", "_id": "a4"}}])
    found: dict[str, int] = {}
    for bounds in ({"gte": "2026-01-05T09:10:00Z"}, {"gt": "2026-01-05T09:10:00Z", "lt": "2026-01-05T09:20:00Z"},
                   {"lte": "2026-01-05T09:15:00Z"}, {"gte": "2026-01-05T09:33:30Z", "lte": "2026-01-05T09:33:30Z"},
                   {"format": "strict_date_optional_time_nanos"}, {"gt": "2027-01-01T00:00:00Z"}):
        rng = {"range": {"@timestamp": bounds}}
        sort: list[Any] = [{"@timestamp": "asc"}, {"_id": "asc"}]
        fast = client.search(index="logs-*", query={"bool": {"filter": [rng]}}, sort=sort, size=100)
        scan = client.search(index="logs-*", query={"bool": {"should": [rng], "minimum_should_match": 1}},
                             sort=sort, size=100)  # not a filter: every document is tested
        assert [h["_id"] for h in fast["hits"]["hits"]] == [h["_id"] for h in scan["hits"]["hits"]], bounds
        assert client.count(index="logs-*", query=rng)["count"] == len(scan["hits"]["hits"])
        found[str(bounds)] = len(scan["hits"]["hits"])
    # the epoch-millis and offset dates count; a list, a null, a missing field and junk never match
    assert list(found.values()) == [33, 11, 16, 1, 41, 0]


def test_bulk_ndjson_through_the_client_helper_and_raw(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    ok, errors = helpers.bulk(client, [{"_index": "logs-new", "_id": str(i), "_source": {"@timestamp": "2026-01-06T00:00:00Z", "i": i}}
                                       for i in range(5)])
    assert (ok, errors) == (5, [])
    assert fake.count("logs-new") == 5
    body = "\n".join([json.dumps({"create": {"_index": "logs-new", "_id": "0"}}), json.dumps({"i": 0}),
                      json.dumps({"index": {"_index": "logs-new"}}), json.dumps({"i": 9})]) + "\n"
    r = httpx.post(fake.url + "/_bulk", content=body, headers={"Content-Type": "application/x-ndjson"},
                   auth=("elastic", "changeme"))
    resp = r.json()
    assert set(resp) == {"took", "errors", "items"}
    assert resp["errors"] is True
    conflict, created = resp["items"][0]["create"], resp["items"][1]["index"]
    assert conflict["status"] == 409
    assert conflict["error"]["type"] == "version_conflict_engine_exception"
    assert set(created) == BULK_ITEM_KEYS
    assert created["status"] == 201
    assert created["result"] == "created"


def test_injected_429_carries_retry_after_and_the_es_error(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    fake.fail_next(429, retry_after=3)
    with pytest.raises(ApiError) as info:
        client.search(index="logs-*")
    assert info.value.meta.status == 429
    assert info.value.meta.headers["retry-after"] == "3"
    assert info.value.body["error"]["type"] == "es_rejected_execution_exception"
    assert client.search(index="logs-*")["hits"]["total"]["value"] == 30


def test_python_api_for_the_world(fake: ElasticsearchFake) -> None:
    ids = fake.index_documents("logs-x", [{"_id": "a", "v": 1}, {"v": 2}])
    assert ids[0] == "a"
    assert len(ids) == 2
    fake.index_documents("logs-x", [{"_id": "a", "v": 3}])  # same id replaces
    assert sorted(d["v"] for d in fake.documents("logs-x")) == [2, 3]
    assert "logs-x" in fake.indices()
    key = fake.add_api_key("world", "pw")
    assert Elasticsearch(fake.url, api_key=key).count(index="logs-x")["count"] == 2
    fake.delete_index("logs-x")
    assert fake.count("logs-x") == 0


# Response examples as the Elasticsearch reference shows them (values shortened); the fake's answers
# must have the same shape: the same keys, recursively, with values of the same JSON types.
DOC_EXAMPLES: dict[str, Any] = {
    "root": {"name": "instance-0000000000", "cluster_name": "my_cluster", "cluster_uuid": "5QaxoN0pRZuOmWSxstBBwQ",
             "version": {"build_date": "2024-02-01T13:07:13.727175297Z", "minimum_wire_compatibility_version": "7.17.0",
                         "build_hash": "6185ba65d27469afabc9bc951cded6c17c21e3f3", "number": "8.12.1",
                         "lucene_version": "9.9.2", "minimum_index_compatibility_version": "7.0.0",
                         "build_flavor": "default", "build_snapshot": False, "build_type": "docker"},
             "tagline": "You Know, for Search"},
    "open_pit": {"id": "46ToAwMDaWR5BXV1aWQyKwZub2RlXzMAAAAAAAAAACoBYwADaWR4BXV1aWQxAgZub2RlXzEAAAAAAAAAAAEBYQADaWR5",
                 "_shards": {"total": 10, "successful": 10, "skipped": 0, "failed": 0}},
    "close_pit": {"succeeded": True, "num_freed": 3},
    "search_pit": {"pit_id": "46ToAwMDaWR5BXV1aWQyKwZub2Rl", "took": 17, "timed_out": False,
                   "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                   "hits": {"total": {"value": 10000, "relation": "gte"}, "max_score": None,
                            "hits": [{"_index": "my-index-000001", "_id": "FaslK3QBySSL_rrj9zM5", "_score": None,
                                      "_source": {}, "sort": ["2021-05-20T05:30:04.832Z", 4294967298]}]}},
    "bulk": {"took": 30, "errors": False,
             "items": [{"index": {"_index": "test", "_id": "1", "_version": 1, "result": "created",
                                  "_shards": {"total": 2, "successful": 1, "failed": 0}, "status": 201,
                                  "_seq_no": 0, "_primary_term": 1}}]},
    "error": {"error": {"root_cause": [{"type": "index_not_found_exception", "reason": "no such index [x]"}],
                        "type": "index_not_found_exception", "reason": "no such index [x]"}, "status": 404},
}


def _shape(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items() if k not in ("_source", "resource.type", "resource.id", "index_uuid", "index")}
    if isinstance(doc, list):
        return [_shape(doc[0])] if doc else []
    if isinstance(doc, bool) or doc is None:
        return type(doc).__name__
    if isinstance(doc, int | float):
        return "number"
    return type(doc).__name__


def test_responses_have_the_shape_of_the_documented_examples(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    assert _shape(client.info().body) == _shape(DOC_EXAMPLES["root"])
    opened = client.open_point_in_time(index="logs-*", keep_alive="1m").body
    assert _shape(opened) == _shape(DOC_EXAMPLES["open_pit"])
    sort: list[Any] = [{"@timestamp": {"order": "asc", "format": "strict_date_optional_time_nanos"}}, {"_shard_doc": "asc"}]
    found = client.search(pit={"id": opened["id"]}, size=1, sort=sort, track_total_hits=5).body
    assert _shape(found) == _shape(DOC_EXAMPLES["search_pit"])
    assert _shape(client.close_point_in_time(id=found["pit_id"]).body) == _shape(DOC_EXAMPLES["close_pit"])
    bulk = client.bulk(operations=[{"index": {"_index": "test", "_id": "1"}}, {"a": 1}]).body
    assert _shape(bulk) == _shape(DOC_EXAMPLES["bulk"])
    with pytest.raises(NotFoundError) as info:
        client.search(index="x")
    assert _shape(info.value.body) == _shape(DOC_EXAMPLES["error"])


def test_index_and_document_apis_through_the_client(fake: ElasticsearchFake, client: Elasticsearch) -> None:
    assert client.indices.create(index="audit-1")["acknowledged"] is True
    assert client.indices.exists(index="audit-1")
    assert not client.indices.exists(index="audit-2")
    created = client.index(index="audit-1", id="a", document={"@timestamp": "2026-01-05T09:00:00Z", "user.name": "ana"})
    assert created["result"] == "created"
    assert client.get(index="audit-1", id="a")["_source"]["user.name"] == "ana"
    assert client.count(index="audit-1")["count"] == 1
    with pytest.raises(BadRequestError) as info:
        client.search(index="audit-1", q="user.name:ana")
    assert info.value.body["error"]["type"] == "parsing_exception"
    client.indices.delete(index="audit-1")
    assert "audit-1" not in fake.indices()
