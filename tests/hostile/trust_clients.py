"""The operations the trust tests attack, over REST and over gRPC, with one interface.

Each method answers what the server said in a form both transports share: an outcome
string, a dict of counts or states, or a `Refusal` (the error code, field and message).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from cj.codec import call_to_pb
from cj.errors import ErrorCode
from cj.model import Call
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, RpcError, open_channel
from cj_api.call_codec import call_to_json
from tests.fixtures.api import RunningApi

_STATUS_NAMES = {value: name for name, value in pb.RecordingStatus.items()}
_OUTCOMES = {
    pb.UPSERT_OUTCOME_INSERTED: "inserted",
    pb.UPSERT_OUTCOME_UPDATED: "updated",
    pb.UPSERT_OUTCOME_UNCHANGED: "unchanged",
}


@dataclass(frozen=True)
class Refusal:
    code: ErrorCode
    field: str | None
    message: str


class Transport(Protocol):
    name: str

    async def add_call(self, token: str, call: Call) -> str | Refusal: ...

    async def add_calls(self, token: str, calls: list[Call]) -> dict[str, Any]: ...

    async def check(self, token: str, uuids: list[uuid.UUID]) -> list[dict[str, Any]]: ...

    async def upload(self, token: str, call_uuid: uuid.UUID, data: bytes) -> str | Refusal: ...

    async def set_privacy(
        self, token: str, call_uuid: uuid.UUID, *, private: bool, reason: str
    ) -> dict[str, Any] | Refusal: ...

    async def download(self, token: str, call_uuid: uuid.UUID) -> bytes | Refusal: ...


def call_json(call: Call) -> dict[str, Any]:
    return call_to_json(call, include_raw=True)


class Rest:
    name = "rest"

    def __init__(self, api: RunningApi) -> None:
        self._url = api.endpoints.rest_url

    def _client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    @staticmethod
    def _refusal(response: httpx.Response) -> Refusal:
        error = response.json()["error"]
        return Refusal(ErrorCode(error["code"]), error.get("field"), error["message"])

    async def add_call(self, token: str, call: Call) -> str | Refusal:
        async with self._client(token) as client:
            response = await client.post("/api/v1/calls", json=call_json(call))
        if response.status_code >= 400:
            return self._refusal(response)
        return str(response.json()["outcome"])

    async def add_json(self, token: str, body: Any, path: str = "/api/v1/calls") -> httpx.Response:
        async with self._client(token) as client:
            return await client.post(path, json=body)

    async def add_calls(self, token: str, calls: list[Call]) -> dict[str, Any]:
        response = await self.add_json(
            token, {"calls": [call_json(c) for c in calls]}, "/api/v1/calls:batch"
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def check(self, token: str, uuids: list[uuid.UUID]) -> list[dict[str, Any]]:
        async with self._client(token) as client:
            response = await client.post(
                "/api/v1/calls:check", json={"uuids": [str(u) for u in uuids]}
            )
        assert response.status_code == 200, response.text
        return [
            {k: state[k] for k in ("exists", "recording_status", "recording_sha256")}
            for state in response.json()["calls"]
        ]

    async def upload(self, token: str, call_uuid: uuid.UUID, data: bytes) -> str | Refusal:
        async with self._client(token) as client:
            response = await client.put(
                f"/api/v1/calls/{call_uuid}/recording",
                content=data,
                headers={
                    "Content-Type": "audio/wav",
                    "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
                },
            )
        if response.status_code >= 400:
            return self._refusal(response)
        return "duplicate" if response.json()["duplicate"] else "created"

    async def set_privacy(
        self, token: str, call_uuid: uuid.UUID, *, private: bool, reason: str
    ) -> dict[str, Any] | Refusal:
        async with self._client(token) as client:
            response = await client.post(
                f"/api/v1/calls/{call_uuid}:privacy", json={"private": private, "reason": reason}
            )
        if response.status_code >= 400:
            return self._refusal(response)
        body: dict[str, Any] = response.json()
        return body

    async def download(self, token: str, call_uuid: uuid.UUID) -> bytes | Refusal:
        async with self._client(token) as client:
            response = await client.get(f"/api/v1/calls/{call_uuid}/recording")
        if response.status_code >= 400:
            return self._refusal(response)
        return response.content


class Grpc:
    name = "grpc"

    def __init__(self, api: RunningApi) -> None:
        self._address = api.endpoints.grpc_address

    def _channel(self, token: str) -> Any:
        return open_channel(self._address, token=token, default_timeout_s=30)

    @staticmethod
    def _refusal(error: RpcError) -> Refusal:
        return Refusal(error.code, error.field, str(error))

    async def add_call(self, token: str, call: Call) -> str | Refusal:
        return await self.add_call_pb(token, call_to_pb(call, include_raw=True))

    async def add_call_pb(self, token: str, message: pb.Call) -> str | Refusal:
        async with self._channel(token) as channel:
            try:
                reply = await CallJournalClient(channel).add_call(message)
            except RpcError as exc:
                return self._refusal(exc)
        return _OUTCOMES[reply.outcome]

    async def add_calls_pb(self, token: str, calls: list[pb.Call]) -> dict[str, Any]:
        async with self._channel(token) as channel:
            reply = await CallJournalClient(channel).add_calls(calls)
        return {
            "inserted": reply.inserted,
            "updated": reply.updated,
            "unchanged": reply.unchanged,
            "rejected": reply.rejected,
            "rejections": [
                {"index": r.index, "uuid": r.uuid, "field": r.field or None, "code": r.code}
                for r in reply.rejections
            ],
        }

    async def add_calls(self, token: str, calls: list[Call]) -> dict[str, Any]:
        return await self.add_calls_pb(token, [call_to_pb(c, include_raw=True) for c in calls])

    async def check(self, token: str, uuids: list[uuid.UUID]) -> list[dict[str, Any]]:
        async with self._channel(token) as channel:
            reply = await CallJournalClient(channel).check_calls([str(u) for u in uuids])
        return [
            {
                "exists": state.exists,
                "recording_status": None
                if state.recording_status == pb.RECORDING_STATUS_NONE
                else _STATUS_NAMES[state.recording_status]
                .removeprefix("RECORDING_STATUS_")
                .lower(),
                "recording_sha256": state.recording_sha256 or None,
            }
            for state in reply.calls
        ]

    async def upload(self, token: str, call_uuid: uuid.UUID, data: bytes) -> str | Refusal:
        header = pb.UploadHeader(
            call_uuid=str(call_uuid),
            file_name="rec.wav",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        pieces = [data[i : i + 16384] for i in range(0, len(data), 16384)]
        async with self._channel(token) as channel:
            try:
                reply = await CallJournalClient(channel).upload_recording(header, pieces)
            except RpcError as exc:
                return self._refusal(exc)
        return "duplicate" if reply.duplicate else "created"

    async def set_privacy(
        self, token: str, call_uuid: uuid.UUID, *, private: bool, reason: str
    ) -> dict[str, Any] | Refusal:
        privacy = pb.CALL_PRIVACY_PRIVATE if private else pb.CALL_PRIVACY_PUBLIC
        async with self._channel(token) as channel:
            try:
                reply = await CallJournalClient(channel).set_call_privacy(
                    str(call_uuid), privacy, reason
                )
            except RpcError as exc:
                return self._refusal(exc)
        return {
            "uuid": reply.uuid,
            "private": reply.privacy == pb.CALL_PRIVACY_PRIVATE,
            "changed": reply.changed,
        }

    async def download(self, token: str, call_uuid: uuid.UUID) -> bytes | Refusal:
        data = bytearray()
        async with self._channel(token) as channel:
            try:
                async with CallJournalClient(channel).download_recording(str(call_uuid)) as parts:
                    async for part in parts:
                        data += part.chunk
            except RpcError as exc:
                return self._refusal(exc)
        return bytes(data)
