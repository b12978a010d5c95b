"""`cj-agent`: the PBX agent daemon (default) and `cj-agent backfill`."""

from __future__ import annotations

import signal
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import trio

from cj.cdr import CdrOptions
from cj.clitools import config_option, load_command_settings, remember_config
from cj.config import AgentSettings, AgentSourceConfig
from cj.logs import configure_logging
from cj_agent.backfill import BackfillPlan, BackfillSummary, FailureReport, run_backfill
from cj_agent.progress import open_progress
from cj_agent.service import AgentConfigError, check_sources, make_link


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@config_option
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Call Journal PBX agent: uploads CDRs and recordings to cj-api.

    Without a command, runs the agent (as `serve`).
    """
    remember_config(ctx, config_path)  # `cj-agent --config X backfill …` works as well
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, config_path=config_path)


def _settings(config_path: Path | None) -> AgentSettings:
    return load_command_settings(AgentSettings, config_path)


@cli.command()
@config_option
def serve(config_path: Path | None) -> None:
    """Watch the configured sources until SIGTERM (then finish uploads and exit 0)."""
    from cj.daemon import run_daemon
    from cj_agent.service import serve as serve_agent

    settings = _settings(config_path)
    try:
        check_sources(settings.agent)  # the checks serve makes, before anything starts
        make_link(settings.agent)
    except AgentConfigError as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(run_daemon("cj-agent", serve_agent, settings, settings.logging))


def _pick_source(settings: AgentSettings, name: str | None) -> AgentSourceConfig | None:
    sources = settings.agent.sources
    names = ", ".join(s.name for s in sources) or "none"
    if name is not None:
        for source in sources:
            if source.name == name:
                return source
        raise click.BadParameter(f"no source {name!r} (configured: {names})", param_hint="--source")
    if len(sources) > 1:
        raise click.BadParameter(
            f"several sources are configured ({names}): say which with --source",
            param_hint="--source",
        )
    return sources[0] if sources else None


def _moment(text: str | None, zone: ZoneInfo, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2026-03-01) or date-time (2026-03-01T12:00)",
            param_hint=option,
        ) from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


@cli.command()
@config_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--source",
    "source_name",
    default=None,
    help="The configured source whose "
    "format, time zone and file patterns apply (needed when several are configured).",
)
@click.option(
    "--since",
    default=None,
    help="Only calls that started at or after this date or "
    "date-time (the source's time zone unless one is given).",
)
@click.option(
    "--until",
    default=None,
    help="Only calls that started before this date or date-time (exclusive).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="Batches and uploads in flight (default: agent.max_concurrent_uploads).",
)
@click.option("--dry-run", is_flag=True, help="Read and count everything; send nothing.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to list failures (default: ./cj-agent-backfill-<time>.failures.jsonl).",
)
def backfill(
    config_path: Path | None,
    paths: tuple[Path, ...],
    source_name: str | None,
    since: str | None,
    until: str | None,
    jobs: int | None,
    dry_run: bool,
    report_path: Path | None,
) -> None:
    """Import an archive of CDRs and recordings (PATH: directories, walked recursively,
    or CDR files). Skips what the server has; never deletes anything; Ctrl-C stops it
    and a re-run continues. Exit status 1 when anything failed (see the report file),
    130 when interrupted."""
    settings = _settings(config_path)
    source = _pick_source(settings, source_name)
    options = CdrOptions.for_source(source) if source is not None else CdrOptions()
    zone = ZoneInfo(options.timezone)
    try:
        plan = BackfillPlan(
            paths=paths,
            options=options,
            cdr_patterns=source.cdr_patterns if source else ("*.json",),
            recording_patterns=source.recording_patterns if source else ("*.wav",),
            since=_moment(since, zone, "--since"),
            until=_moment(until, zone, "--until"),
            jobs=jobs or settings.agent.max_concurrent_uploads,
            dry_run=dry_run,
            request_timeout_s=settings.agent.request_timeout_s,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not dry_run:
        try:
            make_link(settings.agent)  # refuse a bad address or CA file before any work
        except AgentConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if report_path is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        report_path = Path(f"cj-agent-backfill-{stamp}.failures.jsonl")
    configure_logging(settings.logging)
    report = FailureReport(report_path)
    summary = trio.run(_backfill, plan, settings, report)
    click.echo(("interrupted: " if summary.cancelled else "") + "backfill summary", err=False)
    for line in summary.lines():
        click.echo(f"  {line}")
    if report.count:
        click.echo(f"failures are listed in {report.path.resolve()}")
    if summary.cancelled:
        click.echo("run the same command again to continue where this run stopped")
        raise SystemExit(130)
    raise SystemExit(1 if summary.failed else 0)


async def _backfill(
    plan: BackfillPlan, settings: AgentSettings, report: FailureReport
) -> BackfillSummary:
    config = settings.agent
    link = None
    if not plan.dry_run:
        link = make_link(config, concurrency=plan.jobs)  # checked by the caller
    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_signal, scope)
        async with open_progress(sys.stderr) as progress:
            summary = await run_backfill(
                plan, link, progress=progress, report=report, cancel_scope=scope
            )
        nursery.cancel_scope.cancel()
    return summary


async def _cancel_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()  # everything in it checkpoints within a second


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
