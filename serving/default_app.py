"""The application with the embedded defaults, as a bound ``Application`` object.

``serve build`` needs an ``Application`` rather than a builder; ``deploy/serve_config.yaml`` was
generated from this one (``serve build opsradar.serving.default_app:app``), then its
``import_path`` switched to the builder :func:`opsradar.serving.app.build_app` with ``args``.
"""

from __future__ import annotations

from opsradar.serving.app import build_app

__all__ = ["app"]

app = build_app()
