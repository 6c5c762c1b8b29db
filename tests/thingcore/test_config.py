"""Settings sources and their order: overrides > THINGCORE_* environment > thingcore.toml."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from broker.config import BrokerSettings
from thingcore.config import load_settings
from thingcore.errors import ConfigError


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No THINGCORE_* variables from the caller's shell, and a working directory of our own
    (so no stray thingcore.toml is read)."""
    for key in list(os.environ):
        if key.startswith("THINGCORE_"):
            monkeypatch.delenv(key)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def write_toml(path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("THINGCORE_CONFIG", str(path))
    return path


def test_defaults_without_any_source() -> None:
    settings = load_settings()
    assert settings.broker == BrokerSettings()
    assert settings.broker.port == 1884  # 1883 stays free for a local Mosquitto
    assert (settings.data_dir, settings.log_level) == (Path("var"), "INFO")


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THINGCORE_BROKER__PORT", "1885")
    monkeypatch.setenv("THINGCORE_BROKER__HOST", "0.0.0.0")
    monkeypatch.setenv("THINGCORE_BROKER__MAX_INFLIGHT", "7")
    monkeypatch.setenv("THINGCORE_BROKER__SESSION_EXPIRY", "2.5")
    monkeypatch.setenv("THINGCORE_BROKER__QUEUE_QOS0_OFFLINE", "true")
    monkeypatch.setenv("THINGCORE_BROKER__TLS_CERTFILE", "/etc/thingcore/server.pem")
    monkeypatch.setenv("THINGCORE_DATA_DIR", "/srv/thingcore")
    monkeypatch.setenv("THINGCORE_LOG_LEVEL", "DEBUG")
    settings = load_settings()
    broker = settings.broker
    assert (broker.port, broker.host, broker.max_inflight) == (1885, "0.0.0.0", 7)
    assert (broker.session_expiry, broker.queue_qos0_offline) == (2.5, True)
    assert broker.tls_certfile == Path("/etc/thingcore/server.pem")
    assert (settings.data_dir, settings.log_level) == (Path("/srv/thingcore"), "DEBUG")
    # Everything not set keeps its default.
    assert broker.max_queued_messages == BrokerSettings().max_queued_messages


def test_toml_named_by_thingcore_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(
        tmp_path / "elsewhere.toml",
        'data_dir = "/srv/from-toml"\nlog_level = "WARNING"\n\n'
        "[broker]\nport = 1999\nmax_inflight = 3\nsnapshot_interval = 12.5\n",
        monkeypatch,
    )
    settings = load_settings()
    assert (settings.broker.port, settings.broker.max_inflight) == (1999, 3)
    assert settings.broker.snapshot_interval == 12.5
    assert (settings.data_dir, settings.log_level) == (Path("/srv/from-toml"), "WARNING")


def test_thingcore_toml_in_the_working_directory(isolated: Path) -> None:
    (isolated / "thingcore.toml").write_text("[broker]\nport = 2001\n", encoding="utf-8")
    assert load_settings().broker.port == 2001


def test_environment_beats_toml_field_by_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(tmp_path / "t.toml", "[broker]\nport = 1999\nmax_inflight = 3\n", monkeypatch)
    monkeypatch.setenv("THINGCORE_BROKER__PORT", "1885")
    broker = load_settings().broker
    assert broker.port == 1885  # from the environment
    assert broker.max_inflight == 3  # still from the file


def test_overrides_beat_environment_and_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(
        tmp_path / "t.toml",
        'data_dir = "/from-toml"\n[broker]\nport = 1999\nmax_inflight = 3\nhost = "10.0.0.1"\n',
        monkeypatch,
    )
    monkeypatch.setenv("THINGCORE_BROKER__PORT", "1885")
    monkeypatch.setenv("THINGCORE_BROKER__MAX_INFLIGHT", "9")
    monkeypatch.setenv("THINGCORE_DATA_DIR", "/from-env")
    settings = load_settings(broker={"port": 0}, data_dir=Path("/from-flag"))
    assert settings.broker.port == 0  # override
    assert settings.broker.max_inflight == 9  # environment, over the file
    assert settings.broker.host == "10.0.0.1"  # file
    assert settings.data_dir == Path("/from-flag")


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.broker.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("THINGCORE_BROKER__MAX_INFLIGHT", "abc", "broker.max_inflight"),
        ("THINGCORE_BROKER__PORT", "eighteen", "broker.port"),
        ("THINGCORE_BROKER__SESSION_EXPIRY", "soon", "broker.session_expiry"),
        ("THINGCORE_BROKER__QUEUE_QOS0_OFFLINE", "maybe", "broker.queue_qos0_offline"),
        ("THINGCORE_LOG_LEVEL", "LOUD", "log_level"),
        ("THINGCORE_BROKER__MAX_INFLIGT", "5", "broker.max_infligt"),  # a typo is not ignored
    ],
)
def test_invalid_environment_value_names_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        load_settings()


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('[broker]\nport = "abc"\n', "broker.port"),
        ("[broker]\nmax_inflight = 2.5\n", "broker.max_inflight"),
        ("[broker]\nno_such_setting = 1\n", "broker.no_such_setting"),
        ('log_level = "LOUD"\n', "log_level"),
    ],
)
def test_invalid_toml_value_names_the_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toml: str, field: str
) -> None:
    write_toml(tmp_path / "t.toml", toml, monkeypatch)
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        load_settings()


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THINGCORE_BROKER__PORT", "x")
    monkeypatch.setenv("THINGCORE_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "broker.port" in str(caught.value)
    assert "log_level" in str(caught.value)


def test_missing_config_file_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "thingcore.toml"
    monkeypatch.setenv("THINGCORE_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=str(missing)):
        load_settings()


def test_toml_syntax_error_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = write_toml(tmp_path / "broken.toml", "[broker\nport = 1885\n", monkeypatch)
    with pytest.raises(ConfigError, match=str(bad)):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("THINGCORE_BROKER__PORT", "70000", "port"),  # uvloop would listen on 70000 % 65536
        ("THINGCORE_BROKER__PORT", "-1", "port"),
        ("THINGCORE_BROKER__TLS_PORT", "65536", "tls_port"),
        ("THINGCORE_BROKER__MAX_INFLIGHT", "0", "max_inflight"),
        ("THINGCORE_BROKER__HOUSEKEEPING_INTERVAL", "0", "housekeeping_interval"),
    ],
)
def test_out_of_range_value_is_a_config_error_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        load_settings()


def test_remote_target_settings_from_toml_and_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(
        tmp_path / "targets.toml",
        '[rules.aws]\nsqs_endpoint_url = "http://127.0.0.1:4566"\nregion = "eu-west-1"\n\n'
        "[rules.http]\nallow_insecure_http = true\ntimeout = 2.5\n",
        monkeypatch,
    )
    monkeypatch.setenv("THINGCORE_RULES__AMQP__URL", "amqps://u:p@rabbit.example:5671/iot")
    rules = load_settings().rules
    assert rules.aws.region == "eu-west-1"
    # Only the service with an endpoint goes to AWS while aws_targets is unset.
    assert [rules.aws_mode(s) for s in ("s3", "sqs", "sns", "lambda")] == [
        "local",
        "aws",
        "local",
        "local",
    ]
    assert (rules.http.allow_insecure_http, rules.http.timeout) == (True, 2.5)
    assert rules.amqp.url == "amqps://u:p@rabbit.example:5671/iot"
    monkeypatch.setenv("THINGCORE_RULES__AWS_TARGETS", "local")
    assert load_settings().rules.aws_mode("sqs") == "local"


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("THINGCORE_RULES__AWS_TARGETS", "cloud", "aws_targets"),
        ("THINGCORE_RULES__AMQP__URL", "http://rabbit:5672/", "amqp"),
        ("THINGCORE_RULES__HTTP__TIMEOUT", "0", "http"),
    ],
)
def test_bad_remote_target_settings_name_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        load_settings()
