"""A download racing the encoder's WAV → MP3 handover (issue 11, item 8).

The race is made deterministic by doing the handover by hand between the two steps
of a download (`prepare_download`, then `open_download`), with the encoder's own
database functions, on the real service, PostgreSQL and filesystem storages: the WAV
the download prepared is gone when it opens. A whole download follows the recording
to its MP3 and is audited `allowed` once, with what was really sent; a range of the
old form is UNAVAILABLE with a retry-after hint and audited `unavailable`, never
`allowed`. On the old main this was INTERNAL, audited `allowed`.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from cj.auth import Principal
from cj.config import ApiConfig, AuthConfig, DatabaseConfig, StorageConfig
from cj.db.recordings import forget_original, mark_stored
from cj.errors import ErrorCode, ServiceError
from cj_api.service import UploadHeader
from tests.api.conftest import (
    AGENT_TOKEN,
    READER_TOKEN,
    ServiceStack,
    api_auth_config,
    api_config,
    api_storage_config,
    open_service_stack,
)
from tests.factories import make_call

__all__ = ["api_auth_config", "api_config", "api_storage_config"]  # fixtures, used by name

TIMEOUT_S = 30
WAV = b"RIFF" + bytes(range(256)) * 400
MP3 = b"ID3" + bytes(reversed(range(256))) * 100


@pytest.fixture
async def stack(
    database_config: DatabaseConfig,
    api_storage_config: StorageConfig,
    api_auth_config: AuthConfig,
    api_config: ApiConfig,
) -> AsyncIterator[ServiceStack]:
    async with open_service_stack(
        database_config, api_storage_config, api_auth_config, api_config
    ) as service_stack:
        yield service_stack


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def recorded_call(stack: ServiceStack) -> tuple[uuid.UUID, Principal]:
    agent = stack.authenticator.authenticate(f"Bearer {AGENT_TOKEN}")
    call = make_call()
    await stack.service.add_call(agent, call)
    header = UploadHeader(call.uuid, "rec.wav", len(WAV), hashlib.sha256(WAV).hexdigest())
    await stack.service.upload_recording(agent, header, chunks(WAV))
    return call.uuid, stack.authenticator.authenticate(f"Bearer {READER_TOKEN}")


async def hand_over(stack: ServiceStack, call_uuid: uuid.UUID) -> None:
    """What cj_encoder does: store the MP3, record it, remove the WAV."""
    permanent = stack.storages.permanent
    key = f"2026/03/02/{call_uuid}.mp3"
    async with permanent.open_upload(key, expected_sha256=hashlib.sha256(MP3).hexdigest()) as up:
        await up.write(MP3)
        await up.commit()
    await stack.db.run(
        functools.partial(
            mark_stored,
            call_uuid=call_uuid,
            storage=permanent.name,
            key=key,
            size=len(MP3),
            sha256=hashlib.sha256(MP3).hexdigest(),
            content_type="audio/mpeg",
            duration_ms=1000,
            sample_rate=8000,
            channels=2,
        )
    )
    rows = await stack.query("SELECT original_key FROM recordings WHERE call_uuid = %s", call_uuid)
    await stack.storages.temporary.delete(rows[0]["original_key"])
    await stack.db.run(functools.partial(forget_original, call_uuid=call_uuid))


async def test_a_whole_download_follows_the_recording_to_its_mp3(stack: ServiceStack) -> None:
    with trio.fail_after(TIMEOUT_S):
        call_uuid, reader = await recorded_call(stack)
        info = await stack.service.prepare_download(reader, call_uuid, "10.0.0.7")
        assert info.content_type == "audio/wav"
        await hand_over(stack, call_uuid)
        async with stack.service.open_download(reader, info, 0, None, "10.0.0.7") as opened:
            body = b"".join([chunk async for chunk in opened.chunks])
        audit = await stack.query("SELECT result, detail, address FROM audit_log ORDER BY id")
    assert opened.info.content_type == "audio/mpeg" and opened.end == len(MP3)
    assert body == MP3
    assert audit == [
        {"result": "allowed", "detail": {"detail": "audio/mpeg"}, "address": "10.0.0.7"}
    ]


async def test_a_range_of_the_old_form_is_unavailable_and_not_audited_allowed(
    stack: ServiceStack,
) -> None:
    with trio.fail_after(TIMEOUT_S):
        call_uuid, reader = await recorded_call(stack)
        info = await stack.service.prepare_download(reader, call_uuid)
        await hand_over(stack, call_uuid)
        with pytest.raises(ServiceError) as raised:
            async with stack.service.open_download(reader, info, 100, 200):
                pass
        audit = await stack.query("SELECT result FROM audit_log ORDER BY id")
    assert raised.value.code is ErrorCode.UNAVAILABLE
    assert raised.value.retry_after_s is not None and raised.value.retry_after_s > 0
    assert audit == [{"result": "unavailable"}]
