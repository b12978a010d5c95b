"""Retention: delete the audio of calls older than a cutoff, keep their metadata.

A purged recording keeps its row (status `purged`, with size, checksum and length) so
the call still says it had a recording; downloads answer GONE. The audio is deleted
from storage first and the row marked second: a crash in between leaves a `stored`
row whose object is gone, which the next run finishes (deleting a missing object is
not an error).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

import structlog

from cj.db import Database
from cj.db.recordings import mark_purged, purgeable
from cj.storage import Storages

log = structlog.get_logger(__name__)


@dataclass
class PurgeReport:
    recordings: int = 0
    objects_deleted: int = 0


async def purge_recordings(
    db: Database,
    storages: Storages,
    *,
    started_before: datetime,
    dry_run: bool = False,
    batch: int = 500,
) -> PurgeReport:
    """Purge stored and failed recordings of calls that started before `started_before`.

    Raises StorageError when a storage cannot delete (nothing is marked purged for
    that recording); UnknownStorage when a recording's storage is not configured.
    """
    report = PurgeReport()
    while True:
        due = await db.run(functools.partial(purgeable, started_before=started_before, limit=batch))
        if dry_run:
            report.recordings += len(due)
            report.objects_deleted += sum(
                (r.key is not None) + (r.original_key is not None) for r in due
            )
            return report  # one batch is enough to say whether there is work
        for recording in due:
            for storage_name, key in (
                (recording.storage, recording.key),
                (recording.original_storage, recording.original_key),
            ):
                if storage_name is not None and key is not None:
                    await storages.get(storage_name).delete(key)
                    report.objects_deleted += 1
            await db.run(functools.partial(mark_purged, call_uuid=recording.call_uuid))
            report.recordings += 1
        if due:
            log.info("recordings_purged", count=len(due), total=report.recordings)
        if len(due) < batch:
            return report
