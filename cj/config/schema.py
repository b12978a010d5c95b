"""The configuration schema: one frozen dataclass per section and per daemon.

Every field has a default that works for a single machine (`make run`), so an empty
file is a valid configuration for development. Secrets are `pydantic.SecretStr`, whose
`repr` and `str` are masked; call `.get_secret_value()` where the secret is used.
"""

from __future__ import annotations

import os
from dataclasses import field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, SecretStr
from pydantic.dataclasses import dataclass

# Unknown keys are errors (a typo must not silently fall back to a default).
STRICT = ConfigDict(extra="forbid")

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class Role(StrEnum):
    """What a bearer token may do."""

    AGENT = "agent"  # ingest: add calls, upload recordings, check calls
    READER = "reader"  # search, get, download


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


class CdrFormat(StrEnum):
    AUTO = "auto"
    COMPACT = "compact"
    FREESWITCH = "freeswitch"


class AfterSuccess(StrEnum):
    DELETE = "delete"
    ARCHIVE = "archive"


# --- shared sections -----------------------------------------------------------------


@dataclass(frozen=True, config=STRICT)
class DatabaseConfig:
    """PostgreSQL connection. `url` may carry a password, so it is a secret."""

    url: SecretStr = SecretStr("postgresql://127.0.0.1:5432/calljournal")
    pool_size: PositiveInt = 10
    # cj-api's separate connections for searches, lookups and downloads, so that a burst
    # of ingest (each write waits for its commit to reach the disk) cannot queue them.
    read_pool_size: PositiveInt = 4
    connect_timeout_s: PositiveFloat = 10.0
    statement_timeout_s: NonNegativeFloat = 30.0  # 0 = no limit


@dataclass(frozen=True, config=STRICT)
class FilesystemStorageConfig:
    """Objects as files under `path`, written to a temp file, fsynced and renamed."""

    kind: Literal["filesystem"]
    path: Path
    quota_bytes: NonNegativeInt = 0  # 0 = no quota; refuse writes beyond it
    fsync: bool = True


@dataclass(frozen=True, config=STRICT)
class S3StorageConfig:
    """Objects in an S3 bucket (AWS, SeaweedFS, MinIO, Ceph …)."""

    kind: Literal["s3"]
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    path_style: bool = True
    prefix: str = ""
    max_concurrency: PositiveInt = 8
    multipart_threshold_bytes: PositiveInt = 8 * 1024 * 1024
    multipart_chunk_bytes: Annotated[int, Field(ge=5 * 1024 * 1024)] = 8 * 1024 * 1024
    connect_timeout_s: PositiveFloat = 10.0
    read_timeout_s: PositiveFloat = 60.0
    max_attempts: PositiveInt = 3


StorageBackendConfig = Annotated[
    FilesystemStorageConfig | S3StorageConfig, Field(discriminator="kind")
]


def _default_backends() -> dict[str, StorageBackendConfig]:
    return {
        "temp": FilesystemStorageConfig(kind="filesystem", path=Path("var/storage/temp")),
        "recordings": FilesystemStorageConfig(
            kind="filesystem", path=Path("var/storage/recordings")
        ),
    }


@dataclass(frozen=True, config=STRICT)
class StorageConfig:
    """Named storages; `temporary` receives uploaded WAVs, `permanent` new MP3s.

    A recording row keeps the name of the storage that holds it, so pointing
    `permanent` elsewhere later keeps older recordings readable as long as their
    storage stays configured.
    """

    backends: dict[Name, StorageBackendConfig] = field(default_factory=_default_backends)
    temporary: Name = "temp"
    permanent: Name = "recordings"

    def __post_init__(self) -> None:
        for role in ("temporary", "permanent"):
            name = getattr(self, role)
            if name not in self.backends:
                known = ", ".join(sorted(self.backends)) or "none"
                raise ValueError(
                    f"storage.{role} names {name!r}, which is not a configured backend "
                    f"(configured: {known})"
                )


@dataclass(frozen=True, config=STRICT)
class QueueConfig:
    """The encode-job queue: PostgreSQL (embedded default) or NSQ."""

    kind: Literal["postgres", "nsq"] = "postgres"
    topic: Name = "cj-encode"
    channel: Name = "cj-encoder"
    nsqd_tcp_addresses: tuple[str, ...] = ("127.0.0.1:4150",)
    lookupd_http_addresses: tuple[str, ...] = ()
    lookupd_poll_interval_s: PositiveFloat = 60.0
    max_in_flight: PositiveInt = 8
    lease_s: PositiveFloat = 300.0  # NSQ msg_timeout; PostgreSQL claim lease
    heartbeat_interval_s: PositiveFloat = 30.0
    poll_interval_s: PositiveFloat = 5.0  # PostgreSQL queue polling fallback
    reconnect_max_s: PositiveFloat = 30.0


@dataclass(frozen=True, config=STRICT)
class TokenConfig:
    """One bearer token. `name` identifies the holder in logs and the audit log."""

    name: Name
    token: SecretStr
    roles: frozenset[Role]

    def __post_init__(self) -> None:
        if len(self.token.get_secret_value()) < 16:
            raise ValueError(f"auth token {self.name!r}: token must be at least 16 characters")
        if not self.roles:
            raise ValueError(f"auth token {self.name!r}: roles must not be empty")


@dataclass(frozen=True, config=STRICT)
class AuthConfig:
    tokens: tuple[TokenConfig, ...] = ()

    def __post_init__(self) -> None:
        names = [t.name for t in self.tokens]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"auth.tokens: duplicate token names {duplicates}")


@dataclass(frozen=True, config=STRICT)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: LogFormat = LogFormat.CONSOLE


# --- daemon sections -----------------------------------------------------------------


@dataclass(frozen=True, config=STRICT)
class ApiConfig:
    host: str = "127.0.0.1"
    grpc_port: Port = 50051
    rest_port: Port = 8080
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    max_recording_bytes: PositiveInt = 2 * 1024**3
    grace_period_s: NonNegativeFloat = 10.0
    # grpc-timeout a client did not send; uploads of big files need room.
    default_deadline_s: PositiveFloat = 3600.0
    # Per-token limits (cj_api.limits): searches and downloads at once, and a token
    # bucket of requests (rate per second, burst); 0 switches that limit off.
    search_concurrency_per_token: NonNegativeInt = 2
    search_rate_per_token: NonNegativeFloat = 10.0
    search_burst_per_token: PositiveInt = 40
    download_concurrency_per_token: NonNegativeInt = 4
    download_rate_per_token: NonNegativeFloat = 5.0
    download_burst_per_token: PositiveInt = 20
    # A refusal by those limits is answered after this long at most (never longer than
    # its Retry-After): a client that ignores Retry-After cannot spin on cheap 429s.
    limit_refusal_delay_s: NonNegativeFloat = 1.0
    # Downloads in progress are re-checked this often while the LISTEN connection that
    # stops them (call turned private, recording purged) is down.
    download_recheck_interval_s: PositiveFloat = 1.0
    # Refused download attempts (bad token, limits) are counted and written this often.
    audit_flush_interval_s: PositiveFloat = 1.0

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("api.tls_cert_file and api.tls_key_file must be set together")


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True, config=STRICT)
class EncoderConfig:
    concurrency: NonNegativeInt = 0  # 0 = one per CPU
    bitrate_kbps: Annotated[int, Field(ge=8, le=320)] = 32
    quality: Annotated[int, Field(ge=0, le=9)] = 5  # LAME -q: 0 best/slowest, 9 worst/fastest
    # 10 attempts from 10 s doubling to 10 min ride out a storage outage of ~40 min
    # before a recording is marked failed (`cj-encoder retry-failed` brings it back).
    max_attempts: PositiveInt = 10
    retry_base_s: PositiveFloat = 10.0
    retry_max_s: PositiveFloat = 600.0
    reconcile_interval_s: PositiveFloat = 60.0
    grace_period_s: NonNegativeFloat = 30.0
    work_dir: Path | None = None  # local temp files for S3 downloads; None = system temp

    @property
    def workers(self) -> int:
        return self.concurrency or _cpu_count()


@dataclass(frozen=True, config=STRICT)
class AgentSourceConfig:
    """One PBX output to watch."""

    name: Name
    cdr_dir: Path
    recordings_dir: Path
    format: CdrFormat = CdrFormat.AUTO
    timezone: str = "UTC"
    cdr_patterns: tuple[str, ...] = ("*.json",)
    recording_patterns: tuple[str, ...] = ("*.wav",)
    after_success: AfterSuccess = AfterSuccess.DELETE
    archive_dir: Path | None = None
    failed_dir: Path | None = None  # default: <cdr_dir>/failed
    # CDRs whose call was uploaded but whose recording has not appeared yet wait here
    # (restart-safe: the agent re-reads them at start). Default: <cdr_dir>/pending.
    pending_dir: Path | None = None
    recording_variables: tuple[str, ...] = (
        "cj_record_name",
        "record_name",
        "record_path+record_name",
        "record_session",
    )
    privacy_variable: str = "cj_record_tag"

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # "Europe" is a directory
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        if self.after_success is AfterSuccess.ARCHIVE and self.archive_dir is None:
            raise ValueError(f"source {self.name!r}: after_success = archive needs archive_dir")
        # Files moved into one of these must not be picked up again as new input.
        watched = {self.cdr_dir.absolute(), self.recordings_dir.absolute()}
        for key in ("archive_dir", "failed_dir", "pending_dir"):
            value = getattr(self, key)
            if value is not None and value.absolute() in watched:
                raise ValueError(
                    f"source {self.name!r}: {key} must differ from cdr_dir and recordings_dir"
                )

    @property
    def quarantine_dir(self) -> Path:
        return self.failed_dir if self.failed_dir is not None else self.cdr_dir / "failed"

    @property
    def late_dir(self) -> Path:
        """Where CDRs wait for a late recording (`pending_dir`, default <cdr_dir>/pending)."""
        return self.pending_dir if self.pending_dir is not None else self.cdr_dir / "pending"


@dataclass(frozen=True, config=STRICT)
class AgentConfig:
    server: str = "127.0.0.1:50051"  # host:port of cj-api's gRPC listener
    token: SecretStr | None = None
    tls: bool = False
    tls_ca_file: Path | None = None
    sources: tuple[AgentSourceConfig, ...] = ()
    poll_min_s: PositiveFloat = 0.5
    poll_max_s: PositiveFloat = 30.0
    settle_s: NonNegativeFloat = 2.0
    recording_wait_s: NonNegativeFloat = 300.0
    max_concurrent_uploads: PositiveInt = 4
    request_timeout_s: PositiveFloat = 60.0
    grace_period_s: NonNegativeFloat = 10.0
    watchdog_interval_s: PositiveFloat | None = None  # None = half of systemd's WATCHDOG_USEC
    # Bounds that keep memory flat however many files wait: files per directory observed
    # for settling at once, and CDRs being processed at once (including those waiting
    # for their recording).
    max_tracked_files: PositiveInt = 2000
    max_calls_in_progress: PositiveInt = 256

    def __post_init__(self) -> None:
        if self.poll_min_s > self.poll_max_s:
            raise ValueError("agent.poll_min_s must not exceed agent.poll_max_s")
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"agent.sources: duplicate source names {duplicates}")


# --- per-daemon views ------------------------------------------------------------------


@dataclass(frozen=True, config=STRICT)
class ApiSettings:
    api: ApiConfig = field(default_factory=ApiConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


@dataclass(frozen=True, config=STRICT)
class EncoderSettings:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


@dataclass(frozen=True, config=STRICT)
class AgentSettings:
    agent: AgentConfig = field(default_factory=AgentConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


@dataclass(frozen=True, config=STRICT)
class ToolSettings:
    """What the `cj` command (migrations, dev mode) reads: everything."""

    api: ApiConfig = field(default_factory=ApiConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


ALL_SECTIONS = frozenset(ToolSettings.__dataclass_fields__)
