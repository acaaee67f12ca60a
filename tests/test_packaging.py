"""The layout is fixed: five folders install as one package, and every package is listed."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from opsradar.cli import app

ROOT = Path(__file__).parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = tool["package-dir"]
    listed = set(tool["packages"])
    found = set()
    for pkg, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found == listed, f"not listed: {sorted(found - listed)}; listed but missing: {sorted(listed - found)}"


def test_the_five_packages_import_from_any_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import opsradar.collectors, opsradar.detectors, opsradar.alerting, opsradar.serving; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_no_module_imports_the_folders_by_their_bare_names() -> None:
    bad = []
    for folder in ("opsradar", "collectors", "detectors", "alerting", "serving", "bench", "tests"):
        for py in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(py.read_text().splitlines(), 1):
                s = line.strip()
                for name in ("collectors", "detectors", "alerting", "serving"):
                    if s.startswith((f"from {name} ", f"from {name}.", f"import {name}")):
                        bad.append(f"{py.relative_to(ROOT)}:{n}: {s}")
    assert bad == []


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("run", "demo", "collect", "rules", "incidents", "report", "config"):
        assert cmd in result.output


def test_version() -> None:
    from opsradar import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"opsradar {__version__}"


def test_every_command_is_implemented() -> None:
    """No command is left as a "not available yet" placeholder."""
    import inspect

    from opsradar import cli

    placeholders = [name for name, fn in vars(cli).items()
                    if inspect.isfunction(fn) and name != "not_available" and "not_available(" in inspect.getsource(fn)]
    assert placeholders == []
