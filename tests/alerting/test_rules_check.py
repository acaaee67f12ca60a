"""``opsradar rules check``: the shipped rules pass; a broken folder gets every error reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsradar.alerting.rules import json_schema, load_rules
from opsradar.cli import app

ROOT = Path(__file__).parents[2]

BROKEN_A = """\
receivers:
  - name: sre
    slack: {channel: "#sre"}
route:
  receiver: sre
  routes:
    - receiver: pager
      matchers: ['severity=~"(critical"']
filters:
  - name: drop-x
    action: drop
    matchers: ['service="x"']
    colour: red
"""

BROKEN_B = """\
event_rules:
  - name: burst
    trigger:
      type: frequency
      match: ['kind="log"']
      count: 5
      window: 5 minutes
  - name: odd
    trigger: {type: sometimes}
inhibit_rules:
  - source_rules: [no-such-rule]
    target_matchers: ['severity="warning"']
filters:
  - name: esc
    action: escalate
    active_time_intervals: [weekend]
    matchers: ['values.x>abc']
  - name: drop-x
    action: drop
"""

EXPECTED = """\
broken/a.yaml:7: route.routes[0].receiver: undefined receiver 'pager'
broken/a.yaml:8: route.routes[0].matchers[0]: invalid regex '(critical': missing ): (critical (got 'severity=~"(critical"')
broken/a.yaml:13: filters[0].colour: unknown key
broken/b.yaml:7: event_rules[0].trigger.window: cannot parse duration '5 minutes': use e.g. '30s', '5m', '1h30m', '2d'
broken/b.yaml:9: event_rules[1].trigger: unknown trigger type 'sometimes': use one of flatline, frequency, new_term, pattern, sequence
broken/b.yaml:11: inhibit_rules[0].source_rules[0]: undefined rule 'no-such-rule'
broken/b.yaml:16: filters[0].active_time_intervals[0]: undefined time interval 'weekend'
broken/b.yaml:17: filters[0].matchers[0]: '>' needs a number, got 'abc' (got 'values.x>abc')
broken/b.yaml:18: filters[1].name: duplicate rule name 'drop-x' (first defined at broken/a.yaml:10)
9 errors
"""


def test_a_broken_folder_reports_every_error_with_file_line_and_path(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.yaml").write_text(BROKEN_A)
    (tmp_path / "broken" / "b.yaml").write_text(BROKEN_B)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["rules", "check", "broken"])
    assert result.output == EXPECTED
    assert result.exit_code == 1


def test_yaml_syntax_errors_and_missing_paths_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.yaml").write_text("filters:\n  - name: x\n   action: drop\n")
    (tmp_path / "dup.yaml").write_text("receivers: []\nreceivers: []\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["rules", "check", "bad.yaml", "dup.yaml", "nope"])
    assert result.output.splitlines() == [
        "bad.yaml:3: invalid YAML: expected <block end>, but found '<block mapping start>'",
        "dup.yaml:2: invalid YAML: duplicate key 'receivers'",
        "nope: no such file or directory",
        "3 errors",
    ]
    assert result.exit_code == 1


def test_the_shipped_rules_pass_check() -> None:
    result = CliRunner().invoke(app, ["rules", "check", str(ROOT / "rules")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rules OK: ")


def test_the_shipped_rule_tests_pass() -> None:
    result = CliRunner().invoke(app, ["rules", "test", *map(str, sorted((ROOT / "rules" / "tests").glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output


def test_every_shipped_rule_file_has_rule_tests_and_every_rule_a_comment() -> None:
    files = sorted(p for p in (ROOT / "rules").glob("*.yaml"))
    tests = {p.name for p in (ROOT / "rules" / "tests").glob("*_test.yaml")}
    assert [f.name for f in files if f"{f.stem}_test.yaml" not in tests and f.stem != "routing"] == []
    rules = load_rules([ROOT / "rules"])
    for f in files:
        lines = f.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.lstrip().startswith("- name: ") and ("filters" in "".join(lines[:i]) or "event_rules" in "".join(lines[:i])):
                assert lines[i - 1].lstrip().startswith("#"), f"{f.name}:{i + 1}: rule without a comment"
    assert len(rules.rule_names) >= 10


def test_the_committed_json_schema_is_up_to_date() -> None:
    committed = (ROOT / "rules" / "schema.json").read_text()
    assert committed == json_schema(), "regenerate: python -m opsradar.alerting.rules.schema > rules/schema.json"
    schema = json.loads(committed)
    assert set(schema["properties"]) == {"receivers", "time_intervals", "route", "filters", "event_rules",
                                         "silences", "inhibit_rules"}
    assert schema["additionalProperties"] is False


def test_event_rules_only_address_event_fields() -> None:
    from opsradar.alerting.rules import load_texts
    from opsradar.errors import RuleError

    text = ("event_rules:\n  - name: a\n    trigger:\n      type: frequency\n"
            "      match: ['kindd=\"log\"', 'labels.level=\"x\"', 'values.n>1']\n"
            "      count: 2\n      window: 1m\n      group_by: [servce, attrs.http.method]\n")
    with pytest.raises(RuleError) as exc:
        load_texts({"x.yaml": text})
    assert [str(p) for p in exc.value.problems] == [
        "x.yaml:5: event_rules[0].trigger.match[0]: unknown event field 'kindd': use source, kind, entity,"
        " entity_type, entity_name, service, id, or labels.x, values.x, attrs.x (got 'kindd=\"log\"')",
        "x.yaml:8: event_rules[0].trigger.group_by[0]: unknown event field 'servce': use source, kind, entity,"
        " entity_type, entity_name, service, id, or labels.x, values.x, attrs.x",
    ]


def test_the_shipped_rule_files_validate_against_the_json_schema() -> None:
    """What editors see: the schema accepts the shipped files and flags an unknown key."""
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads((ROOT / "rules" / "schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for f in sorted((ROOT / "rules").glob("*.yaml")):
        data = yaml.safe_load(f.read_text())
        errors = [e.message for e in validator.iter_errors(json.loads(json.dumps(data, default=str)))]
        assert errors == [], f"{f.name}: {errors}"
    bad = {"filters": [{"name": "x", "action": "drop", "colour": "red"}]}
    assert any("colour" in e.message for e in validator.iter_errors(bad))
