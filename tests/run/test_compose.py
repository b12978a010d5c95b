"""docker/compose.yaml, its env file and docker/Dockerfile refer only to things that exist.

No Docker engine here: the files are parsed and checked against the compose
specification's JSON schema, the project's console scripts and settings schema, the
repository's files, and the images' known binaries.
"""

from __future__ import annotations

import copy
import importlib.resources
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cj.config import (
    AgentSettings,
    ApiSettings,
    ConfigError,
    EncoderSettings,
    FilesystemStorageConfig,
    Role,
    S3StorageConfig,
    ToolSettings,
    load_settings,
)
from tests.run.compose import (
    COMPOSE_FILE,
    DOCKER_DIR,
    DOCKERFILE,
    OUR_IMAGE,
    ROOT,
    console_scripts,
    dockerfile_copies,
    dockerfile_env,
    dockerfile_instructions,
    interpolate,
    load_compose,
    parse_env_file,
)

COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if s.get("image") == OUR_IMAGE}
# What each of our services runs, and the settings it loads.
DAEMON_SETTINGS: dict[str, type[Any]] = {
    "cj-api": ApiSettings,
    "cj-encoder": EncoderSettings,
    "cj-agent": AgentSettings,
    "migrate": ToolSettings,
}
# Programs known to be in the third-party images (nsqio/nsq links its binaries at /).
IMAGE_PROGRAMS = {
    "nsqio/nsq": {"/nsqd", "/nsqlookupd", "/nsqadmin", "wget"},
    "chrislusf/seaweedfs": {"/bin/sh", "weed", "wget"},
    "postgres": {"pg_isready"},
}
# Ports the third-party servers listen on with the flags we give them.
IMAGE_PORTS = {"nsqlookupd": {4160, 4161}, "nsqd": {4150, 4151}, "nsqadmin": {4171}}


def image_name(service: dict[str, Any]) -> str:
    return str(service["image"]).split(":", 1)[0]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("entrypoint") or service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else list(command)


def service_env(name: str) -> dict[str, str]:
    """What a container's environment holds: image ENV, env files, then `environment`."""
    service = SERVICES[name]
    env = dockerfile_env() if name in OURS else {}
    for env_file in service.get("env_file", []):
        env.update(parse_env_file(DOCKER_DIR / env_file))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())  # type: ignore[no-any-return]


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(COMPOSE)
    ]
    assert errors == []
    # The schema is strict enough to catch a misspelt key.
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["cj-api"]["comand"] = ["cj-api"]
    assert not validator.is_valid(broken)


def test_every_service_runs_a_program_that_exists() -> None:
    scripts = console_scripts()
    copies = dockerfile_copies()
    mounts = {
        target: (DOCKER_DIR / source).resolve()
        for service in SERVICES.values()
        for source, target, *_ in (v.split(":") for v in service.get("volumes", []))
        if source.startswith(".")
    }
    for name, service in SERVICES.items():
        command = command_of(service)
        if name in OURS:
            assert command, f"{name}: no command"
            if command[0] == "python":
                script = command[1]
                assert script in copies, f"{name}: {script} is not copied into the image"
                assert copies[script].is_file(), f"{name}: {copies[script]} does not exist"
            else:
                assert command[0] in scripts, f"{name}: {command[0]} is not a console script"
            continue
        programs = IMAGE_PROGRAMS[image_name(service)]
        if command:
            assert command[0] in programs, f"{name}: {command[0]} is not in the image"
        if command[:1] == ["/bin/sh"]:
            script = command[1]
            assert script in mounts and mounts[script].is_file(), f"{name}: {script} not mounted"
            assert subprocess.run(["sh", "-n", str(mounts[script])], check=False).returncode == 0


def test_the_daemons_get_the_commands_and_settings_they_need() -> None:
    commands = {name: command_of(s)[0] for name, s in OURS.items()}
    assert commands == {
        "migrate": "python",
        "cj-api": "cj-api",
        "cj-encoder": "cj-encoder",
        "cj-agent": "cj-agent",
    }


@pytest.mark.parametrize("name", sorted(DAEMON_SETTINGS))
def test_every_cj_variable_is_a_setting_with_a_valid_value(name: str) -> None:
    env = service_env(name)
    assert any(k.startswith("CJ_") for k in env)
    try:
        # ToolSettings knows every section: an unknown CJ_* name fails here.
        load_settings(ToolSettings, env=env)
        settings = load_settings(DAEMON_SETTINGS[name], env=env)
    except ConfigError as exc:
        pytest.fail(f"{name}: {exc}")
    if name == "cj-api":
        tokens = {t.token.get_secret_value(): t.roles for t in settings.auth.tokens}
        assert any(Role.READER in roles for roles in tokens.values())
        agent_env = service_env("cj-agent")
        agent_token = load_settings(AgentSettings, env=agent_env).agent.token
        assert agent_token is not None
        assert Role.AGENT in tokens[agent_token.get_secret_value()], "the agent's token is unknown"


def test_the_database_url_matches_the_postgres_container() -> None:
    postgres = service_env("postgres")
    url = load_settings(ToolSettings, env=service_env("migrate")).database.url.get_secret_value()
    expected = (
        f"postgresql://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert url == expected


def test_storages_are_shared_where_they_must_be() -> None:
    api = load_settings(ApiSettings, env=service_env("cj-api"))
    encoder = load_settings(EncoderSettings, env=service_env("cj-encoder"))
    assert api.storage == encoder.storage
    temp = api.storage.backends[api.storage.temporary]
    permanent = api.storage.backends[api.storage.permanent]
    # Uploaded WAVs: a volume mounted at the temp path in the API and every encoder.
    assert isinstance(temp, FilesystemStorageConfig)
    for name in ("cj-api", "cj-encoder"):
        assert f"cj-temp:{temp.path}" in SERVICES[name]["volumes"]
    # MP3s: SeaweedFS, with the credentials SeaweedFS is started with.
    assert isinstance(permanent, S3StorageConfig)
    assert permanent.endpoint_url == "http://seaweedfs:8333"
    seaweed = service_env("seaweedfs")
    assert permanent.access_key_id == seaweed["CJ_STORAGE_BACKENDS_RECORDINGS_ACCESS_KEY_ID"]
    assert permanent.secret_access_key is not None
    secret = seaweed["CJ_STORAGE_BACKENDS_RECORDINGS_SECRET_ACCESS_KEY"]
    assert permanent.secret_access_key.get_secret_value() == secret


def test_queue_and_agent_point_at_services_that_exist() -> None:
    api = load_settings(ApiSettings, env=service_env("cj-api"))
    encoder = load_settings(EncoderSettings, env=service_env("cj-encoder"))
    assert api.queue == encoder.queue and api.queue.kind == "nsq"
    for address in (*api.queue.nsqd_tcp_addresses, *api.queue.lookupd_http_addresses):
        host, port = address.rsplit(":", 1)
        assert host in SERVICES and int(port) in IMAGE_PORTS[host], address
    agent = load_settings(AgentSettings, env=service_env("cj-agent")).agent
    host, port = agent.server.rsplit(":", 1)
    assert host == "cj-api" and int(port) == api.api.grpc_port
    # The agent watches the bind-mounted spool.
    assert [s.cdr_dir for s in agent.sources] == [Path("/spool")]
    assert "./spool:/spool" in SERVICES["cj-agent"]["volumes"]


def test_nsqd_writes_every_message_to_disk() -> None:
    command = command_of(SERVICES["nsqd"])
    assert "--mem-queue-size=0" in command
    assert "--data-path=/data" in command
    assert "nsqd-data:/data" in SERVICES["nsqd"]["volumes"]


def test_published_ports_are_the_ones_the_daemons_listen_on() -> None:
    api = load_settings(ApiSettings, env=service_env("cj-api")).api
    assert api.host == "0.0.0.0"
    published = {}
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            parts = interpolate(str(mapping)).split(":")
            published[(name, int(parts[-1]))] = parts[:-1]
    assert published[("cj-api", api.grpc_port)] == ["50051"]
    assert published[("cj-api", api.rest_port)] == ["8080"]
    for (name, port), host in published.items():
        if name != "cj-api":  # admin interfaces stay on the host's loopback
            assert host[0] == "127.0.0.1", f"{name}:{port} is published on every interface"
        if name in IMAGE_PORTS:
            assert port in IMAGE_PORTS[name]
    assert published[("seaweedfs", 8333)] == ["127.0.0.1", "8333"]


def test_the_encoder_scales() -> None:
    encoder = SERVICES["cj-encoder"]
    assert "container_name" not in encoder and "ports" not in encoder
    assert all(not v.startswith(".") for v in encoder.get("volumes", []))


def test_volumes_exist() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, target, *_options = volume.split(":")
            assert target.startswith("/"), f"{name}: {volume}"
            if source.startswith("."):
                assert (DOCKER_DIR / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared


def test_env_files_exist_and_parse() -> None:
    for name, service in SERVICES.items():
        for env_file in service.get("env_file", []):
            values = parse_env_file(DOCKER_DIR / env_file)
            assert values, f"{name}: {env_file} is empty"
    text = (DOCKER_DIR / "calljournal.env").read_text()
    # Every setting in the env file is explained by a comment above it.
    assert text.count("#") > len(parse_env_file(DOCKER_DIR / "calljournal.env"))


def test_dependencies_exist_and_wait_for_health() -> None:
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                check = SERVICES[target].get("healthcheck", {})
                assert check and not check.get("disable"), f"{target} has no health check"
            else:
                assert condition == "service_completed_successfully"
                assert SERVICES[target].get("restart") == "no", f"{target} is not one-shot"
    for name in ("cj-api", "cj-encoder"):
        assert SERVICES[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_health_checks_run_programs_that_exist() -> None:
    module_path = ROOT / "docker" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("cj_docker_healthcheck", module_path)
    assert spec is not None and spec.loader is not None
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    copies = dockerfile_copies()
    for name, service in SERVICES.items():
        check = service.get("healthcheck")
        if check is None or check.get("disable"):
            assert name == "migrate", f"{name} has no health check"
            continue
        kind, *test = check["test"]
        if name in OURS:
            assert kind == "CMD" and test[0] == "python", name
            assert copies[test[1]] == module_path
            assert test[2] in healthcheck.CHECKS and test[2] in name, name
        elif kind == "CMD":
            assert test[0] in IMAGE_PROGRAMS[image_name(service)], name


def test_the_dockerfile_builds_from_files_that_exist() -> None:
    ignore = (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") if "*" in ignore else -1] == "*", "allow-list expected"
    included = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    sources = []
    for ins in dockerfile_instructions(stage=None):
        if ins.cmd == "COPY" and not any(f.startswith("--from") for f in ins.flags):
            sources += list(ins.value[:-1])
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert any(source == p or source.startswith(p + "/") for p in included), (
            f"COPY {source}: excluded from the build context by Dockerfile.dockerignore"
        )


def test_the_image_is_slim_wheels_only_non_root_and_healthchecked() -> None:
    everything = dockerfile_instructions(stage=None)
    final = dockerfile_instructions()
    args = {
        i.value[0].split("=", 1)[0]: i.value[0].split("=", 1)[1]
        for i in everything
        if i.cmd == "ARG"
    }
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    runs = " ".join(" ".join(i.value) for i in everything if i.cmd == "RUN")
    assert "--only-binary=:all:" in runs
    assert "pip install --no-index" in runs  # the runtime stage installs wheels only
    user = [i.value[0] for i in final if i.cmd == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    (health,) = [i for i in final if i.cmd == "HEALTHCHECK"]
    assert health.value[:3] == ("CMD", "python", "/opt/calljournal/healthcheck.py")
    (cmd,) = [i for i in final if i.cmd == "CMD"]
    assert cmd.value[0] in console_scripts()
    env = dockerfile_env()
    copies = dockerfile_copies()
    assert copies[env["CJ_SQL_DIR"]] == ROOT / "sql"
    assert any(p.suffix == ".sql" for p in (ROOT / "sql").iterdir())


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_names_only_files_in_docker_dir() -> None:
    # `docker compose -f docker/compose.yaml` resolves relative paths from docker/.
    assert COMPOSE_FILE.parent == DOCKER_DIR
    build = OURS["cj-api"]["build"]
    assert (DOCKER_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_dockerfile_needs_no_frontend_image() -> None:
    """A `# syntax=` line pulls a frontend image at every build: offline builds fail."""
    first_lines = (ROOT / "docker" / "Dockerfile").read_text().splitlines()[:5]
    assert not any(line.lower().startswith("# syntax=") for line in first_lines)
