"""The ``opsradar`` command line (Typer).

Exit codes: 0 success, 1 a failure or a capability not available yet, 2 invalid configuration or
usage.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from opsradar import __version__
from opsradar.config import Config, find_config_path, load_config
from opsradar.errors import ConfigError, OpsradarError

__all__ = ["app", "main"]

app = typer.Typer(
    name="opsradar",
    help="AIOps event analysis: collect, detect, alert, explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="Check, test and backtest YAML rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

# Piped into a file or a CI log, Rich would wrap tables at 80 columns; use a width that keeps a
# row on one line there (COLUMNS still wins when set).
_PIPE_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
console = Console(width=_PIPE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $OPSRADAR_CONFIG or ./opsradar.yaml).", show_default=False),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"opsradar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """opsradar: AIOps event analysis for delivery and production tools."""


def load_config_or_exit(path: Path | None) -> Config:
    """Load the config; on error print every problem and exit 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def not_available(command: str, issue: int) -> NoReturn:
    err_console.print(f"opsradar {command}: not available yet (tracked in issue {issue}).")
    raise typer.Exit(1)


@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate the config file and print every problem (exit 2 if any)."""
    cfg = load_config_or_exit(config)
    where = find_config_path(config)
    console.print(f"config OK ({where or 'embedded defaults'}): {len(cfg.sources)} sources, "
                  f"{len(cfg.entities.services)} services, store {cfg.store.url}")


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Start the pipeline and HTTP API on local Ray Serve (Ctrl-C stops it cleanly)."""
    from opsradar.serving.run import run_forever

    cfg = load_config_or_exit(config)
    path = find_config_path(config)
    run_forever(cfg, config_path=str(path.resolve()) if path else None, echo=console.print)


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Leave the API up for exploring.")] = False,
    local: Annotated[bool, typer.Option("--local", help="Run the pipeline in-process instead of on Ray Serve.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the world (default: the scenario's).")] = None,
    days: Annotated[float | None, typer.Option("--days", help="Simulated days (default: the scenario's).")] = None,
    step: Annotated[float, typer.Option("--step", help="Simulated minutes per step.")] = 60.0,
    port: Annotated[int, typer.Option("--port", help="Port of the local API.")] = 8000,
) -> None:
    """Run the simulated enterprise end to end and print the incidents."""
    from opsradar.demo.command import demo_command
    from opsradar.logs import setup_logging

    setup_logging("ERROR")
    raise typer.Exit(demo_command(as_json=as_json, keep_running=keep_running, local=local, seed=seed, days=days,
                                  step_minutes=step, port=port, console=console, err_console=err_console))


@app.command()
def collect(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source (its name in the config).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Re-read history from this date (ISO 8601, UTC if no zone).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Stop at this date (ISO 8601).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary of counts per source and kind.")] = False,
    notify_history: Annotated[bool, typer.Option("--notify-history", help="Send incidents found in history to Slack.")] = False,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="Only store events; do not run the detectors.")] = False,
) -> None:
    """Pull history from the configured sources once (backfill), then run it through the detectors."""
    import json

    from rich.progress import Progress, SpinnerColumn, TextColumn

    from opsradar.collectors.backfill import backfill
    from opsradar.store import Store

    cfg = load_config_or_exit(config)
    try:
        since_dt, until_dt = _parse_time(since, "--since"), _parse_time(until, "--until")
    except ValueError as exc:
        err_console.print(f"error: {exc}", highlight=False)
        raise typer.Exit(2) from None
    store = Store(cfg.store.resolved_url())
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console,
                  disable=as_json or not err_console.is_terminal) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(name: str, fetched: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name)
            progress.update(tasks[name], description=f"{name}: {fetched} records")

        summary = backfill(cfg, store, source=source, since=since_dt, until=until_dt, detect=not no_detect,
                           notify_history=notify_history, on_progress=on_progress)
    if as_json:
        sys.stdout.write(json.dumps(summary.as_dict(), indent=2, default=str) + "\n")
    else:
        from rich.table import Table

        table = Table(title="opsradar collect")
        for col in ("source", "status", "fetched", "new", "by kind"):
            table.add_column(col)
        for name, s in summary.sources.items():
            kinds = ", ".join(f"{k}={v}" for k, v in sorted(s.get("by_kind", {}).items()))
            table.add_row(name, "ok" if s["ok"] else f"[red]{s['error']}[/]", str(s.get("fetched", 0)),
                          str(s.get("new", 0)), kinds)
        console.print(table)
        console.print(f"anomalies {summary.anomalies}, alerts {summary.alerts}, new incidents {summary.incidents}")
    if any(not s["ok"] for s in summary.sources.values()):
        raise typer.Exit(1)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: cannot parse {value!r}; use ISO 8601, e.g. 2026-01-05 or 2026-01-05T09:00Z") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@app.command()
def incidents(
    config: ConfigOpt = None,
    status: Annotated[str | None, typer.Option(help="open, acknowledged or resolved (default: all).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List incidents."""
    import json

    from opsradar.alerting.incidents import incident_rows, incidents_table
    from opsradar.store import Store

    cfg = load_config_or_exit(config)
    try:
        rows = incident_rows(Store(cfg.store.resolved_url()), status=status, limit=limit)
    except ValueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        console.print(incidents_table(rows))


@app.command()
def report(
    incident_id: str,
    fmt: Annotated[str, typer.Option("--format", "-f", help="md, json or html.")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print the root-cause report of an incident: what changed, ranked and explained."""
    from opsradar.alerting.rootcause.command import FORMATS, report_text

    if fmt not in FORMATS:
        err_console.print(f"error: --format must be one of {', '.join(FORMATS)}, got {fmt!r}", highlight=False)
        raise typer.Exit(2)
    cfg = load_config_or_exit(config)
    try:
        text = report_text(cfg, incident_id, fmt)
    except OpsradarError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if output is not None:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"report written to {output}", highlight=False)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@rules_app.command("check")
def rules_check(
    paths: Annotated[list[Path] | None, typer.Argument(help="Rule files or folders (default: rules/).")] = None,
) -> None:
    """Validate rule files strictly and report every error (exit 1 if any)."""
    from opsradar.alerting.rules.commands import check_command

    raise typer.Exit(check_command(paths or [Path("rules")], sys.stdout))


@rules_app.command("test")
def rules_test(
    files: Annotated[list[Path] | None, typer.Argument(help="Rule test files (default: rules/tests/*.yaml).")] = None,
) -> None:
    """Run rule unit tests: input alerts and events, expected outcome (exit 1 on failure)."""
    from opsradar.alerting.rules.commands import test_command

    raise typer.Exit(test_command(files or [], sys.stdout))


@rules_app.command("backtest")
def rules_backtest(
    paths: Annotated[list[Path] | None, typer.Argument(help="Candidate rule files or folders.")] = None,
    since: Annotated[str | None, typer.Option(help="Replay from this ISO time (UTC when no zone).")] = None,
    until: Annotated[str | None, typer.Option(help="Replay until this ISO time (UTC when no zone).")] = None,
    baseline: Annotated[list[Path] | None, typer.Option(help="Rules to compare with when none are in force.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Replay stored history through candidate rules and diff against the rules in force."""
    from opsradar.alerting.rules.commands import backtest_command

    raise typer.Exit(backtest_command(paths or [], since=since, until=until, config=config,
                                      baseline=baseline, out=sys.stdout))


def main() -> None:
    try:
        app()
    except OpsradarError as exc:  # anything that escaped a command: a clear message, not a traceback
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
