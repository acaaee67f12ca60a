"""The exceptions that opsradar raises.

The tree::

    OpsradarError
    ├── ConfigError          an invalid config file; carries every problem with its YAML path
    ├── StoreError           the store could not be opened, migrated or written
    ├── CollectorError       a source could not be read (wraps httpx / elasticsearch / git errors)
    │   ├── SourceAuthError      401/403: the credentials are wrong
    │   ├── SourceUnavailable    connection refused, timeout, 5xx, 429 (retryable)
    │   └── SourceDataError      the source answered, but with something we cannot parse
    ├── RuleError            rule files that do not validate; carries every problem with file, line, path
    └── NotifyError          a notification could not be delivered (says whether a retry may help)

Context goes in keyword arguments and foreign exceptions are translated at the boundary with
``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CollectorError",
    "ConfigError",
    "NotifyError",
    "OpsradarError",
    "Problem",
    "RuleError",
    "SourceAuthError",
    "SourceDataError",
    "SourceUnavailable",
    "StoreError",
]


class OpsradarError(Exception):
    """Base class of every error opsradar raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a file: where it is and what is wrong.

    ``str(problem)`` gives ``file:line: path: message``, leaving out the parts that are unknown.
    """

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class _ProblemsError(OpsradarError):
    def __init__(self, problems: list[Problem], *, what: str) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{what}: {n} error{'s' if n != 1 else ''}\n{lines}")


class ConfigError(_ProblemsError):
    """The config file is invalid. ``problems`` lists every error, each with its YAML path."""

    def __init__(self, problems: list[Problem], *, file: str | None = None) -> None:
        self.file = file
        super().__init__(problems, what=f"invalid config {file}" if file else "invalid config")


class RuleError(_ProblemsError):
    """Rule files are invalid. ``problems`` lists every error with file, line and YAML path."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, what="invalid rules")


class StoreError(OpsradarError):
    """The store could not be opened, migrated or written."""


class CollectorError(OpsradarError):
    """A source could not be read. ``source`` names it; ``hint`` says what the user should check."""

    retryable: bool = False

    def __init__(self, message: str, *, source: str, hint: str = "", retry_after: float | None = None) -> None:
        self.source = source
        self.hint = hint
        self.retry_after = retry_after
        text = f"source {source!r}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class SourceAuthError(CollectorError):
    """The source rejected our credentials (401/403)."""


class SourceUnavailable(CollectorError):
    """The source could not be reached or asked us to slow down; worth retrying."""

    retryable = True


class SourceDataError(CollectorError):
    """The source answered with data that cannot be parsed."""


class NotifyError(OpsradarError):
    """A notification could not be delivered. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)
