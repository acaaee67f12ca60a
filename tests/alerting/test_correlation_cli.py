"""``opsradar incidents`` lists what the correlator stored."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from opsradar.alerting.correlation import Correlator
from opsradar.cli import app
from opsradar.config import CorrelationConfig
from opsradar.store import Store
from tests.alerting.test_correlation import GRAPH, T0, alert


def test_incidents_command_lists_incidents(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    store = Store(url)
    corr = Correlator(store, GRAPH, CorrelationConfig())
    a = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    corr.add(alert("Errors up", service="checkout", source="elasticsearch"), T0 + timedelta(minutes=1))
    corr.add(alert("Payments slow", entity="job:payments-deploy", source="jenkins"), T0 + timedelta(minutes=2))
    corr.ack(a.incident_id or "", "ana", T0 + timedelta(minutes=3))
    store.close()
    cfg = tmp_path / "opsradar.yaml"
    cfg.write_text(f"store:\n  url: {url}\n")
    runner = CliRunner()
    out = runner.invoke(app, ["incidents", "--config", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert len(rows) == 2
    shop = next(r for r in rows if r["id"] == a.incident_id)
    assert shop["services"] == ["checkout", "shop"]
    assert shop["alerts"] == 2
    assert shop["status"] == "acknowledged"
    out = runner.invoke(app, ["incidents", "--config", str(cfg), "--status", "open", "--json"])
    assert out.exit_code == 0
    assert [r["title"] for r in json.loads(out.output)] == ["Payments slow"]
    table = runner.invoke(app, ["incidents", "--config", str(cfg)])
    assert table.exit_code == 0
    assert "2 incidents" in table.output
    bad = runner.invoke(app, ["incidents", "--config", str(cfg), "--status", "closed"])
    assert bad.exit_code == 2
    assert "'closed'" in bad.output
