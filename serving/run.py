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
    """Start Ray (local unless ``RAY_ADDRESS`` is set) and the application; returns its ingress handle.

    ``api.haproxy``: Serve's HAProxy ingress, through the environment that the local Ray's processes
    inherit (Serve reads it when they start). A value already in the environment wins.
    """
    if cfg.api.haproxy:
        os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
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


def shutdown(*, drain_timeout: float = 30.0, checkpoint_timeout: float = 60.0) -> bool:
    """Checkpoint every detector shard, drain the outbox, stop Serve and Ray.

    Each step is bounded: a stuck controller or replica cannot hold the shutdown. Returns True when
    the checkpoints and the drain completed.
    """
    import ray
    from ray import serve

    done = threading.Event()

    def checkpoint_and_drain() -> None:
        try:
            app = serve.status().applications.get(APP_NAME)
            names = list(app.deployments) if app else []
            for name in names:
                if name.startswith("DetectorShard-"):
                    handle = serve.get_deployment_handle(name, app_name=APP_NAME)
                    handle.checkpoint.remote().result(timeout_s=checkpoint_timeout)
            if "Owner" in names:
                owner = serve.get_deployment_handle("Owner", app_name=APP_NAME)
                deadline = time.monotonic() + drain_timeout
                # the first messages held for group_wait go out now: no more alerts will join them
                delivered = owner.drain.remote(True).result(timeout_s=drain_timeout)
                while delivered and time.monotonic() < deadline:
                    delivered = owner.drain.remote().result(timeout_s=drain_timeout)
            done.set()
        except Exception:
            log.exception("clean shutdown was incomplete (checkpoint or outbox drain failed)")

    worker = threading.Thread(target=checkpoint_and_drain, daemon=True, name="opsradar-shutdown")
    worker.start()
    worker.join(timeout=checkpoint_timeout + drain_timeout + 30)
    if not done.is_set():
        log.error("clean shutdown was incomplete: checkpoints or outbox drain did not finish in time")
    serve.shutdown()
    ray.shutdown()
    return done.is_set()


def run_forever(cfg: Config, *, config_path: str | None, echo: Any = print) -> None:
    """Start, print the URL, wait for Ctrl-C or SIGTERM, shut down cleanly.

    The signal handlers are installed before Ray starts (a Ctrl-C during start-up stops it once it
    is up, rather than killing it half-started) and again after (Ray installs its own).
    """
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    def install() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)

    install()
    try:
        start(cfg, config_path=config_path)
        install()
        url = cfg.api.public_url or f"http://{cfg.api.host}:{cfg.api.port}"
        echo(f"opsradar is running: API {url}/v1  (docs {url}/docs, health {url}/readyz). Ctrl-C to stop.")
        while not stop.wait(1.0):
            pass
    finally:
        echo("stopping: checkpointing detectors and draining the outbox…")
        clean = shutdown()
        echo("stopped." if clean else "stopped (the checkpoint or the outbox drain did not complete; see the log).")
