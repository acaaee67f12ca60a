"""deploy/: the Serve config, the KubeRay RayService and the Grafana dashboard are valid and agree
with the application and the metrics it exports (no Ray cluster needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

from opsradar.serving.app import AppArgs, build_app

DEPLOY = Path(__file__).parents[2] / "deploy"


def _deployment_names(app: Any) -> set[str]:
    """Every deployment bound into the application graph."""
    names: set[str] = set()
    todo = [app]
    while todo:
        node = todo.pop()
        if hasattr(node, "_bound_deployment"):
            dep = node._bound_deployment
            if dep.name in names:
                continue
            names.add(dep.name)
            args = list(dep.init_args) + list(dep.init_kwargs.values())
            todo += [a for a in args if hasattr(a, "_bound_deployment")]
            todo += [x for a in args if isinstance(a, list) for x in a]
    return names


def test_serve_config_validates_and_names_the_app_deployments() -> None:
    doc = yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())
    config = ServeDeploySchema.model_validate(doc)
    [spec] = config.applications
    assert spec.import_path == "opsradar.serving.app:build_app"
    args = AppArgs.model_validate(spec.args)  # the builder's typed arguments accept them
    assert args.collect
    assert args.notify
    built = _deployment_names(build_app(AppArgs(shards=2)))
    assert built == {"Ingress", "Owner", "Collectors", "DetectorShard-0", "DetectorShard-1"}
    assert {d.name for d in spec.deployments} <= built
    shard_cfg = {d.name: d.user_config for d in spec.deployments if d.name.startswith("DetectorShard-")}
    assert all(uc and "checkpoint_interval_s" in uc for uc in shard_cfg.values())


def test_rayservice_uses_the_serve_config_and_secrets_from_kubernetes() -> None:
    doc = yaml.safe_load((DEPLOY / "kuberay" / "rayservice.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayService")
    served = yaml.safe_load(doc["spec"]["serveConfigV2"])
    [app] = [ServeApplicationSchema.model_validate(a) for a in served["applications"]]
    local = ServeDeploySchema.model_validate(yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())).applications[0]
    assert app.import_path == local.import_path
    assert app.args["config_path"] == local.args["config_path"]
    assert [d.name for d in app.deployments] == [d.name for d in local.deployments]
    cluster = doc["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            assert {"secretRef": {"name": "opsradar-secrets"}} in container["envFrom"]
            assert not [e for e in container.get("env", []) if re.search(r"TOKEN|SECRET|PASSWORD|STORE_URL", e["name"])]
            assert any(m["mountPath"] == "/etc/opsradar" for m in container["volumeMounts"])


def dashboard_metrics() -> set[str]:
    """The sample names the Grafana dashboard queries."""
    dash = json.loads((DEPLOY / "grafana" / "opsradar-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs
    return {m for e in exprs for m in re.findall(r"\bopsradar_[a-z0-9_]+", e)}


def exported_sample_names(text: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    names = set()
    for fam in text_string_to_metric_families(text):
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
    return names


def test_every_dashboard_metric_is_registered() -> None:
    """Against the process registry once the serving, pipeline and rule metrics are imported
    (tests/serving/test_ray_app.py checks them against the served /metrics too)."""
    from prometheus_client import REGISTRY, generate_latest

    import opsradar.alerting.rules.metrics
    import opsradar.serving.metrics as m
    from opsradar.alerting.noise import default_metrics

    default_metrics().record("events", source="x")
    for labelled in (m.DETECT_EVENTS, m.DETECT_SECONDS, m.STREAMS, m.CHECKPOINTS, m.REPLAYED):
        labelled.labels(shard="0")
    m.INGEST_EVENTS.labels(outcome="stored")
    m.GC_SECONDS.labels(deployment="ingress", generation="0")
    opsradar.alerting.rules.metrics._MATCHES.labels(rule="r")
    exported = exported_sample_names(generate_latest(REGISTRY).decode())
    missing = dashboard_metrics() - exported
    assert not missing, f"the dashboard queries metrics nothing exports: {sorted(missing)}"
