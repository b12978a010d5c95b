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

    AGENT = "agent"  # ingest for the token's own sources: add calls, upload, check
    READER = "reader"  # search, get, download
    ADMIN = "admin"  # deliberate, audited changes: releasing or protecting a call


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


class CdrFormat(StrEnum):
    AUTO = "auto"
    COMPACT = "compact"
    FREESWITCH = "freeswitch"
    # Asterisk (cj/cdr/asterisk.py): append-only files the agent tails line by line.
    ASTERISK_CSV = "asterisk_csv"  # cdr_csv Master.csv
    ASTERISK_CUSTOM = "asterisk_custom"  # cdr_custom CSV, columns from `csv_columns`
    ASTERISK_JSON = "asterisk_json"  # JSON lines of Asterisk CDR fields
    # FreeSWITCH beyond mod_json_cdr: mod_xml_cdr files, mod_cdr_csv lines (tailed).
    FREESWITCH_XML = "freeswitch_xml"
    FREESWITCH_CSV = "freeswitch_csv"


# A trunk is a channel to the outside: DAHDI/ISDN lines, H.323 and Motif (Google Voice)
# gateways, and SIP/IAX peers named like a trunk or provider.
DEFAULT_TRUNK_CHANNELS = (
    r"(?i)^(?:DAHDI|Zap|OOH323|H323|Motif|mISDN|Skype)/"
    r"|^[A-Za-z0-9]+/[^/]*?(?:trunk|gateway|gw|pstn|provider|carrier|sbc|sipus|voip)"
)
# FreePBX/IssabelPBX `from-trunk`, `from-pstn`, `from-external`, and contexts such as
# `stadion-pstn`, `public`, `incoming`.
DEFAULT_INBOUND_CONTEXTS = (
    r"(?i)(?:^|[-_])(?:trunk|pstn|external|public|incoming|inbound)(?:$|[-_])"
)


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
    # A streaming replica for those searches and lookups (never for writes, CheckCalls
    # or the download decision); None = the primary. Reads fall back to the primary
    # while the replica is down.
    read_url: SecretStr | None = None
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
    # NSQ security: AUTH (nsqd --auth-http-address) and TLS (nsqd --tls-*).
    nsq_auth_secret: SecretStr | None = None
    nsq_tls: bool = False
    nsq_tls_ca_file: Path | None = None  # unset: the system's trust store
    nsq_tls_cert_file: Path | None = None  # client certificate (nsqd --tls-client-auth-policy)
    nsq_tls_key_file: Path | None = None
    nsq_tls_server_name: str | None = None  # unset: the host of the nsqd address
    # How long nsqd may hold messages to a consumer before it flushes them; nsqd's own
    # default (250 ms) is tuned for throughput, a job queue wants its jobs promptly.
    nsq_output_buffer_timeout_ms: Annotated[int, Field(ge=1)] = 25
    # nsqd's --max-body-size (an MPUB's whole body); nsqd's default. MPUBs are split to
    # fit, and a smaller limit reported by nsqd is learnt from its refusal.
    nsq_max_body_bytes: Annotated[int, Field(ge=1024)] = 5 * 1024 * 1024

    def __post_init__(self) -> None:
        if (self.nsq_tls_cert_file is None) != (self.nsq_tls_key_file is None):
            raise ValueError(
                "queue.nsq_tls_cert_file and queue.nsq_tls_key_file must be set together"
            )
        tls_files = (self.nsq_tls_ca_file, self.nsq_tls_cert_file, self.nsq_tls_server_name)
        if not self.nsq_tls and any(v is not None for v in tls_files):
            raise ValueError("queue.nsq_tls_* settings need queue.nsq_tls = true")


@dataclass(frozen=True, config=STRICT)
class TokenConfig:
    """One bearer token. `name` identifies the holder in logs and the audit log.

    `sources` are the sources (PBXs) whose calls an agent token may write; empty means
    the token's own name is its one source. The first is given to calls sent without a
    source.
    """

    name: Name
    token: SecretStr
    roles: frozenset[Role]
    sources: tuple[Name, ...] = ()

    def __post_init__(self) -> None:
        if len(self.token.get_secret_value()) < 16:
            raise ValueError(f"auth token {self.name!r}: token must be at least 16 characters")
        if not self.roles:
            raise ValueError(f"auth token {self.name!r}: roles must not be empty")
        duplicates = sorted({s for s in self.sources if self.sources.count(s) > 1})
        if duplicates:
            raise ValueError(f"auth token {self.name!r}: duplicate sources {duplicates}")
        if self.sources and Role.AGENT not in self.roles:
            raise ValueError(
                f"auth token {self.name!r}: sources are only for tokens with the agent role"
            )

    @property
    def writable_sources(self) -> tuple[str, ...]:
        """The sources this token may write: `sources`, or its own name when empty."""
        return self.sources or (self.name,)


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
    # Deadline of a unary gRPC call whose client sent no grpc-timeout (uploads and other
    # client streams are governed by the body rules below instead).
    default_deadline_s: PositiveFloat = 30.0
    # The same for calls that stream their answer (DownloadRecording).
    stream_deadline_s: PositiveFloat = 3600.0
    # Request bodies (REST bodies, gRPC client streams): idle time, minimum average rate
    # once the grace window is over (0: no rate rule), total time.
    body_idle_timeout_s: PositiveFloat = 60.0
    body_min_rate_bytes_per_s: NonNegativeFloat = 1024.0
    body_rate_grace_s: NonNegativeFloat = 30.0
    body_timeout_s: PositiveFloat = 3600.0
    # gRPC connections: streams, flow-control credit, silence.
    grpc_max_concurrent_streams: Annotated[int, Field(ge=1, le=10_000)] = 100
    grpc_connection_window_bytes: Annotated[int, Field(ge=4 * 1024 * 1024, le=2**31 - 1)] = (
        8 * 1024 * 1024
    )
    grpc_preface_timeout_s: PositiveFloat = 10.0
    grpc_idle_timeout_s: PositiveFloat = 120.0
    # REST over HTTP/2 and HTTP/1.1 (hypercorn).
    rest_h2_max_concurrent_streams: Annotated[int, Field(ge=1, le=10_000)] = 32
    rest_keep_alive_timeout_s: PositiveFloat = 5.0
    # The web console (cj_api/console/) at `/` of the REST port.
    console: bool = True
    # Bulk export (cj_api/export.py): calls per ZIP (its central directory is held in
    # memory, ~0.5 KB a member), and exports running at once (all workers together).
    export_max_calls: PositiveInt = 50_000
    export_concurrency: PositiveInt = 2
    # Signed download links (cj_api/links.py): lifetime, and the HMAC secret (unset: a
    # random one per process; set it when several cj-api processes serve one console).
    link_ttl_s: PositiveFloat = 300.0
    link_secret: SecretStr | None = None
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
    # Worker processes sharing the gRPC and REST ports (SO_REUSEPORT), under one
    # supervisor that restarts them (cj_api/workers.py): a number, or "auto" for one per
    # CPU. 1 serves in the one process. Per-token limits and export_concurrency hold
    # for all workers together (a table they share).
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"
    # AddCalls streams one worker processes at once; the others wait in HTTP/2 flow
    # control, so that a backlog of many agents leaves the event loop to searches.
    ingest_streams: Annotated[int, Field(ge=1, le=1000)] = 2

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("api.tls_cert_file and api.tls_key_file must be set together")

    @property
    def worker_count(self) -> int:
        """How many worker processes `workers` means on this machine."""
        return _cpu_count() if self.workers == "auto" else self.workers


def _cpu_count() -> int:
    """The CPUs this process may run on (a container's cpuset, taskset), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
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
    # /metrics (Prometheus) and /healthz over HTTP; None = not served.
    metrics_host: str = "127.0.0.1"
    metrics_port: Port | None = None
    metrics_refresh_s: PositiveFloat = 15.0  # how often the backlog is read from the database

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
    # What is local to this PBX (cj/cdr/locality.py): extensions by a regular expression
    # matched in full, and the PBX's own DIDs as digits or digit prefixes ending in "*".
    local_extensions: str = "[0-9]{1,5}"
    local_numbers: tuple[str, ...] = ()
    # Asterisk (cj/cdr/asterisk_call.py, docs/asterisk.md). Channels matching
    # `trunk_channels` (searched) are the outside world; so is a call whose dcontext
    # matches `inbound_contexts` (searched).
    trunk_channels: str = DEFAULT_TRUNK_CHANNELS
    inbound_contexts: str = DEFAULT_INBOUND_CONTEXTS
    # cdr_custom: the columns of the mapping line, in order (empty: the stock mapping).
    csv_columns: tuple[str, ...] = ()
    # freeswitch_csv: the mod_cdr_csv template of the tailed files: a stock name
    # (example, sql, …) or the template text with its ${variables}.
    csv_template: str = "example"
    # The userfield convention `rec=<file>;tag=private`: the keys read.
    userfield_recording_key: str = "rec"
    userfield_privacy_key: str = "tag"
    # Asterisk: a call whose CDR names no recording file is looked up by its uniqueid
    # (FreePBX/IssabelPBX MixMonitor names; cj_agent/recordings.py).
    recordings_by_uniqueid: bool = True
    # Tailed files (format asterisk_*): a call (lines sharing a linkedid) is sent once no
    # line for it came for `tail_settle_s`; it stays open for late legs (merged and
    # re-sent, and the offset held before its first line) for `tail_linger_s`.
    tail_settle_s: NonNegativeFloat = 5.0
    tail_linger_s: NonNegativeFloat = 300.0
    state_dir: Path | None = None  # tail offsets; default <cdr_dir>/state

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # "Europe" is a directory
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        from cj.cdr.errors import CdrError
        from cj.cdr.locality import LocalNumbers

        try:
            LocalNumbers(self.local_extensions, tuple(self.local_numbers))
        except CdrError as exc:
            raise ValueError(f"source {self.name!r}: {exc}") from None
        if self.format is CdrFormat.FREESWITCH_CSV:
            from cj.cdr.freeswitch_csv import CsvTemplate

            try:
                CsvTemplate(self.csv_template)
            except CdrError as exc:
                raise ValueError(f"source {self.name!r}: csv_template: {exc}") from None
        import re

        for key in ("trunk_channels", "inbound_contexts"):
            try:
                re.compile(getattr(self, key))
            except re.error as exc:
                raise ValueError(
                    f"source {self.name!r}: {key}: not a regular expression: {exc}"
                ) from None
        if self.after_success is AfterSuccess.ARCHIVE and self.archive_dir is None:
            raise ValueError(f"source {self.name!r}: after_success = archive needs archive_dir")
        # Files moved into one of these must not be picked up again as new input.
        watched = {self.cdr_dir.absolute(), self.recordings_dir.absolute()}
        for key in ("archive_dir", "failed_dir", "pending_dir", "state_dir"):
            value = getattr(self, key)
            if value is not None and value.absolute() in watched:
                raise ValueError(
                    f"source {self.name!r}: {key} must differ from cdr_dir and recordings_dir"
                )

    @property
    def quarantine_dir(self) -> Path:
        return self.failed_dir if self.failed_dir is not None else self.cdr_dir / "failed"

    @property
    def tail_state_dir(self) -> Path:
        """Where tailed files' offsets are kept (`state_dir`, default <cdr_dir>/state)."""
        return self.state_dir if self.state_dir is not None else self.cdr_dir / "state"

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
    # Filesystem events (inotify …) wake the agent at once; polling stays as the safety
    # net. While events flow, a file is ready after this much quiet (writing sends events).
    watch_events: bool = True
    event_settle_s: NonNegativeFloat = 0.5
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
    # /metrics (Prometheus) and /healthz over HTTP; None = not served.
    metrics_host: str = "127.0.0.1"
    metrics_port: Port | None = None
    # /healthz turns unhealthy when the server has not answered for this long.
    unhealthy_after_s: PositiveFloat = 300.0

    def __post_init__(self) -> None:
        if self.poll_min_s > self.poll_max_s:
            raise ValueError("agent.poll_min_s must not exceed agent.poll_max_s")
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"agent.sources: duplicate source names {duplicates}")


@dataclass(frozen=True, config=STRICT)
class RetentionConfig:
    """How long recordings are kept (`cj purge`); call metadata is kept regardless."""

    recordings_days: PositiveInt | None = None  # every source without its own; None = forever
    by_source: dict[Name, PositiveInt] = field(default_factory=dict)


@dataclass(frozen=True, config=STRICT)
class ClientConfig:
    """How `cj calls …` reaches cj-api's REST API, and as whom."""

    url: str = "http://127.0.0.1:8080"
    token: SecretStr | None = None  # a reader token (admin for privacy changes)
    timezone: str = "local"  # times shown in this IANA zone; "local": the machine's
    ca_file: Path | None = None  # PEM CA bundle for an https URL signed by a private CA
    timeout_s: PositiveFloat = 30.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("client.url must start with http:// or https://")
        if self.timezone != "local":
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
                raise ValueError(f"unknown timezone {self.timezone!r}") from exc


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
class ClientSettings:
    """What `cj calls …` reads: how to reach the API."""

    client: ClientConfig = field(default_factory=ClientConfig)
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
    client: ClientConfig = field(default_factory=ClientConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)


ALL_SECTIONS = frozenset(ToolSettings.__dataclass_fields__)
