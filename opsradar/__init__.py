"""opsradar: AIOps event analysis for delivery and production tools.

Collect CI/CD, QA, security and production activity; detect anomalies online; alert through YAML
rules; correlate into incidents; explain them with ranked root-cause changes.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("opsradar")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
