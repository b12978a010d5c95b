"""cj_api: gRPC and REST in one Trio process, sharing one pool, the storages and the queue."""

from __future__ import annotations

import functools
import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
import trio

from cj.auth import Authenticator
from cj.bodyrate import BodyLimits
from cj.config import ApiConfig, ApiSettings, ConfigError
from cj.db import Database, open_database
from cj.db.partitions import run_partition_maintenance
from cj.logs import register_settings_secrets
from cj.queue import open_publisher
from cj.rpc import AuthRefusal, GrpcLimits, make_server_ssl_context, serve_grpc
from cj.storage import FilesystemStorage, StorageError, Storages, open_storages
from cj_api.audit_buffer import AuditAggregator
from cj_api.download_watch import DownloadRegistry, DownloadWatcher
from cj_api.grpc_service import CallJournalGrpc
from cj_api.limits import SharedCapacity
from cj_api.limits_table import LimitTable
from cj_api.links import LinkSigner
from cj_api.metrics import ApiMetrics
from cj_api.replica import open_read_database
from cj_api.rest import create_rest_app
from cj_api.rest_server import serve_rest
from cj_api.service import CallJournalService
from cj_api.workers import WorkerRole

log = structlog.get_logger(__name__)

# Partial uploads older than this belong to no live request (uploads stream at MB/s).
STALE_UPLOAD_S = 6 * 3600.0


class ApiConfigurationError(ConfigError):
    """The API refuses to start with this configuration."""


@dataclass(frozen=True)
class ApiEndpoints:
    """Where a started API listens (the real ports when 0 was configured)."""

    host: str
    grpc_port: int
    rest_port: int
    tls: bool

    @property
    def rest_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{_url_host(self.host)}:{self.rest_port}"

    @property
    def grpc_address(self) -> str:
        return f"{_url_host(self.host)}:{self.grpc_port}"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def check_settings(settings: ApiSettings) -> None:
    """Refuse, before anything starts, what the API cannot serve with."""
    if not settings.auth.tokens:
        raise ApiConfigurationError(
            "auth.tokens is empty: configure at least one token (role agent for PBX agents, "
            "reader for clients); see README 'Configuration'"
        )


async def serve(
    settings: ApiSettings,
    *,
    shutdown: trio.Event | None = None,
    worker: WorkerRole | None = None,
    task_status: trio.TaskStatus[ApiEndpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve gRPC and REST until cancelled, or until `shutdown` is set.

    On shutdown both listeners close at once; requests in flight get
    `api.grace_period_s` to finish, then the process-wide resources close. As one of
    several `worker` processes (cj_api.workers) it shares the ports (SO_REUSEPORT).
    """
    config = settings.api
    check_settings(settings)
    register_settings_secrets(settings)  # kept out of every log line from here on
    ssl_context = _ssl_context(settings)
    client_id = f"cj-api-{socket.gethostname()}-{os.getpid()}"
    async with (
        open_database(settings.database, wait=False, name="cj-api") as db,
        open_read_database(settings.database) as reads,
        open_storages(settings.storage) as storages,
        open_publisher(settings.queue, db, client_id=client_id) as publisher,
        open_download_watch(settings, db) as (registry, aggregator),
        open_limits_table(worker) as limits_table,
    ):
        metrics = ApiMetrics()
        read_db = reads.bind(db, metrics.replica_fallback_reads)
        service = CallJournalService(
            db=db,
            read_db=read_db,
            storages=storages,
            publisher=publisher,
            config=config,
            metrics=metrics,
            registry=registry,
            aggregator=aggregator,
            limits_table=limits_table,
        )
        authenticator = Authenticator(settings.auth)
        rest_app = create_rest_app(
            service,
            authenticator,
            metrics,
            max_recording_bytes=config.max_recording_bytes,
            console=config.console,
            export_max_calls=config.export_max_calls,
            export_concurrency=config.export_concurrency,
            export_limiter=(
                SharedCapacity("export", config.export_concurrency, limits_table)
                if limits_table is not None
                else None
            ),
            links=LinkSigner(
                config.link_secret.get_secret_value().encode() if config.link_secret else None,
                config.link_ttl_s,
            ),
            body_limits=body_limits(config),
            health=worker.health if worker is not None else None,
        )
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            maintenance = trio.CancelScope()  # ends with the servers, not after them
            if worker is None or worker.runs_singletons:  # once per service, not per worker
                nursery.start_soon(_purge_abandoned_uploads, storages)

                async def maintain_partitions(task_status: trio.TaskStatus[None]) -> None:
                    with maintenance:
                        await run_partition_maintenance(db, task_status=task_status)

                await nursery.start(maintain_partitions)
            grpc_port: int = await nursery.start(
                functools.partial(
                    serve_grpc,
                    [CallJournalGrpc(service, metrics).service],
                    host=config.host,
                    port=config.grpc_port,
                    ssl_context=ssl_context,
                    authenticator=authenticator,
                    limits=grpc_limits(config),
                    grace_period_s=config.grace_period_s,
                    shutdown_trigger=stop.wait,
                    on_auth_refused=functools.partial(_audit_grpc_refusal, service),
                    reuse_port=worker is not None,
                )
            )
            rest_port: int = await nursery.start(
                functools.partial(
                    serve_rest,
                    rest_app,
                    host=config.host,
                    port=config.rest_port,
                    tls_cert_file=config.tls_cert_file,
                    tls_key_file=config.tls_key_file,
                    grace_period_s=config.grace_period_s,
                    h2_max_concurrent_streams=config.rest_h2_max_concurrent_streams,
                    keep_alive_timeout_s=config.rest_keep_alive_timeout_s,
                    shutdown_trigger=stop.wait,
                    reuse_port=worker is not None,
                )
            )
            endpoints = ApiEndpoints(config.host, grpc_port, rest_port, ssl_context is not None)
            log.info(
                "api_started",
                grpc=endpoints.grpc_address,
                rest=endpoints.rest_url,
                queue=settings.queue.kind,
                temporary=storages.temporary.name,
            )
            task_status.started(endpoints)
            if shutdown is None:
                await trio.sleep_forever()
            await shutdown.wait()
            log.info("api_stopping", grace_period_s=config.grace_period_s)
            stop.set()  # both servers drain and return
            maintenance.cancel()


@asynccontextmanager
async def open_limits_table(worker: WorkerRole | None) -> AsyncIterator[LimitTable | None]:
    """The per-token limits' table shared with the other workers (None: one process)."""
    if worker is None or worker.limits_file is None:
        yield None
        return
    table = LimitTable.open(worker.limits_file, worker.slot)
    try:
        yield table
    finally:
        table.close()


async def _purge_abandoned_uploads(storages: Storages) -> None:
    """Remove partial files that a crashed process left in filesystem storages."""
    for name in storages:
        storage = storages.get(name)
        if isinstance(storage, FilesystemStorage):
            try:
                removed = await storage.purge_stale_uploads(older_than_s=STALE_UPLOAD_S)
            except StorageError as exc:
                log.warning("stale_upload_purge_failed", storage=storage.name, error=str(exc))
                continue
            if removed:
                log.info("stale_uploads_removed", storage=storage.name, count=removed)


def body_limits(config: ApiConfig) -> BodyLimits:
    """The request body rules of `config` (REST bodies and gRPC client streams)."""
    return BodyLimits(
        idle_timeout_s=config.body_idle_timeout_s,
        min_rate_bytes_per_s=config.body_min_rate_bytes_per_s,
        rate_grace_s=config.body_rate_grace_s,
        timeout_s=config.body_timeout_s,
    )


def grpc_limits(config: ApiConfig) -> GrpcLimits:
    """What one gRPC connection may hold, from `config`."""
    return GrpcLimits(
        max_concurrent_streams=config.grpc_max_concurrent_streams,
        connection_window_bytes=config.grpc_connection_window_bytes,
        preface_timeout_s=config.grpc_preface_timeout_s,
        idle_timeout_s=config.grpc_idle_timeout_s,
        unary_deadline_s=config.default_deadline_s,
        stream_deadline_s=config.stream_deadline_s,
        body=body_limits(config),
    )


@asynccontextmanager
async def open_download_watch(
    settings: ApiSettings, db: Database
) -> AsyncIterator[tuple[DownloadRegistry, AuditAggregator]]:
    """The downloads' watcher and the refused-attempt counts, for the block (which the
    servers run in: they are cancelled after both drained; the counts flush then)."""
    config = settings.api
    registry = DownloadRegistry()
    aggregator = AuditAggregator(db, flush_interval_s=config.audit_flush_interval_s)
    watcher = DownloadWatcher(
        registry,
        db,
        recheck_interval_s=config.download_recheck_interval_s,
        connect_timeout_s=settings.database.connect_timeout_s,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        nursery.start_soon(aggregator.run)
        yield registry, aggregator
        nursery.cancel_scope.cancel()


async def _audit_grpc_refusal(service: CallJournalService, refusal: AuthRefusal) -> None:
    """gRPC refuses a call's credentials before its handler runs: audit downloads'."""
    if refusal.method.endswith("/DownloadRecording"):
        await service.downloads.note_refused_authentication(
            refusal.principal, refusal.credentials_sent, refusal.error, refusal.peer_address
        )


def _ssl_context(settings: ApiSettings) -> ssl.SSLContext | None:
    config = settings.api
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    return make_server_ssl_context(config.tls_cert_file, config.tls_key_file)
