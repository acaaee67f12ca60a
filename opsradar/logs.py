"""Logging setup, with secrets kept out of every record."""

from __future__ import annotations

import logging
import os
import re

__all__ = ["RedactingFilter", "setup_logging"]

_PATTERNS = [
    re.compile(r"(xox[abposr]-[A-Za-z0-9-]+)"),  # Slack tokens
    re.compile(r"(?i)(authorization:\s*(?:bearer|basic)\s+)([^\s'\"]+)"),
    re.compile(r"(?i)((?:token|password|secret|api[_-]?key)[\"']?\s*[=:]\s*[\"']?)([^\s'\",}]+)"),
    re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)"),  # passwords in URLs
]


class RedactingFilter(logging.Filter):
    """Masks tokens, passwords and the values of known secret variables in log messages."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if len(s) >= 4]

    def add_secret(self, value: str) -> None:
        if len(value) >= 4 and value not in self.secrets:
            self.secrets.append(value)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        text = _PATTERNS[0].sub("xox?-***", text)
        text = _PATTERNS[1].sub(r"\1***", text)
        text = _PATTERNS[2].sub(r"\1***", text)
        text = _PATTERNS[3].sub(r"\1***\3", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        redacted = self.redact(msg)
        if redacted != msg:
            record.msg, record.args = redacted, None
        return True


_filter = RedactingFilter()


def setup_logging(level: str | None = None) -> RedactingFilter:
    """Configure the root logger once (level from ``$OPSRADAR_LOG_LEVEL``, default INFO)."""
    level = level or os.environ.get("OPSRADAR_LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_filter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    return _filter
