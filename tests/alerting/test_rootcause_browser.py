"""The HTML report page in headless Chromium: it renders, the chart is in the DOM, no console error.

Needs ``/usr/bin/chromium`` (``bash .ci/browser.sh`` installs it as root); skipped loudly otherwise.
The screenshot goes to ``test-artifacts/report.png``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from opsradar.alerting.rootcause import build_report
from opsradar.store import Store
from tests.alerting.rootcause_world import GRAPH, INCIDENT_ID, populate

ROOT = Path(__file__).parents[2]
CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        reason = "chromium NOT INSTALLED (run `bash .ci/browser.sh` as root): the report page test is SKIPPED"
        warnings.warn(reason, stacklevel=1)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def page(tmp_path: Path) -> Path:
    store = Store(f"sqlite:///{tmp_path}/state.db")
    populate(store)
    html = build_report(INCIDENT_ID, store, GRAPH).to_html()
    store.close()
    out = tmp_path / "report.html"
    out.write_text(html, encoding="utf-8")
    return out


def _run(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_the_report_page_renders_with_its_chart_and_no_console_error(chromium: str, page: Path, tmp_path: Path) -> None:
    dom = _run(chromium, tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<svg" in html
    assert 'id="rc-chart"' in html
    assert re.search(r'<g class="change" data-rank="1"', html)
    assert "<polyline" in html
    assert 'class="anomaly"' in html
    assert 'id="candidates"' in html
    assert "Most likely:" in html
    # the hostile incident title stayed text: no element was made of it
    assert "<script" not in html.lower()
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []

    shot = ROOT / "test-artifacts" / "report.png"
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    res = _run(chromium, tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.stat().st_size > 10_000  # a real picture, not an empty page
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
