"""`cj dev`: the whole system in one process on embedded defaults (native `make run`).

One Trio nursery runs cj-api (gRPC + REST), cj-encoder (on the PostgreSQL queue) and
cj-agent, with everything kept under one directory (`--var`, default `./var`), created
on the first run and reused by the next:

    var/pg/           private PostgreSQL cluster (unless a database URL is configured)
    var/pg.log        its server log
    var/tokens.json   the bearer tokens, generated once (mode 0600)
    var/pg-password   the private cluster's password, generated once (mode 0600)
    var/spool/        the agent's source "local": drop CDRs (*.json) and WAVs here
    var/archive/DAY/  files the server acknowledged (the agent archives, never deletes)
    var/storage/temp/, var/storage/recordings/   uploaded WAVs, encoded MP3s

Settings come from the configuration file and `CJ_*` variables as for the daemons
(logging, encoder, pool sizes, grace periods …), except what this mode owns: the API's
host, ports and TLS, the storages, the queue kind, the tokens, the agent's server, token
and sources — and the database URL, unless one is configured.

Ctrl-C (SIGINT) or SIGTERM: the agent stops taking files and finishes its uploads, then
the API and the encoder drain, then PostgreSQL stops. A second Ctrl-C cancels at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import os
import secrets
import shlex
import socket
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import structlog
import trio
from pydantic import SecretStr

from cj.config import (
    AfterSuccess,
    AgentSettings,
    AgentSourceConfig,
    ApiSettings,
    AuthConfig,
    CdrFormat,
    EncoderSettings,
    FilesystemStorageConfig,
    Role,
    StorageConfig,
    TokenConfig,
    ToolSettings,
)
from cj.config.schema import AgentConfig, ApiConfig, QueueConfig

if TYPE_CHECKING:
    from cj.pgcluster import LocalCluster
    from cj_api.app import ApiEndpoints

log = structlog.get_logger(__name__)

DEFAULT_TIMEZONE = "Europe/Moscow"  # the samples' PBX zone
DATABASE_NAME = "calljournal"
SOURCE_NAME = "local"
# The repository's sample calls (absent when installed from a wheel).
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
SAMPLE_PUBLIC = "5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111"
SAMPLE_PRIVATE = "c3e9a7d2-1f60-4b8e-a5d4-7e2b90f3c222"
SAMPLE_PHONE = "4957001020"  # +7 495 700-10-20: three sample calls, in both CDR formats
# An idle agent polls ever less often, up to agent.poll_max_s (30 s by default); someone
# trying things out expects a dropped file to be picked up within seconds.
DEV_POLL_MAX_S = 2.0


class DevError(Exception):
    """`cj dev` cannot start; the message says what to do."""


# --- the var directory ---------------------------------------------------------------


@dataclass(frozen=True)
class DevLayout:
    """Where `cj dev` keeps everything (absolute paths)."""

    root: Path

    @property
    def pg_data(self) -> Path:
        return self.root / "pg"

    @property
    def tokens_file(self) -> Path:
        return self.root / "tokens.json"

    @property
    def pg_password_file(self) -> Path:
        return self.root / "pg-password"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def temp_storage(self) -> Path:
        return self.root / "storage" / "temp"

    @property
    def recordings_storage(self) -> Path:
        return self.root / "storage" / "recordings"

    def create(self) -> None:
        """Create the directories, each 0700 (var/ itself 0711 as root: PostgreSQL then
        runs as `postgres` and must pass through it to var/pg, without listing it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711 if os.geteuid() == 0 else 0o700)
        for path in (self.spool, self.archive, self.temp_storage, self.recordings_storage):
            path.mkdir(parents=True, exist_ok=True)
            while path != self.root:
                path.chmod(0o700)
                path = path.parent


@dataclass(frozen=True)
class DevTokens:
    """The two bearer tokens of dev mode: the agent's (ingest) and a reader's."""

    agent: str
    reader: str

    def __repr__(self) -> str:
        return "DevTokens(agent=***, reader=***)"


# Whatever `cj dev` writes (recordings, archived WAVs, logs) is its user's alone.
PRIVATE_UMASK = 0o077


def restrict_umask() -> int:
    """Make every file and directory this process creates 0600/0700; the old umask."""
    return os.umask(PRIVATE_UMASK)


def load_or_create_secret(path: Path) -> str:
    """A random secret kept in `path` (mode 0600), generated the first time."""
    if path.exists():
        secret = path.read_text().strip()
        if len(secret) < 16:
            raise DevError(f"{path} holds no valid secret; delete it to generate a new one")
        path.chmod(0o600)
        return secret
    secret = secrets.token_urlsafe(24)
    _write_private(path, secret + "\n")
    return secret


def _write_private(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)


def load_or_create_tokens(path: Path) -> DevTokens:
    """The tokens kept in `path`; generated (and written with mode 0600) the first time."""
    if path.exists():
        try:
            data = json.loads(path.read_text())
            tokens = DevTokens(agent=data["agent"], reader=data["reader"])
            if not all(isinstance(t, str) and len(t) >= 16 for t in (tokens.agent, tokens.reader)):
                raise ValueError("tokens must be strings of at least 16 characters")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DevError(
                f"{path} is not a valid tokens file ({type(exc).__name__}: {exc}); "
                "delete it to generate new tokens"
            ) from None
        return tokens
    tokens = DevTokens(agent=secrets.token_urlsafe(24), reader=secrets.token_urlsafe(24))
    text = json.dumps({"agent": tokens.agent, "reader": tokens.reader}, indent=2) + "\n"
    _write_private(path, text)
    return tokens


# --- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DevSettings:
    """Everything `serve_dev` runs. `agent.agent.server` is set once the API listens."""

    api: ApiSettings
    encoder: EncoderSettings
    agent: AgentSettings
    layout: DevLayout
    tokens: DevTokens
    database: str  # for the banner: the URL of a private cluster, else where it came from


def build_settings(
    base: ToolSettings,
    layout: DevLayout,
    tokens: DevTokens,
    *,
    database_url: str,
    database: str,
    host: str = "127.0.0.1",
    grpc_port: int = 50051,
    rest_port: int = 8080,
    timezone: str = DEFAULT_TIMEZONE,
) -> DevSettings:
    """Dev mode's settings: `base` with the keys this mode owns replaced."""
    database_config = dataclasses.replace(base.database, url=SecretStr(database_url))
    storage = StorageConfig(
        backends={
            "temp": FilesystemStorageConfig(kind="filesystem", path=layout.temp_storage),
            "recordings": FilesystemStorageConfig(
                kind="filesystem", path=layout.recordings_storage
            ),
        },
        temporary="temp",
        permanent="recordings",
    )
    queue = dataclasses.replace(base.queue, kind="postgres")
    api = dataclasses.replace(
        base.api,
        host=host,
        grpc_port=grpc_port,
        rest_port=rest_port,
        tls_cert_file=None,
        tls_key_file=None,
    )
    auth = AuthConfig(
        tokens=(
            TokenConfig(
                name="dev-agent",
                token=SecretStr(tokens.agent),
                roles=frozenset({Role.AGENT}),
                # The built-in agent's calls carry its source's name: the token owns them.
                sources=(SOURCE_NAME,),
            ),
            TokenConfig(
                name="dev-reader", token=SecretStr(tokens.reader), roles=frozenset({Role.READER})
            ),
        )
    )
    source = AgentSourceConfig(
        name=SOURCE_NAME,
        cdr_dir=layout.spool,
        recordings_dir=layout.spool,
        format=CdrFormat.AUTO,
        timezone=timezone,
        # Archive rather than delete: the tour's files stay visible, and nothing a
        # developer drops in is ever lost.
        after_success=AfterSuccess.ARCHIVE,
        archive_dir=layout.archive,
    )
    agent = dataclasses.replace(
        base.agent,
        server=f"{host}:{grpc_port}",  # replaced by the real address once the API listens
        token=SecretStr(tokens.agent),
        tls=False,
        tls_ca_file=None,
        sources=(source,),
        poll_min_s=min(base.agent.poll_min_s, DEV_POLL_MAX_S),
        poll_max_s=min(base.agent.poll_max_s, DEV_POLL_MAX_S),
    )
    return DevSettings(
        api=ApiSettings(
            api=api,
            database=database_config,
            storage=storage,
            queue=queue,
            auth=auth,
            logging=base.logging,
        ),
        encoder=EncoderSettings(
            encoder=base.encoder,
            database=database_config,
            storage=storage,
            queue=queue,
            logging=base.logging,
        ),
        agent=AgentSettings(agent=agent, logging=base.logging),
        layout=layout,
        tokens=tokens,
        database=database,
    )


def ignored_settings(base: ToolSettings) -> list[str]:
    """The configured keys that dev mode replaces (to warn about them)."""
    api, agent = ApiConfig(), AgentConfig()
    checks: list[tuple[str, object, object]] = [
        ("api.host", base.api.host, api.host),
        ("api.grpc_port", base.api.grpc_port, api.grpc_port),
        ("api.rest_port", base.api.rest_port, api.rest_port),
        ("api.tls_cert_file", base.api.tls_cert_file, None),
        ("storage", base.storage, StorageConfig()),
        ("queue.kind", base.queue.kind, QueueConfig().kind),
        ("auth.tokens", base.auth.tokens, ()),
        ("agent.server", base.agent.server, agent.server),
        ("agent.token", base.agent.token, None),
        ("agent.sources", base.agent.sources, ()),
    ]
    return [key for key, value, default in checks if value != default]


def database_configured(env: dict[str, str], config_path: Path | None) -> bool:
    """Whether a database URL was given (`CJ_DATABASE_URL`, or `[database] url`)."""
    if env.get("CJ_DATABASE_URL", "").strip():
        return True
    path = config_path or (Path(env["CJ_CONFIG"]) if env.get("CJ_CONFIG") else None)
    if path is None:
        return False
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False  # load_settings has already said what is wrong with the file
    section = data.get("database")
    return isinstance(section, dict) and "url" in section


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """DevError naming the option when a fixed port is taken (0 = any free port)."""
    for option, port in ports.items():
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise DevError(
                        f"port {port} on {host} is in use: stop what listens there or choose "
                        f"another with {option} (0 = any free port)"
                    ) from None
                raise DevError(f"cannot listen on {host}:{port} ({option}): {exc}") from None


# --- the private PostgreSQL cluster ----------------------------------------------------------


@contextlib.contextmanager
def private_database(
    layout: DevLayout, *, bin_dir: Path | None, fast: bool = False
) -> Iterator[str]:
    """Start (creating it the first time) the cluster in var/pg; stop it on exit.

    `bin_dir` holds initdb and pg_ctl (`cj.pgcluster.find_pg_bin()`); None is a DevError
    saying what to install. Durable settings (`fast` only for tests): this is the
    developer's data. Only its own user, with the password kept in var/pg-password,
    gets in (scram-sha-256, over TCP and over the unix socket inside the 0700 var/pg);
    a cluster created by an older `cj dev` that trusted every local user is converted.
    """
    from cj.pgcluster import ClusterError, LocalCluster, free_port

    if bin_dir is None:
        raise DevError(
            "PostgreSQL is needed and none was found: no server binaries (initdb, pg_ctl) on "
            "PATH or under /usr/lib/postgresql/*/bin, and no database URL configured.\n"
            "Either install PostgreSQL (Debian/Ubuntu: sudo apt-get install postgresql; "
            "Fedora: sudo dnf install postgresql-server; macOS: brew install postgresql@16),\n"
            "or point at a server you have: "
            "CJ_DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/DBNAME make run"
        )
    _check_reachable_by_server(layout.pg_data)
    try:
        password = load_or_create_secret(layout.pg_password_file)
        cluster = LocalCluster(
            data_dir=layout.pg_data,
            port=free_port(),
            bin_dir=bin_dir,
            password=password,
            fast=fast,
        )
        if cluster.running:  # left behind by a run that was killed: we do not know its port
            log.warning("stale_cluster_stopped", data_dir=str(cluster.data_dir))
            cluster.stop()
        first = not cluster.initialized
        cluster.init()
        cluster.start()
    except ClusterError as exc:
        raise DevError(
            f"the private PostgreSQL cluster in {layout.pg_data} failed: {exc}"
        ) from None
    try:
        if cluster.secure():
            log.warning("postgres_secured", note="it trusted every local user; now a password")
        cluster.create_database(DATABASE_NAME)
        log.info(
            "postgres_started",
            data_dir=str(cluster.data_dir),
            port=cluster.port,
            created=first,
            log_file=str(cluster.log_file),
        )
        yield cluster.url(DATABASE_NAME)
    finally:
        _stop_cluster(cluster)


def _stop_cluster(cluster: LocalCluster) -> None:
    from cj.pgcluster import ClusterError

    try:
        cluster.stop(mode="fast")
    except ClusterError as exc:
        log.error("postgres_stop_failed", error=str(exc))
        return
    log.info("postgres_stopped", data_dir=str(cluster.data_dir))


def _check_reachable_by_server(data_dir: Path) -> None:
    """As root the server runs as another user, who must be able to reach `data_dir`."""
    if os.geteuid() != 0:
        return
    for parent in reversed(data_dir.parents):
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise DevError(
                f"PostgreSQL runs as an unprivileged user (we are root) and cannot enter "
                f"{parent} (mode {stat.filemode(parent.stat().st_mode)}), so it cannot use "
                f"{data_dir}. Choose a --var directory it can reach (e.g. /var/tmp/calljournal), "
                "run as an ordinary user, or set CJ_DATABASE_URL."
            )


# --- running -----------------------------------------------------------------------------


async def serve_dev(
    settings: DevSettings,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[ApiEndpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run api, encoder and agent until cancelled, or until `shutdown` is set.

    Reports the API's endpoints once all three run. On shutdown the agent drains
    first (its uploads need the API), then the API and the encoder together.
    """
    from cj_agent import serve as serve_agent
    from cj_api.app import serve as serve_api
    from cj_encoder.service import serve as serve_encoder

    agent_stop = trio.Event()
    core_stop = trio.Event()
    agent_done = trio.Event()
    async with trio.open_nursery() as nursery:
        endpoints: ApiEndpoints = await nursery.start(
            functools.partial(serve_api, settings.api, shutdown=core_stop)
        )
        await nursery.start(functools.partial(serve_encoder, settings.encoder, shutdown=core_stop))
        agent_settings = dataclasses.replace(
            settings.agent,
            agent=dataclasses.replace(settings.agent.agent, server=endpoints.grpc_address),
        )

        async def run_agent(
            *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
        ) -> None:
            try:
                await serve_agent(agent_settings, shutdown=agent_stop, task_status=task_status)
            finally:
                agent_done.set()

        await nursery.start(run_agent)
        task_status.started(endpoints)
        if shutdown is None:
            await trio.sleep_forever()
        else:
            await shutdown.wait()
        agent_stop.set()
        await agent_done.wait()
        core_stop.set()


async def _serve_announced(
    settings: DevSettings,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[ApiEndpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`serve_dev`, printing the banner on stdout once everything runs."""
    async with trio.open_nursery() as nursery:
        endpoints: ApiEndpoints = await nursery.start(
            functools.partial(serve_dev, settings, shutdown=shutdown)
        )
        click.echo(banner(settings, endpoints, cwd=Path.cwd()))
        task_status.started(endpoints)


def _shown(path: Path, cwd: Path) -> str:
    """`path` relative to `cwd` when it lies inside it, else absolute; shell-quoted."""
    try:
        text = str(path.relative_to(cwd))
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def banner(settings: DevSettings, endpoints: ApiEndpoints, *, cwd: Path) -> str:
    """What `cj dev` prints once running: endpoints, tokens, commands to try.

    Every line starting with `  $ ` is a command that works as written from `cwd`.
    """
    layout, tokens = settings.layout, settings.tokens
    rest = endpoints.rest_url
    reader = f"-H 'Authorization: Bearer {tokens.reader}'"
    spool = _shown(layout.spool, cwd)
    download = _shown(layout.root / "downloads" / f"{SAMPLE_PUBLIC}.mp3", cwd)
    lines = [
        "",
        "Call Journal is running: api + encoder + agent in one process (native mode).",
        "",
        f"  gRPC API   {endpoints.grpc_address}   "
        "(contract: protos/calljournal/v1/calljournal.proto)",
        f"  REST API   {rest}   (OpenAPI: {rest}/api/v1/openapi.json)",
        f"  database   {settings.database}",
        f"  spool      {layout.spool}   (the agent's source {SOURCE_NAME!r})",
        f"  archive    {layout.archive}   (files the server acknowledged)",
        f"  storage    {layout.temp_storage}, {layout.recordings_storage}",
        "",
        f"Tokens (kept in {layout.tokens_file}):",
        f"  reader  {tokens.reader}   (search and download)",
        f"  agent   {tokens.agent}   (ingest; the built-in agent uses it)",
        "",
        "Try it:",
    ]
    if SAMPLES_DIR.is_dir():
        samples = [_shown(SAMPLES_DIR / kind, cwd) + "/*" for kind in ("compact", "freeswitch")]
        lines += [
            "  # drop the sample calls into the spool (uploaded and encoded within seconds)",
            f"  $ cp {' '.join(samples)} {spool}/",
        ]
    else:
        lines.append(f"  # drop CDRs (*.json) and their WAV recordings into {layout.spool}/")
    lines += [
        "  # calls to or from +7 495 700-10-20 (any notation: the digits' suffix matches)",
        f"  $ curl -sS {reader} '{rest}/api/v1/calls?phone={SAMPLE_PHONE}'",
        "  # calls in an interval [from, to)",
        f"  $ curl -sS {reader} "
        f"'{rest}/api/v1/calls?from=2026-03-02T00:00:00Z&to=2026-03-04T00:00:00Z'",
        "  # one call with its recording's state",
        f"  $ curl -sS {reader} {rest}/api/v1/calls/{SAMPLE_PUBLIC}",
        "  # download its recording (a stereo MP3 once encoded; the WAV until then)",
        f"  $ curl -fsS {reader} --create-dirs -o {download} "
        f"{rest}/api/v1/calls/{SAMPLE_PUBLIC}/recording",
        "  # a private recording is never downloadable: 403 PERMISSION_DENIED",
        f"  $ curl -sS {reader} {rest}/api/v1/calls/{SAMPLE_PRIVATE}/recording",
        "",
        f"Press Ctrl-C to stop everything; the data stays in {layout.root} for the next run.",
        "",
    ]
    return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------


def _timezone(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise click.BadParameter(f"unknown time zone {value!r} (e.g. Europe/Moscow, UTC)") from None
    return value


@click.command("dev")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML configuration file (default: $CJ_CONFIG, else defaults + CJ_* variables).",
)
@click.option(
    "--var",
    "var_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("var"),
    show_default=True,
    help="Where the database, spool, archive, storages and tokens live.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API binds.")
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=50051,
    show_default=True,
    help="gRPC port (0 = any free port).",
)
@click.option(
    "--rest-port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="REST port (0 = any free port).",
)
@click.option(
    "--timezone",
    default=DEFAULT_TIMEZONE,
    show_default=True,
    callback=_timezone,
    help="The PBX's time zone for CDR times without one (the samples' is Europe/Moscow).",
)
def dev(
    config_path: Path | None,
    var_dir: Path,
    host: str,
    grpc_port: int,
    rest_port: int,
    timezone: str,
) -> None:
    """Run api + encoder + agent in one process, with everything under --var.

    A private PostgreSQL cluster is started in VAR/pg from the machine's binaries unless
    a database URL is configured (CJ_DATABASE_URL). Ctrl-C stops it all, PostgreSQL too.
    """
    from cj.cli import load_tool_settings
    from cj.daemon import run_daemon
    from cj.db.errors import DatabaseError
    from cj.db.migrate import migrate
    from cj.logs import configure_logging

    restrict_umask()  # before anything is written
    settings = load_tool_settings(config_path)
    configure_logging(settings.logging)
    ignored = ignored_settings(settings)
    if ignored:
        log.warning(
            "dev_ignores_settings",
            keys=ignored,
            note="cj dev brings its own; run the daemons for another setup",
        )
    layout = DevLayout(var_dir.absolute())
    try:
        check_ports_free(host, {"--grpc-port": grpc_port, "--rest-port": rest_port})
        layout.create()
        tokens = load_or_create_tokens(layout.tokens_file)
        with contextlib.ExitStack() as stack:
            if database_configured(dict(os.environ), config_path):
                url = settings.database.url.get_secret_value()
                where = "the configured one (CJ_DATABASE_URL or [database] url)"
            else:
                from cj.pgcluster import find_pg_bin

                url = stack.enter_context(private_database(layout, bin_dir=find_pg_bin()))
                shown = urlsplit(url)._replace(netloc=f"cj@{urlsplit(url).netloc.split('@')[-1]}")
                where = (
                    f"{urlunsplit(shown)}   (password in {layout.pg_password_file}; "
                    f"private cluster in {layout.pg_data}, log {layout.root}/pg.log)"
                )
            migrate(url)  # logs each migration it applies
            dev_settings = build_settings(
                settings,
                layout,
                tokens,
                database_url=url,
                database=where,
                host=host,
                grpc_port=grpc_port,
                rest_port=rest_port,
                timezone=timezone,
            )
            status = run_daemon("cj-dev", _serve_announced, dev_settings, settings.logging)
    except (DevError, DatabaseError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:  # before the daemon's signal handler was installed
        raise SystemExit(130) from None
    raise SystemExit(status)
