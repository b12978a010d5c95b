"""Empty servers on the API's own stack: the floor a request's fixed cost is held to.

    .venv/bin/python -m bench._baseline REST_PORT GRPC_PORT

Serves `GET /empty` (a quart-trio route answering `{}`, on hypercorn, no access log) and
an empty purerpc unary method (`calljournal.v1.CallJournal/GetCall` answering an empty
CallRecord, no authentication), each on 127.0.0.1, until killed. Benchmarks start it in
its own process, as cj-api runs in its own (`start_baseline`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: the repo root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import httpx
import purerpc
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio

from cj.pgcluster import free_port
from cj.proto import calljournal_grpc
from cj.proto import calljournal_pb2 as pb

EMPTY_RECORD = pb.CallRecord()


class EmptyJournal(calljournal_grpc.CallJournalServicer):
    async def GetCall(self, input_message: pb.GetCallRequest) -> pb.CallRecord:
        return EMPTY_RECORD


def empty_app() -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None)

    @app.route("/empty")
    async def empty() -> Response:
        return Response(b"{}", 200, content_type="application/json")

    return app


async def serve_empty(rest_port: int, grpc_port: int) -> None:
    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{rest_port}"]
    config.accesslog = None
    config.include_server_header = False
    server = purerpc.Server(grpc_port)
    server.add_service(EmptyJournal().service)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, empty_app(), config)  # type: ignore[arg-type]
        nursery.start_soon(server.serve_async)


def start_baseline() -> tuple[subprocess.Popen[bytes], int, int]:
    """Start the empty servers in their own process; (process, REST port, gRPC port)."""
    rest_port, grpc_port = free_port(), free_port()
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._baseline", str(rest_port), str(grpc_port)], cwd=root
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # an external process: poll its readiness
        try:
            if httpx.get(f"http://127.0.0.1:{rest_port}/empty", timeout=1).status_code == 200:
                return process, rest_port, grpc_port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the empty baseline servers did not start within 30 s")


if __name__ == "__main__":
    trio.run(serve_empty, int(sys.argv[1]), int(sys.argv[2]))
