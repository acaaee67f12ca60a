"""``opsradar run``: start local Ray with Serve and the application, print the API URL, and shut
down cleanly on Ctrl-C (checkpoint the detector shards, drain the outbox)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from opsradar.config import Config

__all__ = ["APP_NAME", "shutdown", "start"]

log = logging.getLogger(__name__)
APP_NAME = "opsradar"


def start(cfg: Config, *, config_path: str | None, collect: bool = True, notify: bool = True,
          num_cpus: int | None = None, app: Any = None) -> Any:
    """Start Ray (local unless ``RAY_ADDRESS`` is set) and the application; returns its ingress handle."""
    import ray
    from ray import serve

    from opsradar.serving.app import AppArgs, build_app

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
    serve.start(http_options={"host": cfg.api.host, "port": cfg.api.port})
    args = AppArgs(config_path=config_path, collect=collect, notify=notify)
    return serve.run((app or build_app)(args), name=APP_NAME, route_prefix="/", blocking=False)


def shutdown(*, drain_timeout: float = 30.0) -> None:
    """Checkpoint every detector shard, drain the outbox, stop Serve and Ray."""
    import ray
    from ray import serve

    try:
        app = serve.status().applications.get(APP_NAME)
        names = list(app.deployments) if app else []
        for name in names:
            if name.startswith("DetectorShard-"):
                serve.get_deployment_handle(name, app_name=APP_NAME).checkpoint.remote().result(timeout_s=60)
        if "Owner" in names:
            owner = serve.get_deployment_handle("Owner", app_name=APP_NAME)
            deadline = time.monotonic() + drain_timeout
            while time.monotonic() < deadline and owner.drain.remote().result(timeout_s=60):
                pass
    except Exception:
        log.exception("clean shutdown was incomplete (checkpoint or outbox drain failed)")
    serve.shutdown()
    ray.shutdown()


def run_forever(cfg: Config, *, config_path: str | None, echo: Any = print) -> None:
    """Start, print the URL, wait for Ctrl-C or SIGTERM, shut down cleanly."""
    start(cfg, config_path=config_path)
    url = cfg.api.public_url or f"http://{cfg.api.host}:{cfg.api.port}"
    echo(f"opsradar is running: API {url}/v1  (docs {url}/docs, health {url}/readyz). Ctrl-C to stop.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    echo("stopping: checkpointing detectors and draining the outbox…")
    shutdown()
    echo("stopped.")
