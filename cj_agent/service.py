"""The agent daemon: watch every configured source and upload what appears.

    agent = await nursery.start(serve, settings)       # tests; cj-agent runs it via run_daemon
    await agent.stats.wait_until(lambda s: s.calls_uploaded >= 1)

One task per source polls its CDR directory (`watch`), hands ready CDRs to their own
tasks (`pipeline.process_cdr`, at most `max_calls_in_progress` at once) and watches the
recordings awaited in `pending/`. Requests to the server, uploads included, are
bounded by `max_concurrent_uploads` (`ServerLink`).

Shutdown (`shutdown` set, i.e. SIGTERM): no new files are taken, work waiting for a
recording or for the server is dropped at once (it is redone after a restart), and
uploads in flight get `grace_period_s` to finish before they are cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
import trio

from cj.config import AgentConfig, AgentSettings
from cj.telemetry import Health, serve_telemetry
from cj_agent.batcher import CallBatcher
from cj_agent.metrics import AgentMetrics, run_backlog_scan
from cj_agent.pipeline import SourceContext
from cj_agent.source import run_source
from cj_agent.stats import AgentStats
from cj_agent.systemd import Notifier, run_watchdog, watchdog_interval
from cj_agent.uploader import ServerLink

log = structlog.get_logger(__name__)


class AgentConfigError(ValueError):
    """The agent cannot start with this configuration; the message names the key."""


@dataclass
class Agent:
    """What `serve` reports once running: progress counters and the server link."""

    stats: AgentStats
    link: ServerLink
    metrics: AgentMetrics


async def serve(
    settings: AgentSettings,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED,
    link: ServerLink | None = None,
    notifier: Notifier | None = None,
) -> None:
    """Run the agent until cancelled, or until `shutdown` is set (then drain).

    `link` and `notifier` default to the configured server and `$NOTIFY_SOCKET`.
    """
    config = settings.agent
    check_sources(config)
    if link is None:
        link = make_link(config)
    notifier = notifier or Notifier.from_environment()
    stats = AgentStats()
    metrics = AgentMetrics(config, stats, link)
    stopping = trio.Event()
    calls = CallBatcher(link)
    contexts = [
        SourceContext(source, config, link, stats, stopping, calls) for source in config.sources
    ]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            await nursery.start(calls.run)
            work = trio.CancelScope()
            work_done = trio.Event()
            await nursery.start(_run_sources, contexts, work, work_done)
            if config.metrics_port is not None:

                async def health() -> Health:
                    return metrics.health()

                await nursery.start(run_backlog_scan, metrics)
                metrics.telemetry_port = await nursery.start(
                    serve_telemetry,
                    config.metrics_host,
                    config.metrics_port,
                    metrics.registry,
                    health,
                )
            interval = config.watchdog_interval_s or watchdog_interval()
            if interval is not None and notifier.enabled:
                nursery.start_soon(run_watchdog, notifier, interval, stats.summary)
            log.info(
                "agent_started",
                server=config.server,
                sources=[source.name for source in config.sources],
            )
            notifier.ready(f"watching {len(contexts)} source(s); {stats.summary()}")
            task_status.started(Agent(stats=stats, link=link, metrics=metrics))
            if shutdown is None:
                await trio.sleep_forever()
            else:
                await shutdown.wait()
            log.info(
                "agent_stopping",
                in_progress=stats.in_progress,
                grace_period_s=config.grace_period_s,
            )
            notifier.stopping(f"stopping; {stats.in_progress} in progress")
            stopping.set()
            metrics.stopping = True
            link.stop()
            work.deadline = trio.current_time() + config.grace_period_s
            await work_done.wait()
            if work.cancelled_caught:
                log.warning("agent_abandoned_work", note="unfinished files stay for the next start")
            nursery.cancel_scope.cancel()
    finally:
        notifier.close()


def check_sources(config: AgentConfig) -> None:
    """AgentConfigError unless the daemon has something to watch."""
    if not config.sources:
        raise AgentConfigError("agent.sources is empty: configure at least one source")


def make_link(config: AgentConfig, *, concurrency: int | None = None) -> ServerLink:
    """The server link the configuration describes (`concurrency` requests at once,
    default `max_concurrent_uploads`); AgentConfigError naming the key at fault."""
    try:
        return ServerLink.for_config(
            config.server,
            token=config.token.get_secret_value() if config.token is not None else None,
            tls=config.tls,
            tls_ca_file=config.tls_ca_file,
            request_timeout_s=config.request_timeout_s,
            concurrency=concurrency or config.max_concurrent_uploads,
        )
    except ValueError as exc:
        key = "agent.tls_ca_file" if "CA file" in str(exc) else "agent.server"
        raise AgentConfigError(f"{key}: {exc}") from None


async def _run_sources(
    contexts: list[SourceContext],
    work: trio.CancelScope,
    work_done: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        with work:
            async with trio.open_nursery() as nursery:
                for ctx in contexts:
                    await nursery.start(run_source, ctx)
                task_status.started()
    finally:
        work_done.set()
