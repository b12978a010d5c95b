"""Retention: delete the audio of calls past their source's retention, keep the metadata.

    policy = RetentionPolicy.from_config(settings.retention, now=now, override_days=None)
    report = await purge_recordings(db, storages, policy, actor="cli:ops")

Each source keeps its recordings `retention.by_source[source]` days, every other source
`retention.recordings_days` (unset: forever). Calls under a legal hold (`cj hold`) are
never purged; recordings still being encoded wait for the next run. The report says
what was purged per rule and what was skipped, and why.

A purged recording keeps its row (status `purged`, with size, checksum and length) so the
call still says it had a recording; downloads answer GONE. The row is marked first (with
the hold check, atomically, audited), the objects deleted second, then forgotten: a run
interrupted in between leaves a `purged` row that still names its objects, which the
next run deletes first. A hold placed while a purge runs is honoured (both take the
call's advisory lock, cj/db/recordings.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from cj.config import RetentionConfig
from cj.db import Database
from cj.db.recordings import (
    RetentionRule,
    Skipped,
    forget_purged_objects,
    mark_purged,
    purgeable,
    purged_with_objects,
    skipped_by_rule,
)
from cj.model import Recording
from cj.storage import Storages

log = structlog.get_logger(__name__)


class RetentionError(ValueError):
    """Retention cannot run as configured; the message names the setting."""


@dataclass(frozen=True)
class NamedRule:
    label: str  # "source pbx-1 (90 days)" or "every other source (180 days)"
    days: int
    rule: RetentionRule


@dataclass(frozen=True)
class RetentionPolicy:
    rules: tuple[NamedRule, ...]

    @classmethod
    def from_config(
        cls, config: RetentionConfig, *, now: datetime, override_days: int | None = None
    ) -> RetentionPolicy:
        """The rules of `config`; `override_days` replaces the default for other sources."""
        default = override_days if override_days is not None else config.recordings_days
        if default is None and not config.by_source:
            raise RetentionError(
                "nothing to purge by: give --older-than-days, or set retention.recordings_days "
                "(and retention.by_source for sources that keep theirs longer or shorter)"
            )
        rules = [
            NamedRule(
                f"source {source} ({days} days)",
                days,
                RetentionRule(now - timedelta(days=days), source=source),
            )
            for source, days in sorted(config.by_source.items())
        ]
        if default is not None:
            rules.append(
                NamedRule(
                    f"{'every other source' if rules else 'every source'} ({default} days)",
                    default,
                    RetentionRule(
                        now - timedelta(days=default), other_than=tuple(config.by_source)
                    ),
                )
            )
        return cls(tuple(rules))


@dataclass
class RuleReport:
    label: str
    started_before: datetime
    recordings: int = 0
    objects_deleted: int = 0
    skipped: Skipped | None = None


@dataclass
class PurgeReport:
    rules: list[RuleReport] = field(default_factory=list)
    resumed: int = 0  # purged recordings of an interrupted run whose objects were deleted now

    @property
    def recordings(self) -> int:
        return sum(r.recordings for r in self.rules)

    @property
    def objects_deleted(self) -> int:
        return sum(r.objects_deleted for r in self.rules)

    @property
    def held(self) -> int:
        return sum(r.skipped.held for r in self.rules if r.skipped is not None)


async def purge_recordings(
    db: Database,
    storages: Storages,
    policy: RetentionPolicy,
    *,
    actor: str,
    dry_run: bool = False,
    batch: int = 500,
) -> PurgeReport:
    """Purge stored and failed recordings past retention, rule by rule.

    Raises StorageError when a storage cannot delete (the row stays `purged` naming the
    object, and the next run tries again); UnknownStorage when a storage is not
    configured.
    """
    report = PurgeReport()
    if not dry_run:
        report.resumed = await _finish_interrupted(db, storages, batch)
    for named in policy.rules:
        rule_report = RuleReport(named.label, named.rule.started_before)
        report.rules.append(rule_report)
        rule_report.skipped = await db.run(functools.partial(skipped_by_rule, rule=named.rule))
        reason = f"retention: {named.label}"
        while True:
            due = await db.run(functools.partial(purgeable, rule=named.rule, limit=batch))
            if dry_run:
                rule_report.recordings = len(due)
                rule_report.objects_deleted = sum(len(_objects(r)) for r in due)
                break  # one batch is enough to say whether there is work
            for recording in due:
                marked = await db.run(
                    functools.partial(
                        mark_purged, call_uuid=recording.call_uuid, actor=actor, reason=reason
                    )
                )
                if marked is None:
                    continue  # held, or changed, since it was listed
                rule_report.objects_deleted += await _delete_objects(db, storages, marked)
                rule_report.recordings += 1
            if due:
                log.info("recordings_purged", rule=named.label, count=len(due))
            if len(due) < batch:
                break
    return report


async def _finish_interrupted(db: Database, storages: Storages, batch: int) -> int:
    finished = 0
    while True:
        leftovers = await db.run(functools.partial(purged_with_objects, limit=batch))
        for recording in leftovers:
            await _delete_objects(db, storages, recording)
            finished += 1
        if len(leftovers) < batch:
            return finished


async def _delete_objects(db: Database, storages: Storages, recording: Recording) -> int:
    objects = _objects(recording)
    for storage_name, key in objects:
        await storages.get(storage_name).delete(key)  # a missing object is not an error
    await db.run(functools.partial(forget_purged_objects, call_uuid=recording.call_uuid))
    return len(objects)


def _objects(recording: Recording) -> list[tuple[str, str]]:
    return [
        (storage, key)
        for storage, key in (
            (recording.storage, recording.key),
            (recording.original_storage, recording.original_key),
        )
        if storage is not None and key is not None
    ]
