"""Print the JSON Schema of rule files: ``python -m opsradar.alerting.rules.schema > rules/schema.json``.

``tests/alerting/test_rules_check.py`` fails when the committed ``rules/schema.json`` is stale.
"""

from __future__ import annotations

import sys

from opsradar.alerting.rules.model import json_schema

__all__ = ["main"]


def main() -> None:
    sys.stdout.write(json_schema())


if __name__ == "__main__":
    main()
