"""Configuration: TOML + CJ_* environment, errors that name the key, hidden secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from cj.config import (
    AgentSettings,
    ApiSettings,
    ConfigError,
    EncoderSettings,
    Role,
    S3StorageConfig,
    ToolSettings,
    load_settings,
)

FULL = """
[api]
grpc_port = 6000

[database]
url = "postgresql://cj:hunter2-secret@db/cj"
pool_size = 5

[storage]
temporary = "incoming"
permanent = "archive"

[storage.backends.incoming]
kind = "filesystem"
path = "/srv/cj/incoming"

[storage.backends.archive]
kind = "s3"
bucket = "recordings"
endpoint_url = "http://s3:8333"
access_key_id = "AKIA"
secret_access_key = "s3-very-secret"

[[auth.tokens]]
name = "pbx1"
token = "agent-token-0123456789"
roles = ["agent"]

[[agent.sources]]
name = "fs1"
cdr_dir = "/var/log/freeswitch/json_cdr"
recordings_dir = "/var/lib/freeswitch/recordings"
format = "freeswitch"
timezone = "Europe/Moscow"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cj.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings(ApiSettings, env={})
    assert settings.api.grpc_port == 50051
    assert settings.storage.temporary in settings.storage.backends
    assert settings.queue.kind == "postgres"


def test_file_and_environment_merge_per_daemon(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    env = {"CJ_API_GRPC_PORT": "7000", "CJ_ENCODER_BITRATE_KBPS": "48"}
    api = load_settings(ApiSettings, path, env)
    assert api.api.grpc_port == 7000  # environment wins over the file
    assert api.database.pool_size == 5
    archive = api.storage.backends["archive"]
    assert isinstance(archive, S3StorageConfig) and archive.bucket == "recordings"
    assert api.auth.tokens[0].roles == frozenset({Role.AGENT})
    encoder = load_settings(EncoderSettings, path, env)
    assert encoder.encoder.bitrate_kbps == 48
    agent = load_settings(AgentSettings, path, env)
    assert agent.agent.sources[0].timezone == "Europe/Moscow"


def test_secrets_never_appear_in_repr(tmp_path: Path) -> None:
    settings = load_settings(ToolSettings, write(tmp_path, FULL), env={})
    text = repr(settings) + str(settings)
    for secret in ("hunter2-secret", "s3-very-secret", "agent-token-0123456789"):
        assert secret not in text


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    text = FULL.replace("pool_size = 5", 'pool_size = "hunter2-secret"')
    with pytest.raises(ConfigError) as info:
        load_settings(ApiSettings, write(tmp_path, text), env={})
    assert "hunter2-secret" not in str(info.value)
    assert "database.pool_size" in str(info.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CJ_API_GRPC_PORT": "70000"}, "api.grpc_port (from environment CJ_API_GRPC_PORT)"),
        ({"CJ_DATABASE_POOL_SIZE": "0"}, "database.pool_size"),
        ({"CJ_DATABASE_POOL_SIZE": "many"}, "database.pool_size"),
        ({"CJ_DATABSE_URL": "x"}, "CJ_DATABSE_URL: not a setting"),
        ({"CJ_DATABASE_URLS": "x"}, "CJ_DATABASE_URLS: no such setting"),
        ({"CJ_STORAGE_TEMPORARY": "nope"}, "storage.temporary names 'nope'"),
        ({"CJ_STORAGE_BACKENDS_EXTRA_PATH": "/x"}, "storage.backends.extra"),
        ({"CJ_QUEUE_KIND": "kafka"}, "queue.kind"),
        ({"CJ_AUTH_TOKENS": "[{"}, "CJ_AUTH_TOKENS: invalid JSON"),
        (
            {"CJ_AUTH_TOKENS": '[{"name":"a","token":"short","roles":["agent"]}]'},
            "at least 16 characters",
        ),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(ToolSettings, env=env)
    assert expected in str(info.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(ApiSettings, tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(ApiSettings, write(tmp_path, "[api\n"), env={})
    with pytest.raises(ConfigError, match=r"unknown section \[apy\]"):
        load_settings(ApiSettings, write(tmp_path, "[apy]\nx = 1\n"), env={})
    with pytest.raises(ConfigError, match=r"api\.grpc_prot .*from .*cj\.toml"):
        load_settings(ApiSettings, write(tmp_path, "[api]\ngrpc_prot = 1\n"), env={})


def test_agent_source_validation(tmp_path: Path) -> None:
    bad_zone = FULL.replace("Europe/Moscow", "Mars/Olympus")
    with pytest.raises(ConfigError, match="unknown timezone 'Mars/Olympus'"):
        load_settings(AgentSettings, write(tmp_path, bad_zone), env={})
    archive = FULL.replace(
        'format = "freeswitch"', 'format = "freeswitch"\nafter_success = "archive"'
    )
    with pytest.raises(ConfigError, match="needs archive_dir"):
        load_settings(AgentSettings, write(tmp_path, archive), env={})


def test_environment_amends_default_named_entries() -> None:
    settings = load_settings(ToolSettings, env={"CJ_STORAGE_BACKENDS_TEMP_PATH": "/data/tmp"})
    assert str(settings.storage.backends["temp"].path) == "/data/tmp"  # type: ignore[union-attr]
    assert "recordings" in settings.storage.backends


def test_lists_from_environment() -> None:
    settings = load_settings(
        ToolSettings,
        env={
            "CJ_QUEUE_NSQD_TCP_ADDRESSES": "a:4150, b:4150",
            "CJ_AUTH_TOKENS": '[{"name":"r","token":"reader-token-0123456789","roles":["reader"]}]',
            "CJ_API_TLS_CERT_FILE": "",
        },
    )
    assert settings.queue.nsqd_tcp_addresses == ("a:4150", "b:4150")
    assert settings.auth.tokens[0].roles == frozenset({Role.READER})
    assert settings.api.tls_cert_file is None


def test_settings_are_frozen() -> None:
    settings = load_settings(ApiSettings, env={})
    with pytest.raises(AttributeError):
        settings.api.grpc_port = 1  # type: ignore[misc]


def test_database_read_url_is_optional_and_secret() -> None:
    assert load_settings(ApiSettings, env={}).database.read_url is None
    url = "postgresql://cj:hunter2@replica:5432/calljournal"
    settings = load_settings(ApiSettings, env={"CJ_DATABASE_READ_URL": url})
    read_url = settings.database.read_url
    assert read_url is not None and read_url.get_secret_value() == url
    assert "hunter2" not in repr(settings.database)
