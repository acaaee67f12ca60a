from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsradar.cli import app
from opsradar.config import Config, load_config, parse_config, resolve_secret
from opsradar.errors import ConfigError
from opsradar.logs import RedactingFilter

BROKEN = """\
store:
  url: 3
  bogus: 1
sources:
  jira:
    type: jira
    url: ftp://jira.example
    projects: []
  ci:
    type: jenkins
    url: http://jenkins.example
    interval: 5 parsecs
api:
  tokens:
    - {name: a, role: god, env: TOKEN_A}
"""


def test_invalid_config_reports_every_error_with_its_path_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BROKEN, file="opsradar.yaml")
    got = [str(p) for p in info.value.problems]
    assert got == [
        "opsradar.yaml:2: store.url: Input should be a valid string (got 3)",
        "opsradar.yaml:3: store.bogus: unknown key",
        "opsradar.yaml:7: sources.jira.url: String should match pattern '^https?://' (got 'ftp://jira.example')",
        "opsradar.yaml:8: sources.jira.projects: List should have at least 1 item after validation, not 0",
        "opsradar.yaml:12: sources.ci.interval: cannot parse duration '5 parsecs': use e.g. '30s', '5m', '1h30m', '2d'",
        "opsradar.yaml:15: api.tokens[0].role: Input should be 'reader', 'operator', 'rule-author' or 'admin' (got 'god')",
    ]


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError, match=r"c.yaml:2: invalid YAML"):
        parse_config("a: 1\n  b: [\n", file="c.yaml")


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'store'"):
        parse_config("store: {}\nstore: {}\n")


def test_cli_exits_2_with_every_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BROKEN)
    result = CliRunner().invoke(app, ["config", "check", "--config", str(cfg)])
    assert result.exit_code == 2
    for path in ("store.url", "store.bogus", "sources.jira.url", "sources.jira.projects", "sources.ci.interval", "api.tokens[0].role"):
        assert path in result.output


def test_config_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detectors: {shards: 4}\ncorrelation: {window: 10m}\n")
    monkeypatch.setenv("OPSRADAR_CONFIG", str(cfg))
    loaded = load_config()
    assert loaded.detectors.shards == 4
    assert loaded.correlation.window == timedelta(minutes=10)


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPSRADAR_CONFIG", raising=False)
    assert load_config() == Config()
    assert Config().store.url == "sqlite:///./.opsradar/state.db"


def test_missing_secret_variable_is_an_error_with_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JK_TOKEN", raising=False)
    text = "sources:\n  ci:\n    type: jenkins\n    url: http://j\n    user: bot\n    token_env: JK_TOKEN\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="c.yaml")
    assert [str(p) for p in info.value.problems] == ["c.yaml:6: sources.ci.token_env: environment variable JK_TOKEN is not set"]


def test_secret_never_appears_in_reprs_or_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    secret_value = "xoxb-123456-very-secret"
    monkeypatch.setenv("SLACK_BOT_TOKEN", secret_value)
    cfg = parse_config("slack: {default_channel: '#ops'}\n")
    secret = resolve_secret(cfg.slack.token_env)
    assert secret is not None
    assert secret.get_secret_value() == secret_value
    for text in (repr(secret), str(secret), repr(cfg), str(cfg.model_dump()), cfg.model_dump_json()):
        assert secret_value not in text

    flt = RedactingFilter([secret_value])
    logger = logging.getLogger("opsradar.test.secrets")
    logger.addFilter(flt)
    with caplog.at_level(logging.INFO, logger="opsradar.test.secrets"):
        logger.info("posting with token %s", secret_value)
        logger.info("headers: Authorization: Bearer abcdef123456")
        logger.info("store postgresql://u:hunter22@db/x")
    logger.removeFilter(flt)
    text = caplog.text
    assert secret_value not in text
    assert "abcdef123456" not in text
    assert "hunter22" not in text
    assert "posting with token ***" in text


def test_entity_graph_distances() -> None:
    cfg = parse_config(
        "entities:\n  services:\n"
        "    shop: {repos: [shop-svc], jobs: [shop-deploy], jira_projects: [SHOP], depends_on: [pay]}\n"
        "    pay: {repos: [pay-svc]}\n"
        "    mail: {repos: [mail-svc]}\n"
    )
    g = cfg.entities
    assert g.distance("repo:shop-svc", "service:shop") == 1
    assert g.distance("repo:shop-svc", "job:shop-deploy") == 2
    assert g.distance("repo:pay-svc", "job:shop-deploy") == 3
    assert g.distance("repo:mail-svc", "service:shop") is None
    assert g.service_of("job:shop-deploy") == "shop"


def test_unknown_dependency_is_reported() -> None:
    with pytest.raises(ConfigError, match="depends on unknown service 'nope'"):
        parse_config("entities:\n  services:\n    a: {depends_on: [nope]}\n")


def test_example_config_is_valid_and_documents_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[1] / "deploy" / "opsradar.example.yaml"
    text = example.read_text()
    for var in ("JIRA_TOKEN", "JENKINS_TOKEN", "ES_API_KEY", "OPSRADAR_TOKEN_READER", "OPSRADAR_TOKEN_ADMIN", "ES_PASSWORD"):
        monkeypatch.setenv(var, "x" * 8)
    cfg = parse_config(text, file=str(example))
    assert set(cfg.sources) >= {"jira", "git", "jenkins", "logs"}

    def keys(model: type, prefix: str = "") -> set[str]:
        from pydantic import BaseModel

        out = set()
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            out.add(name)
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out |= keys(ann)
        return out

    from opsradar import config as c

    for section in (Config, c.JiraSource, c.GitSource, c.GitRepo, c.JenkinsSource, c.ElasticsearchSource,
                    c.ServiceEntities, c.StoreConfig, c.SlackConfig, c.ApiConfig, c.ApiToken,
                    c.RulesConfig, c.DetectorsConfig, c.CorrelationConfig):
        for key in keys(section):
            assert f"{key}:" in text, f"deploy/opsradar.example.yaml does not document {section.__name__}.{key}"


def test_config_round_trips_through_yaml() -> None:
    import yaml

    cfg = parse_config("correlation: {window: 90s, quiet_period: 1h30m}\ndetectors: {checkpoint_interval: 1500ms}\n")
    text = yaml.safe_dump(cfg.model_dump(mode="json"))
    assert "window: 1m30s" in text
    assert parse_config(text) == cfg
    assert parse_config("correlation: {window: PT5M}\n").correlation.window == timedelta(minutes=5)
