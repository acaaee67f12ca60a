"""The real Ray Serve application: one module, one application for all its tests.

Starts local Ray and Serve with a temp config (SQLite store, four tokens, two detector shards),
then drives it over HTTP on loopback: events in, incidents out, 401/403, 4xx for malformed input,
``/metrics``, a detector replica killed and recovered, and a bounded Schemathesis run against the
served OpenAPI. Everything waits with a deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsradar.detectors.engine import DetectionEngine, shard_of
from opsradar.models import Event

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

ROOT = Path(__file__).parents[2]
TOKENS = {"reader": "r-token-ray", "operator": "o-token-ray", "rule-author": "ra-token-ray", "admin": "a-token-ray"}
T0 = datetime(2026, 3, 2, tzinfo=UTC)
SHARDS = 2


def h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def write_config(tmp: Path, port: int) -> Path:
    tokens = "\n".join(f"    - {{name: {role}, role: {role}, sha256: {hashlib.sha256(tok.encode()).hexdigest()}}}"
                       for role, tok in TOKENS.items())
    path = tmp / "opsradar.yaml"
    path.write_text(
        f"store: {{url: 'sqlite:///{tmp}/state.db'}}\n"
        f"api:\n  host: 127.0.0.1\n  port: {port}\n  max_body_bytes: 200000\n  max_batch_items: 2000\n  tokens:\n{tokens}\n"
        f"rules: {{paths: ['{ROOT / 'rules'}'], watch: false}}\n"
        f"detectors: {{warmup: 20, shards: {SHARDS}, checkpoint_interval: 1h, refit_window: 64}}\n"
        "slack: {enabled: false}\n"
        "entities:\n  services:\n    shop: {jobs: [shop-build, shop-test], es_services: [shop]}\n"
    )
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from opsradar.config import load_config
    from opsradar.serving.run import shutdown, start

    tmp = tmp_path_factory.mktemp("ray-app")
    port = free_port()
    cfg_path = write_config(tmp, port)
    cfg = load_config(str(cfg_path))
    old_secret = os.environ.get("SLACK_SIGNING_SECRET")
    os.environ["SLACK_SIGNING_SECRET"] = "test-signing-secret"
    t = time.monotonic()
    start(cfg, config_path=str(cfg_path), collect=False, notify=False, num_cpus=2)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=120)
    wait_for(lambda: client.get("/readyz").status_code == 200, 240, "/readyz")
    try:
        yield {"url": url, "client": client, "tmp": tmp, "cold_start_s": time.monotonic() - t}
    finally:
        client.close()
        shutdown(drain_timeout=5)
        if old_secret is None:
            os.environ.pop("SLACK_SIGNING_SECRET", None)
        else:
            os.environ["SLACK_SIGNING_SECRET"] = old_secret


def builds(job: str, start: int, n: int, *, spike_at: int | None = None) -> list[dict[str, Any]]:
    rng = random.Random(start)
    out = []
    for i in range(start, start + n):
        dur = 3000.0 if i == spike_at else 300 + rng.gauss(0, 8)
        out.append({"source": "ci", "native_id": f"{job}-{i}", "kind": "build", "ts": (T0 + timedelta(hours=i)).isoformat(),
                    "entity": f"job:{job}", "labels": {"result": "SUCCESS"}, "values": {"duration_s": dur, "queue_s": 2.0}})
    return out


def test_events_become_incidents(app: dict[str, Any]) -> None:
    c: httpx.Client = app["client"]
    r = c.post("/v1/events", json=builds("shop-build", 0, 120, spike_at=119), headers=h("operator"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["stored"]) == (120, 120)
    assert body["anomalies"] >= 1
    incidents = wait_for(lambda: c.get("/v1/incidents", headers=h("reader")).json()["incidents"], 30, "an incident")
    inc = incidents[0]
    assert "shop" in inc["services"]
    detail = c.get(f"/v1/incidents/{inc['id']}", headers=h("reader")).json()
    assert detail["alerts"]
    rep = c.get(f"/v1/incidents/{inc['id']}/report?format=md", headers=h("reader"))
    assert rep.status_code == 200
    assert inc["id"] in rep.text or inc["title"] in rep.text
    assert c.post(f"/v1/incidents/{inc['id']}/ack", headers=h("operator")).json()["status"] == "acknowledged"
    assert c.get("/v1/incidents?status=acknowledged", headers=h("reader")).json()["incidents"][0]["id"] == inc["id"]


def test_pyod_refits_run_as_ray_tasks_and_are_hot_swapped(app: dict[str, Any]) -> None:
    from ray import serve

    c: httpx.Client = app["client"]
    c.post("/v1/events", json=builds("shop-pyod", 0, 80), headers=h("operator"))
    models = wait_for(lambda: [m for m in c.get("/v1/models", headers=h("reader")).json()["models"]
                               if m["group_key"] == "ci|build|*"], 120, "a registered PyOD model")
    assert models[0]["id"].startswith("ci|build|*@v")

    def swapped() -> bool:
        for i in range(SHARDS):
            held = serve.get_deployment_handle(f"DetectorShard-{i}", app_name="opsradar").models.remote().result(timeout_s=60)
            if held.get("versions", {}).get("ci|build|*"):
                return True
        return False

    wait_for(swapped, 60, "a shard holding the champion")


def test_a_backtest_replays_the_stored_history(app: dict[str, Any]) -> None:
    """On Serve, the replay is a Ray task (``Ingress.backtest``); invalid files still get 422."""
    c: httpx.Client = app["client"]
    assert c.post("/v1/events", json=builds("shop-test", 0, 30), headers=h("operator")).status_code == 200
    window = {"since": (T0 - timedelta(hours=1)).isoformat(), "until": (T0 + timedelta(days=30)).isoformat()}
    r = c.post("/v1/rules/backtest", json=window, headers=h("rule-author"))  # the rule files on disk
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["events"] >= 30
    assert doc["since"] == window["since"]
    assert doc["changes_per_rule"] == {}, "the files on disk are the rules in force"
    bad = c.post("/v1/rules/backtest", json={"files": {"x.yaml": "filters: [{name: 1}]"}, **window},
                 headers=h("rule-author"))
    assert bad.status_code == 422
    assert bad.json()["errors"]
    assert all(e.startswith("x.yaml") for e in bad.json()["errors"])


def test_tokens_and_roles(app: dict[str, Any]) -> None:
    c: httpx.Client = app["client"]
    assert c.get("/healthz").status_code == 200
    assert c.get("/v1/incidents").status_code == 401
    assert c.get("/v1/incidents", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/v1/events", json=[], headers=h("reader")).status_code == 403
    assert c.post("/v1/rules/reload", headers=h("operator")).status_code == 403
    r = c.post("/v1/models/g@v1/promote", headers=h("rule-author"))
    assert r.status_code == 403
    assert "this needs admin" in r.json()["detail"]


def test_malformed_input_is_4xx(app: dict[str, Any]) -> None:
    c: httpx.Client = app["client"]
    bad_json = c.post("/v1/events", content=b"[{not json", headers={**h("operator"), "Content-Type": "application/json"})
    assert bad_json.status_code == 400
    items = builds("shop-test", 0, 2)
    items[1]["ts"] = "yesterday"
    mixed = c.post("/v1/events", json=items, headers=h("operator")).json()
    assert (mixed["accepted"], mixed["errors"][0]["index"]) == (1, 1)
    too_big = c.post("/v1/events", content=b"[" + b" " * 300_000 + b"]", headers={**h("operator"), "Content-Type": "application/json"})
    assert too_big.status_code == 413
    assert c.get("/v1/incidents?limit=0", headers=h("reader")).status_code == 422
    assert c.get("/v1/incidents/nope", headers=h("reader")).status_code == 404
    assert c.post("/v1/silences", json={"matchers": []}, headers=h("operator")).status_code == 422
    # refused by the owner, behind a Ray call: its own message, not Ray's traceback of it
    bad = c.post("/v1/silences", json={"matchers": ['service=~"(a"'], "duration": "1h", "comment": "x"},
                 headers=h("operator"))
    assert (bad.status_code, bad.json()["detail"]) == (422, "invalid regex '(a': missing ): (a")
    unknown = c.delete("/v1/silences/nope", headers=h("operator"))
    assert (unknown.status_code, unknown.json()["detail"]) == (
        404, "no silence 'nope' (rule-file silences are removed by editing the file)")


def test_metrics_are_exported_and_cover_the_dashboard(app: dict[str, Any]) -> None:
    from tests.serving.test_deploy import dashboard_metrics, exported_sample_names

    app["client"].post("/v1/events", json=builds("shop-metrics", 0, 3), headers=h("operator"))
    text = app["client"].get("/metrics", headers=h("reader")).text
    names = exported_sample_names(text)  # parses: one valid exposition merged from the deployments
    assert {"opsradar_pipeline_items_total", "opsradar_ingest_events_total", "opsradar_detect_events_total",
            "opsradar_ingest_store_transactions_total"} <= names
    assert 'opsradar_detect_events_total{shard="0"}' in text or 'opsradar_detect_events_total{shard="1"}' in text
    missing = dashboard_metrics() - names
    assert not missing, f"the Grafana dashboard queries metrics /metrics does not export: {sorted(missing)}"


def _shard_replica(shard: int) -> Any:
    import ray

    names = [a for a in ray.util.list_named_actors(all_namespaces=True)
             if f"#DetectorShard-{shard}#" in a["name"]]
    assert len(names) == 1, names
    return ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), names[0]["name"]


def test_killed_detector_replica_recovers_from_checkpoint_and_store(app: dict[str, Any]) -> None:
    import ray
    from ray import serve

    c: httpx.Client = app["client"]
    job = "shop-recovery"
    key = DetectionEngine.stream_key(Event.new(source="ci", native_id="x", kind="build", ts=T0, entity=f"job:{job}"))
    shard = shard_of(key, SHARDS)
    handle = serve.get_deployment_handle(f"DetectorShard-{shard}", app_name="opsradar")

    def learned() -> int:
        return int(handle.stream_counts.remote().result(timeout_s=60).get(key, 0))

    assert c.post("/v1/events", json=builds(job, 0, 40), headers=h("operator")).json()["stored"] == 40
    handle.checkpoint.remote().result(timeout_s=60)  # what the periodic checkpoint does
    after_checkpoint = c.post("/v1/events", json=builds(job, 40, 15), headers=h("operator")).json()
    assert after_checkpoint["stored"] == 15
    assert learned() == 55

    actor, name = _shard_replica(shard)
    ray.kill(actor, no_restart=True)
    # events posted while the replica is dead: stored first, detected when a replica is back
    posted: dict[str, Any] = {}
    poster = threading.Thread(target=lambda: posted.update(
        c.post("/v1/events", json=builds(job, 55, 10), headers=h("operator")).json()))
    poster.start()

    def new_replica() -> bool:
        try:
            return _shard_replica(shard)[1] != name
        except AssertionError:
            return False

    wait_for(new_replica, 180, "a new detector replica")
    poster.join(timeout=180)
    assert posted.get("stored") == 10, posted
    stats = wait_for(lambda: handle.stats.remote().result(timeout_s=60), 60, "the new replica's stats")
    assert stats["restored_from"] is not None
    assert stats["replayed"] >= 15  # the events learned after the checkpoint, from the store
    # every event learned exactly once: 40 from the checkpoint, 15 replayed, 10 posted meanwhile
    assert learned() == 65
    assert c.get("/readyz").status_code == 200


def test_schemathesis_finds_no_server_errors(app: dict[str, Any]) -> None:
    """Bounded: at most 8 generated cases per operation, against the Ray-served app, as admin."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(f"{app['url']}/openapi.json")
    failures: list[str] = []
    calls: list[str] = []

    def check_operation(op: Any) -> None:
        @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            calls.append(op.label)
            response = case.call(headers=h("admin"), timeout=60)
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as exc:
                failures.append(f"{op.label}: {response.status_code} {response.text[:200]} ({type(exc).__name__})")

        run()

    for result in schema.get_all_operations():
        check_operation(result.ok())
    assert len(set(calls)) >= 18  # every operation was exercised
    assert not failures, json.dumps(failures[:10], indent=1)
