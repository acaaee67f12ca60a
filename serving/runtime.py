"""Wiring shared by ``opsradar run``, the Ray Serve deployments and the demo: the Slack worker and
the interaction handler, built from the config and the environment."""

from __future__ import annotations

import logging
from typing import Any

from opsradar.config import Config, resolve_secret
from opsradar.store import Store

__all__ = ["interaction_handler", "public_url", "slack_worker"]

log = logging.getLogger(__name__)


def public_url(cfg: Config) -> str:
    return cfg.api.public_url or f"http://{cfg.api.host}:{cfg.api.port}"


def slack_worker(cfg: Config, store: Store, **kwargs: Any) -> Any:
    """The outbox worker for Slack, or None (with a log line saying why) when Slack is off."""
    from opsradar.alerting.notifiers.slack import make_slack_worker

    if not cfg.slack.enabled:
        log.info("Slack is disabled (slack.enabled: false); notifications stay in the outbox")
        return None
    token = resolve_secret(cfg.slack.token_env)
    if token is None:
        log.warning("Slack token variable %s is not set; notifications stay in the outbox until it is",
                    cfg.slack.token_env)
        return None
    return make_slack_worker(store, cfg.slack, token=token.get_secret_value(), public_url=public_url(cfg), **kwargs)


def interaction_handler(cfg: Config, pipeline: Any) -> Any:
    """The Slack button handler, or None when no signing secret is configured."""
    from opsradar.alerting.notifiers.slack import InteractionHandler

    secret = resolve_secret(cfg.slack.signing_secret_env)
    if secret is None:
        return None
    return InteractionHandler(signing_secret=secret.get_secret_value(), correlator=pipeline.correlator,
                              notifier=pipeline.notifier, silencer=pipeline.rules.silences)
