"""The no-loss check: the server's state against the inventory of what was dropped.

`verify_no_loss` looks at everything a lost or duplicated call could hide in and
collects every problem before failing, so one run shows the whole damage:

- PostgreSQL: every call exactly once; every recording `stored` with the original's
  sha256, its temporary WAV forgotten; no `uploaded`/`encoding`/`failed` row; no job.
- Permanent storage: exactly one MP3 object per stored recording (no orphans).
- Temporary storage: no WAV left; no partial upload except those a crash left.
- The spools: empty; the quarantine holds only what the test put there on purpose.
- The APIs: every call found by an interval search (REST and gRPC, all pages, no
  duplicates), by its phone number and by its own minute; every public recording
  downloadable over REST as a stereo MP3 within 30 ms of the WAV's duration, whose
  bytes hash to the row's sha256; every private one refused (403 / PERMISSION_DENIED).
"""

from __future__ import annotations

import hashlib
import io
import random
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import soundfile
import trio
from google.protobuf.timestamp_pb2 import Timestamp

from cj.errors import ErrorCode
from cj.proto import calljournal_pb2 as pb
from cj.rpc import RpcError
from tests.e2e.calls import Inventory
from tests.e2e.stack import Stack

DURATION_TOLERANCE_S = 0.030
CONCURRENCY = 8


@dataclass
class LossReport:
    """What the check found; `figures()` goes into docs/reliability.md."""

    calls_expected: int = 0
    calls_found: int = 0
    calls_lost: int = 0
    calls_unexpected: int = 0
    calls_duplicated: int = 0  # seen more than once by a search
    recordings_expected: int = 0
    recordings_stored: int = 0
    recordings_lost: int = 0
    recordings_duplicated: int = 0  # MP3 objects beyond one per recording
    downloads_verified: int = 0
    private_refused: int = 0
    searches: int = 0
    quarantined: int = 0
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("problems")
        return data

    def problem(self, text: str) -> None:
        self.problems.append(text)


def _sample(items: Collection[str], limit: int | None) -> list[str]:
    ordered = sorted(items)
    if limit is None or len(ordered) <= limit:
        return ordered
    return sorted(random.Random(len(ordered)).sample(ordered, limit))


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _excerpt(values: Collection[str], n: int = 5) -> str:
    shown = sorted(values)[:n]
    more = f" … and {len(values) - n} more" if len(values) > n else ""
    return ", ".join(shown) + more


async def verify_no_loss(
    stack: Stack,
    inventory: Inventory,
    *,
    list_permanent: Callable[[], list[str]],
    allowed_partials: Collection[str] = (),
    expected_quarantine: int = 0,
    phone_sample: int | None = None,
    download_sample: int | None = None,
) -> LossReport:
    """Check everything (see the module documentation); raise AssertionError listing
    every problem, else return the figures. `*_sample` bound the per-call API checks
    (None: every call)."""
    report = LossReport(
        calls_expected=len(inventory), recordings_expected=len(inventory.recordings)
    )
    await _check_database(stack, inventory, report)
    await _check_storages(stack, list_permanent, allowed_partials, report)
    _check_spools(stack, expected_quarantine, report)
    await _check_searches(stack, inventory, report, phone_sample)
    await _check_downloads(stack, inventory, report, download_sample)
    if report.problems:
        shown = "\n  - ".join(report.problems[:40])
        raise AssertionError(
            f"{len(report.problems)} problem(s) after the run:\n  - {shown}\n"
            f"figures: {report.figures()}"
        )
    return report


async def _check_database(stack: Stack, inventory: Inventory, report: LossReport) -> None:
    calls = await stack.aquery("SELECT uuid::text AS uuid FROM calls")
    found = Counter(str(row["uuid"]) for row in calls)
    expected = set(inventory.calls)
    lost = expected - set(found)
    unexpected = set(found) - expected
    report.calls_found = len(expected & set(found))
    report.calls_lost = len(lost)
    report.calls_unexpected = len(unexpected)
    if lost:
        report.problem(f"{len(lost)} call(s) lost: {_excerpt(lost)}")
    if unexpected:
        report.problem(f"{len(unexpected)} call(s) nobody dropped: {_excerpt(unexpected)}")

    rows = await stack.aquery(
        """SELECT call_uuid::text AS uuid, status, original_sha256, original_key, storage,
                  key, sha256, duration_ms, last_error FROM recordings"""
    )
    by_uuid = {str(row["uuid"]): row for row in rows}
    wanted = inventory.recordings
    missing = set(wanted) - set(by_uuid)
    extra = set(by_uuid) - set(wanted)
    report.recordings_lost = len(missing)
    if missing:
        report.problem(f"{len(missing)} recording(s) lost: {_excerpt(missing)}")
    if extra:
        report.problem(f"{len(extra)} recording row(s) for calls without one: {_excerpt(extra)}")
    stored = 0
    for call_uuid, recording in wanted.items():
        row = by_uuid.get(call_uuid)
        if row is None:
            continue
        if row["original_sha256"] != recording.sha256:
            report.problem(f"{call_uuid}: original sha256 differs from the dropped WAV's")
        if row["status"] != "stored":
            report.problem(
                f"{call_uuid}: recording {row['status']} ({row['last_error'] or 'no error'})"
            )
            continue
        if row["original_key"] is not None:
            report.problem(f"{call_uuid}: stored, but still points at its temporary WAV")
        stored += 1
    report.recordings_stored = stored
    pending = Counter(row["status"] for row in rows if row["status"] != "stored")
    if pending:
        report.problem(f"recordings not stored: {dict(pending)}")
    jobs = await stack.count("SELECT count(*) FROM jobs")
    if jobs:
        report.problem(f"the jobs table is not drained: {jobs} job(s) left")


async def _check_storages(
    stack: Stack,
    list_permanent: Callable[[], list[str]],
    allowed_partials: Collection[str],
    report: LossReport,
) -> None:
    keys = Counter(await trio.to_thread.run_sync(list_permanent))
    rows = await stack.aquery("SELECT key FROM recordings WHERE status = 'stored'")
    recorded = Counter(str(row["key"]) for row in rows)
    duplicated = sum(count - 1 for count in recorded.values() if count > 1)
    orphans = set(keys) - set(recorded)
    absent = set(recorded) - set(keys)
    report.recordings_duplicated = duplicated + len(orphans)
    if duplicated:
        report.problem(f"{duplicated} recording row(s) share an MP3 key")
    if orphans:
        report.problem(f"{len(orphans)} MP3 object(s) no row points at: {_excerpt(orphans)}")
    if absent:
        report.problem(f"{len(absent)} stored row(s) whose MP3 is missing: {_excerpt(absent)}")
    left = stack.temp_objects()
    if left:
        report.problem(f"{len(left)} temporary WAV(s) left: {_excerpt(left)}")
    partials = set(stack.temp_partials()) - set(allowed_partials)
    if partials:
        report.problem(f"partial uploads left in temporary storage: {_excerpt(partials)}")


def _check_spools(stack: Stack, expected_quarantine: int, report: LossReport) -> None:
    quarantined = 0
    for spool in stack.spools:
        left = spool.leftovers()
        for place in ("cdr", "recordings", "pending"):
            if left[place]:
                report.problem(
                    f"spool {spool.name}: {len(left[place])} file(s) left in {place}: "
                    f"{_excerpt(left[place])}"
                )
        quarantined += len([n for n in left["quarantine"] if not n.endswith(".error")])
    report.quarantined = quarantined
    if quarantined != expected_quarantine:
        report.problem(f"{quarantined} file(s) quarantined, expected {expected_quarantine}")


async def _check_searches(
    stack: Stack, inventory: Inventory, report: LossReport, phone_sample: int | None
) -> None:
    if not inventory.calls:
        return
    first = min(c.started_at for c in inventory.calls.values())
    last = max(c.started_at for c in inventory.calls.values())
    window = (first, last + timedelta(seconds=1))
    expected = set(inventory.calls)
    async with stack.rest() as rest, stack.grpc() as grpc:
        for transport, seen in (
            ("REST", await _interval_rest(rest, *window, report)),
            ("gRPC", await _interval_grpc(grpc, *window, report)),
        ):
            counts = Counter(seen)
            doubles = {u for u, n in counts.items() if n > 1}
            report.calls_duplicated = max(report.calls_duplicated, len(doubles))
            if doubles:
                report.problem(f"{transport} interval search returns twice: {_excerpt(doubles)}")
            if set(counts) != expected:
                missing = expected - set(counts)
                report.problem(
                    f"{transport} interval search misses {len(missing)}: {_excerpt(missing)}"
                )

        limiter = trio.Semaphore(CONCURRENCY)

        async def by_call(call_uuid: str, use_grpc: bool) -> None:
            call = inventory.calls[call_uuid]
            async with limiter:
                phone = call.caller_digits[-10:]
                minute = (call.started_at, call.started_at + timedelta(seconds=1))
                if use_grpc:
                    by_phone = await grpc.search_by_phone(pb.SearchByPhoneRequest(phone=phone))
                    found_phone = [c.call.uuid for c in by_phone.calls]
                    by_time = await grpc.search_by_interval(
                        pb.SearchByIntervalRequest(
                            start_time=timestamp(minute[0]), end_time=timestamp(minute[1])
                        )
                    )
                    found_time = [c.call.uuid for c in by_time.calls]
                else:
                    found_phone = await _rest_uuids(rest, {"phone": phone})
                    found_time = await _rest_uuids(
                        rest, {"from": minute[0].isoformat(), "to": minute[1].isoformat()}
                    )
                report.searches += 2
            if found_phone != [call_uuid]:
                report.problem(f"{call_uuid}: phone search {phone} found {found_phone}")
            if found_time != [call_uuid]:
                report.problem(f"{call_uuid}: search of its start second found {found_time}")

        async with trio.open_nursery() as nursery:
            for n, call_uuid in enumerate(_sample(expected, phone_sample)):
                nursery.start_soon(by_call, call_uuid, n % 2 == 1)


async def _rest_uuids(rest: httpx.AsyncClient, params: dict[str, str]) -> list[str]:
    response = await rest.get("/api/v1/calls", params=params)
    assert response.status_code == 200, f"search {params}: {response.status_code} {response.text}"
    return [item["call"]["uuid"] for item in response.json()["calls"]]


async def _interval_rest(
    rest: httpx.AsyncClient, start: datetime, end: datetime, report: LossReport
) -> list[str]:
    seen: list[str] = []
    params = {"from": start.isoformat(), "to": end.isoformat(), "limit": "1000"}
    while True:
        response = await rest.get("/api/v1/calls", params=params)
        report.searches += 1
        assert response.status_code == 200, f"interval search: {response.text}"
        body = response.json()
        seen.extend(item["call"]["uuid"] for item in body["calls"])
        token = body.get("next_page_token")
        if not token:
            return seen
        params["page_token"] = token


async def _interval_grpc(
    grpc: Any, start: datetime, end: datetime, report: LossReport
) -> list[str]:
    seen: list[str] = []
    token = ""
    while True:
        reply = await grpc.search_by_interval(
            pb.SearchByIntervalRequest(
                start_time=timestamp(start), end_time=timestamp(end), limit=1000, page_token=token
            )
        )
        report.searches += 1
        seen.extend(record.call.uuid for record in reply.calls)
        token = reply.next_page_token
        if not token:
            return seen


async def _check_downloads(
    stack: Stack, inventory: Inventory, report: LossReport, sample: int | None
) -> None:
    rows = await stack.aquery(
        "SELECT call_uuid::text AS uuid, sha256 FROM recordings WHERE status = 'stored'"
    )
    sha = {str(row["uuid"]): row["sha256"] for row in rows}
    recordings = inventory.recordings
    chosen = [u for u in _sample(recordings, sample) if u in sha]
    limiter = trio.Semaphore(CONCURRENCY)

    async def check(call_uuid: str, rest: httpx.AsyncClient, grpc: Any) -> None:
        call = inventory.calls[call_uuid]
        async with limiter:
            response = await rest.get(f"/api/v1/calls/{call_uuid}/recording")
            if call.private:
                denied = False
                try:
                    async with grpc.download_recording(call_uuid) as parts:
                        async for _ in parts:
                            pass
                except RpcError as exc:
                    denied = exc.code is ErrorCode.PERMISSION_DENIED
                if response.status_code != 403 or not denied:
                    report.problem(
                        f"{call_uuid}: private recording not refused "
                        f"(REST {response.status_code}, gRPC denied={denied})"
                    )
                else:
                    report.private_refused += 1
                return
            if response.status_code != 200:
                report.problem(f"{call_uuid}: download answered {response.status_code}")
                return
            body = response.content
        if response.headers.get("content-type", "").split(";")[0] != "audio/mpeg":
            report.problem(f"{call_uuid}: downloaded {response.headers.get('content-type')}")
        if hashlib.sha256(body).hexdigest() != sha[call_uuid]:
            report.problem(f"{call_uuid}: downloaded bytes do not hash to the row's sha256")
        channels, seconds = await trio.to_thread.run_sync(decoded_length, body)
        source = recordings[call_uuid]
        if channels != 2:
            report.problem(f"{call_uuid}: MP3 has {channels} channel(s), not 2")
        if abs(seconds - source.duration_s) > DURATION_TOLERANCE_S:
            report.problem(
                f"{call_uuid}: MP3 lasts {seconds:.3f} s, the WAV {source.duration_s:.3f} s "
                f"({source.subtype} {source.sample_rate} Hz)"
            )
        report.downloads_verified += 1

    async with stack.rest() as rest, stack.grpc() as grpc, trio.open_nursery() as nursery:
        for call_uuid in chosen:
            nursery.start_soon(check, call_uuid, rest, grpc)


def decoded_length(mp3: bytes) -> tuple[int, float]:
    """(channels, seconds) of an MP3, by decoding every frame (constant memory)."""
    frames = 0
    with soundfile.SoundFile(io.BytesIO(mp3)) as audio:
        channels, rate = audio.channels, audio.samplerate
        while True:
            block = audio.read(65536, dtype="int16")
            if not len(block):
                break
            frames += len(block)
    return channels, frames / rate


def s3_lister(server: Any, bucket: str) -> Callable[[], list[str]]:
    """Every key in `bucket` (all pages) on a SeaweedFS test server."""

    def list_keys() -> list[str]:
        client = server.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    return list_keys


async def settled(stack: Stack, inventory: Inventory) -> bool:
    """Whether the pipeline has finished with everything dropped (cheap to poll)."""
    rows = await stack.aquery(
        """SELECT (SELECT count(*) FROM calls) AS calls,
                  (SELECT count(*) FROM recordings WHERE status = 'stored'
                                                     AND original_key IS NULL) AS stored,
                  (SELECT count(*) FROM jobs) AS jobs"""
    )
    counts = rows[0]
    if counts["calls"] < len(inventory) or counts["stored"] < len(inventory.recordings):
        return False
    if counts["jobs"] or stack.temp_objects():
        return False
    for spool in stack.spools:
        left = spool.leftovers()
        if left["cdr"] or left["recordings"] or left["pending"]:
            return False
    return True


async def settle_and_verify(
    stack: Stack, inventory: Inventory, *, timeout_s: float, **options: Any
) -> LossReport:
    """Wait (bounded) until the pipeline settled, then `verify_no_loss`.

    If it never settles, the check runs anyway, so the failure names what is missing.
    """
    try:
        await stack.harness.eventually(
            lambda: settled(stack, inventory), timeout_s=timeout_s, what="pipeline settled"
        )
    except AssertionError as exc:
        if "not the case" not in str(exc):
            raise  # a daemon died
        await verify_no_loss(stack, inventory, **options)
        raise  # verify found nothing wrong, yet it did not settle: say so
    return await verify_no_loss(stack, inventory, **options)
