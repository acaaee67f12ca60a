"""The HTTP API without Ray: the same app, on an in-process pipeline."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from opsradar.config import parse_config
from opsradar.serving.api import create_app
from opsradar.serving.auth import TokenAuth
from opsradar.serving.operations import LocalOperations
from opsradar.serving.pipeline import Pipeline
from opsradar.store import Store

ROOT = Path(__file__).parents[2]
TOKENS = {"reader": "r-token-123", "operator": "o-token-123", "rule-author": "ra-token-123", "admin": "a-token-123"}
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    cfg = parse_config(
        "entities:\n  services:\n    shop: {jobs: [shop-build], es_services: [shop]}\n"
        "detectors: {warmup: 20}\nslack: {enabled: false}\n"
    )
    store = Store(f"sqlite:///{tmp_path}/s.db")
    pipeline = Pipeline(cfg, store, rules_paths=[str(ROOT / "rules")])
    auth = TokenAuth([(role, role, hashlib.sha256(tok.encode()).hexdigest()) for role, tok in TOKENS.items()])
    app = create_app(LocalOperations(pipeline), store, auth, graph=cfg.entities, max_body_bytes=200_000, max_batch_items=2000)
    with TestClient(app) as c:
        yield c
    store.close()


def builds(n: int, *, spike_at: int | None = None) -> list[dict[str, object]]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        dur = 3000.0 if i == spike_at else 300 + rng.gauss(0, 8)
        out.append({"source": "ci", "native_id": f"b{i}", "kind": "build", "ts": (T0 + timedelta(hours=i)).isoformat(),
                    "entity": "job:shop-build", "labels": {"result": "SUCCESS"}, "values": {"duration_s": dur, "queue_s": 2.0}})
    return out


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


@pytest.mark.parametrize(("method", "path", "role"), [
    ("GET", "/v1/incidents", "reader"), ("GET", "/metrics", "reader"), ("GET", "/v1/sources", "reader"),
    ("POST", "/v1/events", "operator"), ("POST", "/v1/rules/reload", "rule-author"),
    ("POST", "/v1/rules/backtest", "rule-author"), ("POST", "/v1/models/g@v1/promote", "admin"),
])
def test_missing_or_wrong_token_is_401_and_low_role_is_403(client: TestClient, method: str, path: str, role: str) -> None:
    assert client.request(method, path).status_code == 401
    assert client.request(method, path, headers={"Authorization": "Bearer nope"}).status_code == 401
    lower = {"reader": None, "operator": "reader", "rule-author": "operator", "admin": "rule-author"}[role]
    if lower:
        r = client.request(method, path, headers=h(lower))
        assert r.status_code == 403
        assert f"this needs {role}" in r.json()["detail"]


def test_events_to_incident_through_the_api(client: TestClient) -> None:
    r = client.post("/v1/events", json=builds(120, spike_at=119), headers=h("operator"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 120
    assert body["stored"] == 120
    assert body["anomalies"] >= 1
    again = client.post("/v1/events", json=builds(120, spike_at=119), headers=h("operator")).json()
    assert again["stored"] == 0
    incidents = client.get("/v1/incidents", headers=h("reader")).json()["incidents"]
    assert len(incidents) >= 1
    inc = incidents[0]
    assert "shop" in inc["services"]
    detail = client.get(f"/v1/incidents/{inc['id']}", headers=h("reader")).json()
    assert detail["alerts"]
    # its Slack message waits out the route's group_wait (30 s in rules/routing.yaml; no worker here)
    (msg,) = detail["slack_messages"]
    assert (msg["channel"], msg["state"], msg["attempts"]) == ("#ci-health", "held", 0)  # builds' route
    assert datetime.fromisoformat(msg["due_at"]) > datetime.now(UTC)
    assert msg["repeat_interval_s"] == 4 * 3600  # routing.yaml's: reminders every 4h once it is sent
    assert "next_reminder_at" not in msg, "no reminder is due for a message not sent yet"
    rep = client.get(f"/v1/incidents/{inc['id']}/report?format=md", headers=h("reader"))
    assert rep.status_code == 200
    assert rep.headers["content-type"].startswith("text/markdown")
    html = client.get(f"/v1/incidents/{inc['id']}/report?format=html", headers=h("reader"))
    assert "<svg" in html.text
    ack = client.post(f"/v1/incidents/{inc['id']}/ack", headers=h("operator"))
    assert ack.status_code == 200
    assert ack.json()["status"] == "acknowledged"
    fb = client.post(f"/v1/incidents/{inc['id']}/feedback", json={"verdict": "false_positive", "reason": "load test"},
                     headers=h("operator"))
    assert fb.status_code == 200
    assert "drop" in (fb.json()["proposed_drop_rule"] or "drop")


def test_malformed_items_get_their_own_errors(client: TestClient) -> None:
    items = builds(3)
    items[1] = {**items[1], "entity": "shop", "ts": "yesterday"}
    r = client.post("/v1/events", json=items, headers=h("operator"))
    assert r.status_code == 200
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert {e["index"] for e in body["errors"]} == {1}
    only_bad = client.post("/v1/events", json=[items[1]], headers=h("operator"))
    assert only_bad.status_code == 422


def test_ndjson_and_bad_bodies(client: TestClient) -> None:
    nd = "\n".join(json.dumps(x) for x in builds(2)).encode()
    r = client.post("/v1/events", content=nd, headers={**h("operator"), "Content-Type": "application/x-ndjson"})
    assert r.json()["accepted"] == 2
    assert client.post("/v1/events", content=b"{not json", headers={**h("operator"), "Content-Type": "application/json"}).status_code == 400
    big = b"[" + b" " * 300_000 + b"]"
    r = client.post("/v1/events", content=big, headers={**h("operator"), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert "over the limit" in r.json()["detail"]


def test_unknown_incident_is_404_and_bad_query_is_422(client: TestClient) -> None:
    assert client.get("/v1/incidents/nope", headers=h("reader")).status_code == 404
    assert client.get("/v1/incidents?limit=0", headers=h("reader")).status_code == 422
    assert client.get("/v1/incidents?status=weird", headers=h("reader")).status_code == 422


def test_silences_rules_models_sources_metrics(client: TestClient) -> None:
    r = client.post("/v1/silences", json={"matchers": ['service="shop"'], "duration": "1h", "comment": "maint"},
                    headers=h("operator"))
    assert r.status_code == 201, r.text
    listed = client.get("/v1/silences", headers=h("reader")).json()["silences"]
    assert any(s["comment"] == "maint" for s in listed)
    bad = client.post("/v1/silences", json={"matchers": ["service=~(a"], "duration": "1h"}, headers=h("operator"))
    assert bad.status_code == 422
    rules = client.get("/v1/rules", headers=h("reader")).json()
    assert rules["rules"]
    assert client.post("/v1/rules/reload", headers=h("rule-author")).json()["ok"] is True
    assert client.get("/v1/models", headers=h("reader")).json() == {"models": []}
    assert client.post("/v1/models/nothing@v1/promote", headers=h("admin")).status_code == 404
    assert client.get("/v1/sources", headers=h("reader")).status_code == 200
    metrics = client.get("/metrics", headers=h("reader")).text
    assert "opsradar_pipeline_items_total" in metrics


def test_a_rule_author_backtests_candidate_rules_over_the_stored_history(client: TestClient) -> None:
    assert client.post("/v1/events", json=builds(60, spike_at=50), headers=h("operator")).status_code == 200
    texts = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "rules").glob("*.yaml"))}
    window = {"since": (T0 - timedelta(hours=1)).isoformat(), "until": (T0 + timedelta(hours=61)).isoformat()}

    same = client.post("/v1/rules/backtest", json={"files": texts, **window}, headers=h("rule-author"))
    assert same.status_code == 200, same.text
    doc = same.json()
    assert (doc["events"], doc["since"]) == (60, window["since"])
    assert doc["anomalies"] >= 1  # the spike
    assert doc["candidate"]["alerts"] == doc["in_force"]["alerts"] >= 1  # the rules in force are these files
    assert doc["changes_per_rule"] == {}
    assert doc["text"].startswith("backtest: 60 events")

    drop = "filters:\n  - name: drop-shop\n    matchers: ['service=\"shop\"']\n    action: drop\n"
    dropped = client.post("/v1/rules/backtest", json={"files": {**texts, "zz-drop.yaml": drop}, **window},
                          headers=h("rule-author")).json()
    assert dropped["changes_per_rule"]["drop-shop"]["newly dropped"] == doc["in_force"]["alerts"]
    assert dropped["candidate"]["notified"] == 0

    bad = client.post("/v1/rules/backtest", json={"files": {"x.yaml": "filters: [{name: 1}]"}}, headers=h("rule-author"))
    assert bad.status_code == 422
    assert bad.json()["detail"] == "invalid rules"
    assert all(e.startswith("x.yaml") for e in bad.json()["errors"])
    for wrong in ({"since": window["until"], "until": window["since"]},  # reversed
                  {"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"},  # over 31 days
                  {"since": "2026-03-01T00:00:00"},  # no time zone
                  {"files": texts, "extra": 1}):
        assert client.post("/v1/rules/backtest", json=wrong, headers=h("rule-author")).status_code == 422, wrong
    default = client.post("/v1/rules/backtest", json={}, headers=h("rule-author"))  # the files on disk, last 24 h
    assert default.status_code == 200
    assert default.json()["events"] == 0  # the history is in March 2026


def test_a_backtest_whose_worker_failed_is_503_not_500(tmp_path: Path) -> None:
    from opsradar.serving.operations import Unavailable

    class WorkerGone(LocalOperations):
        async def backtest(self, texts: dict[str, str], since: datetime, until: datetime) -> dict[str, object]:
            raise Unavailable("the backtest's Ray worker failed (OutOfMemoryError)")

    store = Store(f"sqlite:///{tmp_path}/s.db")
    pipeline = Pipeline(parse_config("slack: {enabled: false}\n"), store, rules_paths=[str(ROOT / "rules")])
    auth = TokenAuth([("ra", "rule-author", hashlib.sha256(b"ra-token-123").hexdigest())])
    with TestClient(create_app(WorkerGone(pipeline), store, auth)) as c:
        r = c.post("/v1/rules/backtest", json={}, headers=h("rule-author"))
    store.close()
    assert r.status_code == 503
    assert r.headers["retry-after"] == "30"
    assert "OutOfMemoryError" in r.json()["detail"]


def test_slack_interactions_without_secret_say_so(client: TestClient) -> None:
    r = client.post("/v1/slack/interactions", content=b"payload=%7B%7D")
    assert r.status_code == 503


def test_openapi_is_complete(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    for p in ("/v1/events", "/v1/incidents", "/v1/incidents/{incident_id}", "/v1/incidents/{incident_id}/ack",
              "/v1/incidents/{incident_id}/resolve", "/v1/incidents/{incident_id}/feedback",
              "/v1/incidents/{incident_id}/report", "/v1/silences", "/v1/silences/{silence_id}", "/v1/rules",
              "/v1/rules/reload",
              "/v1/rules/backtest", "/v1/models",
              "/v1/models/{model_id}/promote", "/v1/models/{model_id}/rollback", "/v1/sources",
              "/v1/slack/interactions", "/healthz", "/readyz", "/metrics"):
        assert p in paths, p
    assert client.get("/docs").status_code == 200


def test_every_body_is_capped(client: TestClient) -> None:
    big = {"matchers": ['service="shop"'], "duration": "1h", "comment": "x" * 300_000}
    r = client.post("/v1/silences", json=big, headers=h("operator"))
    assert r.status_code == 413
    assert "over the limit of 200000 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it streams
        for _ in range(30):
            yield b" " * 10_000

    r = client.post("/v1/incidents/x/feedback", content=chunks(), headers={**h("operator"), "Content-Type": "application/json"})
    assert r.status_code == 413


def test_an_operator_expires_a_silence_early(client: TestClient) -> None:
    made = client.post("/v1/silences", json={"matchers": ['service="shop"'], "duration": "4h", "comment": "deploy"},
                       headers=h("operator")).json()
    assert client.delete(f"/v1/silences/{made['id']}", headers=h("reader")).status_code == 403
    gone = client.delete(f"/v1/silences/{made['id']}", headers=h("operator"))
    assert gone.status_code == 200, gone.text
    assert datetime.fromisoformat(gone.json()["ends_at"]) <= datetime.now(UTC)
    assert made["id"] not in [x["id"] for x in client.get("/v1/silences", headers=h("reader")).json()["silences"]]
    assert client.delete(f"/v1/silences/{made['id']}", headers=h("operator")).status_code == 200  # again: harmless
    unknown = client.delete("/v1/silences/nope", headers=h("operator"))
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no silence 'nope' (rule-file silences are removed by editing the file)"


def test_an_event_ahead_of_the_server_s_clock_is_refused_with_its_own_error(client: TestClient) -> None:
    ahead = {**builds(1)[0], "native_id": "ahead", "ts": (datetime.now(UTC) + timedelta(hours=3)).isoformat()}
    r = client.post("/v1/events", json=[ahead, builds(2)[1]], headers=h("operator"))
    assert r.status_code == 200
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    (err,) = body["errors"]
    assert (err["index"], err["path"]) == (0, "ts")
    assert "api.max_clock_skew" in err["message"]


def test_incidents_filter_by_service_and_minimum_severity(tmp_path: Path) -> None:
    from opsradar.models import Alert, Severity

    store = Store(f"sqlite:///{tmp_path}/s.db")
    pipeline = Pipeline(parse_config("slack: {enabled: false}\n"), store, rules_paths=[str(ROOT / "rules")])
    for i, (service, sev) in enumerate([("crm", Severity.warning), ("erp", Severity.error), ("hr", Severity.critical)]):
        at = T0 + timedelta(hours=3 * i)
        pipeline._on_alert(Alert.from_labels(title=f"{service} down", labels={"service": service, "alertname": "x"},
                                             starts_at=at, severity=sev), at)
    auth = TokenAuth([(role, role, hashlib.sha256(tok.encode()).hexdigest()) for role, tok in TOKENS.items()])
    with TestClient(create_app(LocalOperations(pipeline), store, auth)) as c:
        def services(query: str) -> list[str]:
            r = c.get(f"/v1/incidents?{query}", headers=h("reader"))
            assert r.status_code == 200, r.text
            return sorted(s for d in r.json()["incidents"] for s in d["services"])

        assert services("") == ["crm", "erp", "hr"]
        assert services("min_severity=error") == ["erp", "hr"]
        assert services("min_severity=critical") == ["hr"]
        assert services("min_severity=error&service=erp") == ["erp"]
        assert services("min_severity=critical&service=erp") == []
        assert c.get("/v1/incidents?min_severity=loud", headers=h("reader")).status_code == 422
    store.close()
