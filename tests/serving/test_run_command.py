"""``opsradar run`` as a user starts it: a subprocess with a temp config, up until /readyz, then
Ctrl-C (SIGINT): it exits 0 after checkpointing the detector shards."""

from __future__ import annotations

import hashlib
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from opsradar.detectors.engine import DetectionEngine

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

ROOT = Path(__file__).parents[2]


def _descendants(pid: int) -> list[str]:
    """The command lines of ``pid``'s descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(d.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        try:
            out.append((Path(f"/proc/{p}") / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
        todo += children.get(p, [])
    return out


@pytest.mark.parametrize("haproxy", [False, True], ids=["ray-proxy", "haproxy"])
def test_run_serves_until_ctrl_c_then_checkpoints_and_exits_0(tmp_path: Path, haproxy: bool) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    digest = hashlib.sha256(b"run-token").hexdigest()
    cfg = tmp_path / "opsradar.yaml"
    cfg.write_text(
        f"store: {{url: 'sqlite:///{tmp_path}/state.db'}}\n"
        f"api:\n  port: {port}\n  haproxy: {str(haproxy).lower()}\n  tokens:\n    - {{name: t, role: operator, sha256: {digest}}}\n"
        f"rules: {{paths: ['{ROOT / 'rules'}']}}\n"
        "detectors: {shards: 2, checkpoint_interval: 1h}\nslack: {enabled: false}\n"
    )
    proc = subprocess.Popen([str(Path(sys.executable).with_name("opsradar")), "run", "--config", str(cfg)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "opsradar run was not ready within 240 s"
            time.sleep(0.5)
        t0 = datetime(2026, 3, 2, tzinfo=UTC)
        events = [{"source": "ci", "native_id": f"b{i}", "kind": "build", "ts": (t0 + timedelta(hours=i)).isoformat(),
                   "entity": f"job:j{i % 5}", "values": {"duration_s": 300.0 + i % 3}} for i in range(50)]
        assert httpx.post(f"{url}/v1/events", json=events, timeout=60).status_code == 401
        r = httpx.post(f"{url}/v1/events", json=events, headers={"Authorization": "Bearer run-token"}, timeout=120)
        assert r.json()["stored"] == 50
        # api.haproxy: Serve's HAProxy binary runs in front of the ingress (and only then)
        assert any(cmd.split(" ", 1)[0].endswith("haproxy") for cmd in _descendants(proc.pid)) is haproxy
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert f"API {url}/v1" in out
    assert "stopped." in out
    with sqlite3.connect(tmp_path / "state.db") as db:
        rows = dict(db.execute("select key, blob from checkpoints where key like 'detectors/shard-%'").fetchall())
        stored = db.execute("select count(*) from events").fetchone()[0]
    assert set(rows) == {"detectors/shard-0", "detectors/shard-1"}
    assert stored == 50
    streams = 0
    for blob in rows.values():  # the shutdown checkpoint holds the five streams the events made
        engine = DetectionEngine()
        engine.restore(pickle.loads(blob)["engine"])
        streams += engine.streams
    assert streams == 5
