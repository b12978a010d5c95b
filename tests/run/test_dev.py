"""The pieces of `cj dev`: tokens, settings, the private cluster's preconditions, the banner."""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

import pytest

from cj.config import AfterSuccess, Role, ToolSettings, load_settings
from cj.dev import (
    DEV_POLL_MAX_S,
    DevError,
    DevLayout,
    DevTokens,
    banner,
    build_settings,
    check_ports_free,
    database_configured,
    ignored_settings,
    load_or_create_tokens,
    private_database,
)
from cj_api.app import ApiEndpoints


def test_tokens_are_generated_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = load_or_create_tokens(path)
    assert first.agent != first.reader and len(first.agent) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_tokens(path) == first
    assert "agent" not in repr(first).replace("agent=***", "")  # no secret in a repr


def test_a_damaged_tokens_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"agent": "short", "reader": "x" * 20}))
    with pytest.raises(DevError, match=r"tokens\.json is not a valid tokens file.*delete it"):
        load_or_create_tokens(path)
    path.write_text("{")
    with pytest.raises(DevError, match="not a valid tokens file"):
        load_or_create_tokens(path)


def test_dev_settings_replace_what_dev_mode_owns_and_keep_the_rest(tmp_path: Path) -> None:
    base = load_settings(
        ToolSettings,
        env={
            "CJ_LOGGING_LEVEL": "debug",
            "CJ_ENCODER_BITRATE_KBPS": "64",
            "CJ_QUEUE_KIND": "nsq",
            "CJ_API_REST_PORT": "9999",
        },
    )
    layout = DevLayout(tmp_path / "var")
    tokens = DevTokens(agent="a" * 20, reader="r" * 20)
    settings = build_settings(
        base,
        layout,
        tokens,
        database_url="postgresql://x@127.0.0.1:5/db",
        database="test",
        rest_port=0,
        timezone="Asia/Yekaterinburg",
    )
    # Kept from the configuration.
    assert settings.api.logging.level == "debug" and settings.agent.logging.level == "debug"
    assert settings.encoder.encoder.bitrate_kbps == 64
    # Owned by dev mode.
    assert settings.api.queue.kind == "postgres" and settings.encoder.queue.kind == "postgres"
    assert settings.api.api.rest_port == 0 and settings.api.api.grpc_port == 50051
    assert settings.api.database.url.get_secret_value() == "postgresql://x@127.0.0.1:5/db"
    assert settings.api.storage == settings.encoder.storage
    paths = {name: b.path for name, b in settings.api.storage.backends.items()}  # type: ignore[union-attr]
    assert paths == {"temp": layout.temp_storage, "recordings": layout.recordings_storage}
    roles = {t.token.get_secret_value(): t.roles for t in settings.api.auth.tokens}
    assert roles == {"a" * 20: {Role.AGENT}, "r" * 20: {Role.READER}}
    agent = settings.agent.agent
    assert agent.token is not None and agent.token.get_secret_value() == "a" * 20
    assert agent.poll_max_s == DEV_POLL_MAX_S
    (source,) = agent.sources
    assert source.cdr_dir == source.recordings_dir == layout.spool
    assert source.after_success is AfterSuccess.ARCHIVE and source.archive_dir == layout.archive
    assert source.timezone == "Asia/Yekaterinburg"
    assert ignored_settings(base) == ["api.rest_port", "queue.kind"]
    assert ignored_settings(ToolSettings()) == []


def test_a_configured_database_is_recognised(tmp_path: Path) -> None:
    assert database_configured({"CJ_DATABASE_URL": "postgresql://h/db"}, None)
    assert not database_configured({"CJ_DATABASE_URL": " "}, None)
    config = tmp_path / "cj.toml"
    config.write_text('[database]\nurl = "postgresql://h/db"\n')
    assert database_configured({}, config)
    assert database_configured({"CJ_CONFIG": str(config)}, None)
    config.write_text("[database]\npool_size = 3\n")
    assert not database_configured({}, config)


def test_a_taken_port_names_the_option_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DevError, match=rf"port {port} on 127\.0\.0\.1 is in use.*--rest-port"):
            check_ports_free("127.0.0.1", {"--grpc-port": 0, "--rest-port": port})
    check_ports_free("127.0.0.1", {"--grpc-port": 0, "--rest-port": 0})  # 0: nothing to check


def test_without_postgresql_binaries_the_message_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(DevError) as error, private_database(DevLayout(tmp_path), bin_dir=None):
        pass
    message = str(error.value)
    assert "apt-get install postgresql" in message and "CJ_DATABASE_URL=" in message


def test_the_banner_commands_work_from_where_they_are_printed(tmp_path: Path) -> None:
    layout = DevLayout(tmp_path / "my var")
    settings = build_settings(
        ToolSettings(),
        layout,
        DevTokens(agent="a" * 20, reader="r" * 20),
        database_url="postgresql://x@h/db",
        database="postgresql://x@h/db",
    )
    endpoints = ApiEndpoints(host="127.0.0.1", grpc_port=50051, rest_port=8080, tls=False)
    inside = banner(settings, endpoints, cwd=tmp_path)
    commands = [line[4:] for line in inside.splitlines() if line.startswith("  $ ")]
    # Paths under the working directory are relative and quoted (a space here).
    assert shlex.split(commands[0])[-1] == "my var/spool/"
    assert f"-o 'my var/downloads/{'5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111'}.mp3'" in commands[4]
    assert all("Bearer " + "r" * 20 in c for c in commands[1:])
    assert "http://127.0.0.1:8080/api/v1/calls?phone=4957001020" in commands[1]
    # Elsewhere they are absolute, so they work from any directory.
    outside = banner(settings, endpoints, cwd=tmp_path / "elsewhere")
    assert str(tmp_path / "my var" / "spool") in outside
    assert "gRPC API   127.0.0.1:50051" in outside
