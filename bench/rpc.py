"""gRPC layer throughput: cj.rpc's server with our client and with grpcio, on loopback.

Run: .venv/bin/python bench/rpc.py [--calls 2000] [--mebibytes 64]
Measures, against a trivial servicer (no database), with bearer-token auth on:
- unary AddCall: one call at a time (latency p50/p99) and 32 concurrent callers on
  one connection (calls/s);
- the same unary call from a grpcio client (blocking, in a worker thread);
- UploadRecording (client stream) and DownloadRecording (server stream) of
  `--mebibytes` MiB in 64 KiB chunks (MiB/s, SHA-256 included on the receiving side).
Client and server share one process and one core (Trio), so these are lower bounds.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: the repo root first, not bench/ (whose queue.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # would shadow the stdlib's)

import grpc
import structlog
import trio
from pydantic import SecretStr

from cj.auth import Authenticator
from cj.config import AuthConfig, Role, TokenConfig
from cj.proto import calljournal_grpc
from cj.proto import calljournal_pb2 as pb
from cj.rpc import CallJournalClient, GrpcServer, open_channel, requires

TOKEN = "bench-token-0123456789abcdef"
CHUNK = 64 * 1024


class BenchServicer(calljournal_grpc.CallJournalServicer):
    def __init__(self, download_bytes: int) -> None:
        self.data = bytes(range(256)) * (download_bytes // 256)

    @requires(Role.AGENT)
    async def AddCall(self, input_message: pb.AddCallRequest) -> pb.AddCallResponse:
        return pb.AddCallResponse(outcome=pb.UPSERT_OUTCOME_INSERTED)

    @requires(Role.AGENT)
    async def UploadRecording(
        self, input_messages: AsyncIterator[pb.UploadRecordingRequest]
    ) -> pb.UploadRecordingResponse:
        digest = hashlib.sha256()
        size = 0
        async for message in input_messages:
            if message.WhichOneof("part") == "chunk":
                digest.update(message.chunk)
                size += len(message.chunk)
        return pb.UploadRecordingResponse(size=size, sha256=digest.hexdigest())

    @requires(Role.READER)
    async def DownloadRecording(
        self, input_message: pb.DownloadRecordingRequest
    ) -> AsyncIterator[pb.DownloadRecordingResponse]:
        yield pb.DownloadRecordingResponse(header=pb.DownloadHeader(size=len(self.data)))
        for start in range(0, len(self.data), CHUNK):
            yield pb.DownloadRecordingResponse(chunk=self.data[start : start + CHUNK])


def call_with_sample() -> pb.Call:
    call = pb.Call(
        uuid="0b4f6c8e-2f59-4f36-9d6b-6d2f0c1e9a10",
        source="pbx-1",
        caller_number="+7 (900) 280-04-21",
        destination_number="1004",
        direction=pb.DIRECTION_INBOUND,
        duration_s=65,
        billsec=60,
        hangup_cause="NORMAL_CLEARING",
        raw_json=json.dumps({"variables": {f"v{i}": "x" * 20 for i in range(40)}}),
    )
    call.started_at.GetCurrentTime()
    return call


async def bench_unary(address: str, calls: int) -> dict[str, float]:
    request = call_with_sample()
    latencies = []
    async with open_channel(address, token=TOKEN, default_timeout_s=30) as channel:
        journal = CallJournalClient(channel)
        for _ in range(50):  # warm up
            await journal.add_call(request)
        start = time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter()
            await journal.add_call(request)
            latencies.append(time.perf_counter() - t0)
        sequential = calls / (time.perf_counter() - start)

        per_task = calls // 32

        async def caller() -> None:
            for _ in range(per_task):
                await journal.add_call(request)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(caller)
        concurrent = per_task * 32 / (time.perf_counter() - start)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "unary_sequential_calls_s": sequential,
        "unary_p50_ms": quantiles[49] * 1000,
        "unary_p99_ms": quantiles[98] * 1000,
        "unary_32_concurrent_calls_s": concurrent,
    }


def grpcio_unary(port: int, calls: int) -> float:
    request = pb.AddCallRequest(call=call_with_sample())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        add_call = channel.unary_unary(
            "/calljournal.v1.CallJournal/AddCall",
            request_serializer=pb.AddCallRequest.SerializeToString,
            response_deserializer=pb.AddCallResponse.FromString,
        )
        metadata = [("authorization", f"Bearer {TOKEN}")]
        for _ in range(50):
            add_call(request, metadata=metadata, timeout=30)
        start = time.perf_counter()
        for _ in range(calls):
            add_call(request, metadata=metadata, timeout=30)
        return calls / (time.perf_counter() - start)


async def bench_streams(address: str, mebibytes: int) -> dict[str, float]:
    data = bytes(range(256)) * (mebibytes * 1024 * 1024 // 256)
    header = pb.UploadHeader(
        call_uuid="u", file_name="u.wav", size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    async with open_channel(address, token=TOKEN, default_timeout_s=120) as channel:
        journal = CallJournalClient(channel)
        start = time.perf_counter()
        reply = await journal.upload_recording(header, chunks)
        upload = mebibytes / (time.perf_counter() - start)
        assert reply.sha256 == header.sha256
        received = 0
        digest = hashlib.sha256()
        start = time.perf_counter()
        async with journal.download_recording("u") as parts:
            async for part in parts:
                digest.update(part.chunk)
                received += len(part.chunk)
        download = received / 1024 / 1024 / (time.perf_counter() - start)
    return {"upload_mib_s": upload, "download_mib_s": download}


async def main(calls: int, mebibytes: int) -> dict[str, Any]:
    authenticator = Authenticator(
        AuthConfig(
            tokens=(TokenConfig(name="bench", token=SecretStr(TOKEN), roles=frozenset(Role)),)
        )
    )
    servicer = BenchServicer(mebibytes * 1024 * 1024)
    server = GrpcServer([servicer.service], authenticator=authenticator)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(server.serve, "127.0.0.1", 0))
        address = f"127.0.0.1:{port}"
        figures: dict[str, Any] = await bench_unary(address, calls)
        figures["grpcio_unary_calls_s"] = await trio.to_thread.run_sync(grpcio_unary, port, calls)
        figures.update(await bench_streams(address, mebibytes))
        nursery.cancel_scope.cancel()
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--mebibytes", type=int, default=64)
    args = parser.parse_args()
    # The server's per-call log lines are not the point.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = trio.run(main, args.calls, args.mebibytes)
    print(f"unary, one at a time:     {figures['unary_sequential_calls_s']:8.0f} calls/s")
    p50, p99 = figures["unary_p50_ms"], figures["unary_p99_ms"]
    print(f"  latency p50 / p99:      {p50:.2f} / {p99:.2f} ms")
    print(f"unary, 32 concurrent:     {figures['unary_32_concurrent_calls_s']:8.0f} calls/s")
    print(f"unary from grpcio:        {figures['grpcio_unary_calls_s']:8.0f} calls/s")
    print(f"upload (client stream):   {figures['upload_mib_s']:8.1f} MiB/s")
    print(f"download (server stream): {figures['download_mib_s']:8.1f} MiB/s")
    print(json.dumps({"bench": "rpc", **{k: round(v, 2) for k, v in figures.items()}}))
