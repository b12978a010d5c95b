"""CDR retention: delete whole months of calls (`cj purge --cdr-older-than 24m`).

    report = await purge_cdrs(db, storages, older_than=CdrAge(months=24), now=now,
                              actor="cli:ops")

`calls` is partitioned by month (sql/0006); retention drops a month's partition once all
of it is older than the cutoff, so the cutoff is rounded down to the start of its month
(a CDR is kept up to a month longer than asked, never shorter). Before that, the audio of
those calls is purged the usual way (cj/retention.py: objects deleted, rows marked,
audited). A month holding a call under legal hold, or a recording still being encoded,
is not dropped: its other calls are deleted (one set-based DELETE of the month's keys,
one of its calls) and the partition stays for the kept ones. Calls in the default
partition (odd dates) older than the cutoff are deleted the same way. A dropped month's
keys go in one DELETE too; only the foreign key of `recordings` still cascades key by
key (PostgreSQL's referential triggers run per row). Recordings retention itself is unchanged.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from cj.db import Database
from cj.db.partitions import (
    DEFAULT_PARTITION,
    MonthPurge,
    forget_known,
    list_partitions,
    purge_partition,
)
from cj.db.recordings import RetentionRule
from cj.retention import NamedRule, PurgeReport, RetentionPolicy, purge_recordings
from cj.storage import Storages

log = structlog.get_logger(__name__)

_AGE = re.compile(r"^(\d+)\s*([dmy])$")


@dataclass(frozen=True)
class CdrAge:
    """How old a CDR must be to go: days, or calendar months."""

    days: int = 0
    months: int = 0

    @classmethod
    def parse(cls, text: str) -> CdrAge:
        """'400d', '18m' or '2y'; ValueError saying so otherwise."""
        match = _AGE.match(text.strip().lower())
        if not match or int(match[1]) < 1:
            raise ValueError(f"{text!r}: give a number of days, months or years: 400d, 18m, 2y")
        count, unit = int(match[1]), match[2]
        if unit == "d":
            return cls(days=count)
        return cls(months=count * (12 if unit == "y" else 1))

    def cutoff(self, now: datetime) -> datetime:
        """The start of the month in which calls `self` old begin: everything before goes."""
        at = (now - timedelta(days=self.days)).astimezone(UTC)
        month = at.year * 12 + at.month - 1 - self.months
        return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


@dataclass
class CdrPurgeReport:
    cutoff: datetime
    audio: PurgeReport | None = None
    months: list[MonthPurge] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.months)

    @property
    def kept(self) -> int:
        return sum(m.kept for m in self.months)


async def purge_cdrs(
    db: Database,
    storages: Storages,
    *,
    older_than: CdrAge,
    now: datetime,
    actor: str,
    dry_run: bool = False,
) -> CdrPurgeReport:
    """Delete the calls (metadata, keys, recording rows) that started before the cutoff,
    their audio first; held calls and calls whose audio is not stored yet stay."""
    cutoff = older_than.cutoff(now)
    report = CdrPurgeReport(cutoff)
    rule = NamedRule(
        f"calls before {cutoff:%Y-%m-%d} (CDR retention)",
        (now - cutoff).days,
        RetentionRule(cutoff),
    )
    report.audio = await purge_recordings(
        db, storages, RetentionPolicy((rule,)), actor=actor, dry_run=dry_run
    )
    for partition in await db.run(list_partitions):
        old = partition.lower is not None and partition.lower < cutoff
        if not old and partition.name != DEFAULT_PARTITION:
            continue
        done = await db.run(
            functools.partial(
                purge_partition, partition=partition, before=cutoff, actor=actor, dry_run=dry_run
            )
        )
        if done.calls or done.kept:
            report.months.append(done)
            log.info(
                "cdrs_purged",
                partition=done.partition,
                calls=done.calls,
                kept=done.kept,
                dropped=done.dropped,
                dry_run=dry_run,
            )
    await db.run(forget_known)
    return report


def format_cdr_report(report: CdrPurgeReport, *, dry_run: bool) -> list[str]:
    verb = "would delete" if dry_run else "deleted"
    lines = [f"CDRs of calls before {report.cutoff:%Y-%m-%d} UTC:"]
    for month in report.months:
        how = " (partition dropped)" if month.dropped else ""
        if dry_run and month.dropped:
            how = " (partition would be dropped)"
        line = f"  {month.partition}: {verb} {month.calls} call(s){how}"
        if month.kept:
            line += f", kept {month.kept} (legal hold, or audio not stored yet)"
        lines.append(line)
    if not report.months:
        lines.append("  nothing to delete")
    return lines
