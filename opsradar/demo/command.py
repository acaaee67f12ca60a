"""``opsradar demo``: the simulated enterprise end to end, on embedded defaults.

Starts the world, runs the full pipeline on local Ray Serve (SQLite store, the rules in
``rules/``), shows progress, prints each Slack message as it is posted and updated, and ends with a
summary table of incidents with a link to each root-cause report on the local API. ``--json`` prints
the summary as one JSON object instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from opsradar.demo.runner import DemoResult, DemoRunner, SlackEvent

__all__ = ["demo_command", "summary_json"]


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """With ``--json``, stdout must hold the JSON alone: Ray's own processes write to file
    descriptor 1 (e.g. raylet notices at shutdown), so point it at stderr while the demo runs."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def summary_json(result: DemoResult) -> dict[str, Any]:
    return {"incidents": [{k: row[k] for k in ("title", "severity", "sources", "alerts", "root_cause", "report_url")}
                          | {"id": row["id"], "services": row["services"], "status": row["status"]}
                          for row in result.incident_rows()],
            "world": result.world, "anomalies": result.anomalies, "alerts": result.alerts,
            "slack_messages": sum(1 for e in result.slack if e.what == "posted"), "api_url": result.api_url}


def demo_command(*, as_json: bool, keep_running: bool, local: bool, seed: int | None, days: float | None,
                 step_minutes: float, port: int, console: Console, err_console: Console) -> int:
    out = err_console if as_json else console
    progress = Progress(TextColumn("[bold]simulated[/] {task.description}"), BarColumn(),
                        TextColumn("{task.percentage:>3.0f}%"), console=out, transient=True,
                        disable=as_json or not out.is_terminal)
    task = progress.add_task("starting…", total=1.0)

    def on_message(ev: SlackEvent) -> None:
        if as_json:
            return
        first = ev.text.strip().splitlines()[0] if ev.text.strip() else ""
        body = ev.text if ev.what == "posted" else first
        tag = {"posted": "[green]posted[/]", "updated": "[yellow]updated[/]", "reply": "[cyan]thread reply[/]"}[ev.what]
        progress.console.print(f"[dim]{ev.sim_time:%a %d %b %H:%M}[/] [bold]#{ev.channel.lstrip('#')}[/] {tag}", highlight=False)
        progress.console.print(body, markup=False, highlight=False)
        progress.console.print("")

    def on_step(t: datetime, start: datetime, end: datetime) -> None:
        frac = (t - start) / (end - start) if end > start else 1.0
        progress.update(task, completed=frac, description=f"{t:%a %d %b %H:%M}")

    runner = DemoRunner("default", seed=seed, days=days, step=timedelta(minutes=step_minutes),
                        mode="local" if local else "ray", port=port, on_message=on_message, on_step=on_step)
    with progress, _stdout_to_stderr(as_json):
        if not as_json:
            progress.console.print(f"opsradar demo: world {runner.world.summary()}", highlight=False)
            progress.console.print("starting the pipeline" + (" in-process" if local else " on local Ray Serve") + "…")
        result = runner.run(keep_running=keep_running)
    if as_json:
        sys.stdout.write(json.dumps(summary_json(result), default=str) + "\n")
        sys.stdout.flush()
    else:
        table = Table(title=f"opsradar demo: {len(result.incidents)} incidents "
                            f"({result.anomalies} anomalies, {result.alerts} alerts, "
                            f"{sum(1 for e in result.slack if e.what == 'posted')} Slack messages)")
        for col in ("incident", "severity", "sources", "alerts", "top root-cause candidate", "report"):
            table.add_column(col, overflow="fold")
        for row in result.incident_rows():
            table.add_row(row["title"], row["severity"], ", ".join(row["sources"]), str(row["alerts"]),
                          row["root_cause"] or "—", row["report_url"] or "(local run: opsradar report ID)")
        console.print(table)
        if result.api_url:
            console.print(f"API token for this run: {result.token}  (Authorization: Bearer …)")
    if keep_running and not local:
        console.print(f"The API stays up at {result.api_url} (docs at {result.api_url}/docs). Ctrl-C to stop.")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        runner.stop()
    return 0
