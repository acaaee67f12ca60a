"""The outbox survives ``kill -9``: a subprocess draining the outbox against the Slack fake is killed
right after Slack accepted a message (before the worker recorded it); a restarted worker delivers the
rest with no loss and no duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from opsradar.alerting.correlation import Correlator
from opsradar.alerting.notifiers.outbox import Notifier
from opsradar.config import CorrelationConfig, SlackConfig
from opsradar.demo.fakes.slack import SlackFake
from opsradar.store import Store
from tests.alerting.test_correlation import GRAPH, T0, alert
from tests.alerting.test_slack import TOKEN

WORKER = textwrap.dedent("""
    import sys
    from opsradar.alerting.notifiers.slack import make_slack_worker
    from opsradar.config import SlackConfig
    from opsradar.store import Store

    store = Store(sys.argv[1])
    worker = make_slack_worker(store, SlackConfig(base_url=sys.argv[2]), token=sys.argv[3], pace=0.01,
                               base_backoff=0.05)
    stats = worker.drain()
    print("delivered", stats.delivered, "dead", stats.dead, flush=True)
""")


@pytest.fixture
def fake() -> Iterator[SlackFake]:
    with SlackFake(token=TOKEN, channels=["opsradar"]) as f:
        yield f  # type: ignore[misc]


def _enqueue_incidents(url: str) -> list[str]:
    store = Store(url)
    corr = Correlator(store, GRAPH, CorrelationConfig())
    notifier = Notifier(store, SlackConfig(default_channel="#opsradar", storm_threshold=50))
    ids = []
    for i, (entity, svc) in enumerate([("job:shop-deploy", "checkout"), ("job:payments-deploy", None),
                                       ("job:search-build", None)]):
        u = corr.add(alert(f"Deploy {i} failed", entity=entity, source="jenkins"), T0 + timedelta(minutes=i))
        notifier.notify(u)
        ids.append(u.incident_id or "")
        if svc:
            notifier.notify(corr.add(alert("Timeouts", service=svc, source="elasticsearch"), T0 + timedelta(minutes=i, seconds=30)))
        notifier.notify(corr.ack(u.incident_id or "", f"user{i}", T0 + timedelta(minutes=i + 1)))
    store.close()
    return ids


def _run_worker(url: str, fake: SlackFake) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WORKER, url, fake.url + "/api/", TOKEN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# The first parent post, and a thread reply (the second post: the reply about the new service).
@pytest.mark.parametrize(("method", "skip"), [("chat.postMessage", 0), ("chat.postMessage", 1)])
def test_kill_9_mid_delivery_then_restart_loses_and_duplicates_nothing(
        tmp_path: Path, fake: SlackFake, method: str, skip: int) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    ids = _enqueue_incidents(url)
    release = fake.hold_after_accept(method, skip=skip)
    proc = _run_worker(url, fake)
    try:
        assert fake.held.wait(60), f"the worker never reached {method}: {proc.stderr.read() if proc.stderr else ''}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    accepted_before_restart = fake.calls("chat.postMessage")

    restart = _run_worker(url, fake)
    out, err = restart.communicate(timeout=120)
    assert restart.returncode == 0, err
    assert "dead 0" in out

    msgs = fake.channel_messages("opsradar")
    assert len(msgs) == 3, "one parent message per incident, none duplicated"
    for iid, user in zip(ids, ("user0", "user1", "user2"), strict=True):
        parents = [m for m in msgs if iid in m["text"]]
        assert len(parents) == 1, iid
        top = parents[0]
        assert f"acknowledged by {user}" in top["text"], "the final state reached Slack"
        acks = [r for r in top["replies"] if r["text"].endswith(f"Acknowledged by {user}")]
        assert len(acks) == 1, "each thread reply exactly once"
    assert sum(1 for m in msgs for r in m["replies"] if "New service affected: checkout" in r["text"]) == 1
    store = Store(url)
    assert store.outbox_rows(status="pending") == []
    assert store.outbox_rows(status="dead") == []
    for iid in ids:
        doc = store.get_incident(iid)
        assert doc is not None
        assert doc["slack_ts"] in {m["ts"] for m in msgs}
    store.close()
    assert fake.calls("chat.postMessage") >= accepted_before_restart
