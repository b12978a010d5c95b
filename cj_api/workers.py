"""Several cj-api worker processes on the same ports, under one supervisor.

`api.workers` > 1 (or "auto" on a machine with several CPUs) makes `cj-api` a
supervisor: it reserves the gRPC and REST ports (cj_api.sockets: port 0 becomes a real
port here), then starts that many `cj-api worker` processes, each a whole API (its own
event loop, database pools, download watcher) listening on the same ports with
SO_REUSEPORT, so the kernel spreads connections over them and one busy event loop no
longer holds every request.

- Each worker is told the supervisor's ports and one link secret (when
  `api.link_secret` is unset), so a signed link made by one worker opens on another.
- A socket pair joins supervisor and worker: the worker writes `ready` once it
  listens, and shuts down gracefully when the supervisor's end closes (the supervisor
  died, even by kill -9: no orphan keeps serving).
- SIGTERM / SIGINT to the supervisor go to every worker (the workers run in their own
  session, so a terminal's Ctrl-C reaches the supervisor alone): each drains within
  `api.grace_period_s`; a worker still running `KILL_AFTER_GRACE_S` after that is
  killed. A second signal is passed on too (the workers stop at once).
- A worker that dies while serving is started again (after a backoff that grows while
  it keeps dying young) and the death is logged. One that exits before it is ready
  ends the supervisor with status 1 when it happens at start (the workers' log says
  why: configuration, database, port) or `MAX_START_FAILURES` times in a row later:
  a clear error, not a crash loop.
- Metrics add up: the workers share a `PROMETHEUS_MULTIPROC_DIR` (cj_api.metrics), so
  a scrape of `/metrics`, whichever worker answers it, counts every worker, including
  those that exited since. `/healthz` answers which worker served it and how many are
  ready, from a status file the supervisor keeps.
- Per-token limits hold for the service, not per worker: their state is in a table
  the supervisor creates and every worker maps (cj_api.limits_table); the supervisor
  zeroes a dead worker's in-flight counts before starting it again.
- What must run once per service runs in worker 0 alone (the purge of abandoned
  partial uploads at start).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio
from prometheus_client import multiprocess

from cj.backoff import GrpcBackoff
from cj.config import ApiSettings, ConfigError
from cj_api.limits_table import LimitTable, table_capacity
from cj_api.metrics import MULTIPROC_ENV
from cj_api.sockets import PortInUseError, reserve_ports

log = structlog.get_logger(__name__)

MAX_START_FAILURES = 5  # in a row, after the first start: then the supervisor gives up
WORKER_START_TIMEOUT_S = 120.0  # from exec to `ready`
KILL_AFTER_GRACE_S = 5.0  # past api.grace_period_s, a worker that still runs is killed
FORCED_STOP_S = 5.0  # after a second signal
STABLE_S = 60.0  # a worker that served this long before dying restarts without delay
READY = b"ready\n"


class WorkersFailed(ConfigError):
    """Workers could not be started (or kept running): the operator's to look into."""


@dataclass(frozen=True)
class WorkerRole:
    """What a worker process knows of its place among the others."""

    slot: int
    status_file: Path
    limits_file: Path | None = None  # the per-token limits' shared table

    @property
    def runs_singletons(self) -> bool:
        """Whether this worker runs what must run once per service."""
        return self.slot == 0

    def health(self) -> dict[str, object]:
        """`/healthz` extras: this worker, and the supervisor's view of all of them."""
        answer: dict[str, object] = {"worker": {"slot": self.slot, "pid": os.getpid()}}
        try:
            answer["workers"] = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            pass  # between two writes of the supervisor, or it is gone
        return answer


# --- the worker side ------------------------------------------------------------------


async def serve_worker(
    settings: ApiSettings,
    role: WorkerRole,
    control: socket.socket,
    serve: Callable[..., Awaitable[None]],
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `serve` (cj_api.app.serve) as worker `role`; tell the supervisor once ready,
    and drain when it goes away."""
    stop = shutdown if shutdown is not None else trio.Event()
    supervisor = trio.socket.from_stdlib_socket(control)
    async with trio.open_nursery() as nursery:

        async def run(*, task_status: trio.TaskStatus[Any]) -> None:
            await serve(settings, shutdown=stop, worker=role, task_status=task_status)
            nursery.cancel_scope.cancel()

        endpoints = await nursery.start(run)
        await supervisor.send(READY)
        nursery.start_soon(_watch_supervisor, supervisor, stop)
        task_status.started(endpoints)


async def _watch_supervisor(supervisor: trio.socket.SocketType, stop: trio.Event) -> None:
    try:
        while await supervisor.recv(64):
            pass
    except OSError:
        pass
    if not stop.is_set():
        log.warning("api_supervisor_gone", action="draining")
        stop.set()


# --- the supervisor side --------------------------------------------------------------


@dataclass
class _Worker:
    slot: int
    process: trio.Process
    control: trio.socket.SocketType
    ready: bool = False


@dataclass
class _Status:
    expected: int
    restarts: int = 0
    workers: dict[int, _Worker] = field(default_factory=dict)

    def document(self) -> dict[str, object]:
        ready = sorted((w for w in self.workers.values() if w.ready), key=lambda w: w.slot)
        return {
            "supervisor_pid": os.getpid(),
            "expected": self.expected,
            "ready": len(ready),
            "pids": [w.process.pid for w in ready],
            "restarts": self.restarts,
        }


class Supervisor:
    """Starts, watches, restarts and stops the workers (see the module's docstring)."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        count: int,
        command: list[str],
        env: Mapping[str, str],
        run_dir: Path,
        limits: LimitTable | None = None,
    ) -> None:
        self._settings = settings
        self._limits = limits
        self._count = count
        self._command = command
        self._env = dict(env)
        self._run_dir = run_dir
        self._metrics_dir = run_dir / "metrics"
        self.status_file = run_dir / "workers.json"
        self._status = _Status(expected=count)
        self._stopping = False
        self._started = False  # every worker was ready once
        self._ready_once = 0
        self._all_ready = trio.Event()
        self._stop_requested = trio.Event()
        self._failures: list[str] = []

    async def run(self, shutdown: trio.Event, *, task_status: trio.TaskStatus[list[int]]) -> None:
        self._metrics_dir.mkdir()
        self._write_status()
        try:
            await self._run(shutdown, task_status)
        except BaseExceptionGroup as group:
            failed, rest = group.split(WorkersFailed)
            if failed is None or rest is not None:
                raise
            # Several workers failed to start at the same moment: one report, the first.
            first: BaseException = failed
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        if self._failures:
            raise WorkersFailed("; ".join(self._failures))

    async def _run(self, shutdown: trio.Event, task_status: trio.TaskStatus[list[int]]) -> None:
        async with trio.open_nursery() as nursery:
            for slot in range(self._count):  # all at once: each takes a second or two
                nursery.start_soon(self._keep_running, slot)
            await self._all_ready.wait()
            self._started = True
            pids = [w.process.pid for w in self._status.workers.values()]
            log.info("api_workers_started", workers=self._count, pids=pids)
            task_status.started(pids)
            await shutdown.wait()
            self._stopping = True
            self._stop_requested.set()
            log.info("api_workers_stopping", grace_period_s=self._settings.api.grace_period_s)
            for worker in list(self._status.workers.values()):
                _signal(worker.process, signal.SIGTERM)

    async def _keep_running(self, slot: int) -> None:
        backoff = GrpcBackoff(base_s=0.5, max_s=30.0)
        start_failures = 0
        reported = False
        while True:
            worker = await self._spawn(slot)
            began = trio.current_time()
            try:
                ready = await self._wait_ready(worker)
                if ready:
                    start_failures = 0
                    worker.ready = True
                    self._write_status()
                    log.info("api_worker_ready", slot=slot, pid=worker.process.pid)
                    if not reported:
                        reported = True
                        self._ready_once += 1
                        if self._ready_once == self._count:
                            self._all_ready.set()
                status = await worker.process.wait()
            finally:
                with trio.CancelScope(shield=True):
                    status = await self._stop(worker)
            if self._stopping:
                if status != 0 and ready:
                    self._failures.append(f"worker {slot} exited with {_describe(status)}")
                return
            if not ready:
                start_failures += 1
                if not self._started or start_failures >= MAX_START_FAILURES:
                    raise WorkersFailed(
                        f"cj-api worker {slot} exited with {_describe(status)} before it "
                        f"was ready ({start_failures} attempt(s); its log above says why)"
                    )
            lived = trio.current_time() - began
            if ready and lived >= STABLE_S:
                backoff.reset()
            delay = backoff.next_delay()
            self._status.restarts += 1
            log.error(
                "api_worker_died" if ready else "api_worker_start_failed",
                slot=slot,
                pid=worker.process.pid,
                status=_describe(status),
                lived_s=round(lived, 1),
                restart_in_s=round(delay, 2),
            )
            await self._sleep_unless_stopping(delay)
            if self._stopping:
                return

    async def _spawn(self, slot: int) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            process = await trio.lowlevel.open_process(
                [*self._command, "--slot", str(slot), "--control-fd", str(theirs.fileno())],
                env=self._env,
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # signals come from us, not the terminal
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = _Worker(slot, process, trio.socket.from_stdlib_socket(ours))
        self._status.workers[slot] = worker
        log.info("api_worker_starting", slot=slot, pid=process.pid)
        return worker

    async def _wait_ready(self, worker: _Worker) -> bool:
        """True once the worker said it listens; False if it exited (or hung) first."""
        with trio.move_on_after(WORKER_START_TIMEOUT_S):
            received = b""
            while len(received) < len(READY):
                chunk = await worker.control.recv(len(READY) - len(received))
                if not chunk:
                    return False
                received += chunk
            return received == READY
        log.error("api_worker_start_timeout", slot=worker.slot, pid=worker.process.pid)
        return False

    async def _stop(self, worker: _Worker) -> int:
        """Wait for the worker to exit (asking it to, unless it did); kill it past the
        grace period. Returns its exit status."""
        process = worker.process
        if process.returncode is None:
            _signal(process, signal.SIGTERM)
            deadline = self._settings.api.grace_period_s + KILL_AFTER_GRACE_S
            with trio.move_on_after(deadline):
                await process.wait()
            if process.returncode is None:
                log.error("api_worker_killed", slot=worker.slot, pid=process.pid, after_s=deadline)
                _signal(process, signal.SIGKILL)
        status = await process.wait()
        worker.control.close()
        if self._status.workers.get(worker.slot) is worker:
            del self._status.workers[worker.slot]
            self._write_status()
        multiprocess.mark_process_dead(process.pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
        if self._limits is not None:  # before a new one takes the slot
            self._limits.release_worker(worker.slot)
        return status

    async def force_stop(self) -> None:
        """A second signal: pass it on, then kill what is still there."""
        for worker in list(self._status.workers.values()):
            _signal(worker.process, signal.SIGTERM)
        with trio.move_on_after(FORCED_STOP_S):
            for worker in list(self._status.workers.values()):
                await worker.process.wait()
        for worker in list(self._status.workers.values()):
            _signal(worker.process, signal.SIGKILL)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._stop_requested.wait()

    def _write_status(self) -> None:
        partial = self.status_file.with_suffix(".tmp")
        partial.write_text(json.dumps(self._status.document()))
        partial.replace(self.status_file)


def _signal(process: trio.Process, signum: int) -> None:
    if process.returncode is None:
        try:
            process.send_signal(signum)
        except ProcessLookupError:
            pass


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


# --- the supervisor as a daemon -------------------------------------------------------


def worker_command(config_path: Path | None) -> list[str]:
    """The command line of a worker, without `--slot` and `--control-fd`."""
    command = [sys.executable, "-m", "cj_api", "worker"]
    return command + (["--config", str(config_path)] if config_path is not None else [])


async def supervise(
    settings: ApiSettings,
    *,
    config_path: Path | None = None,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve with `settings.api.worker_count` workers until `shutdown` is set."""
    from cj_api.app import ApiEndpoints, check_settings

    check_settings(settings)
    config = settings.api
    try:
        reserved, (grpc_port, rest_port) = reserve_ports(
            config.host, (config.grpc_port, config.rest_port)
        )
    except PortInUseError as exc:
        raise WorkersFailed(
            f"api.grpc_port or api.rest_port: {exc.strerror} (another program listens there)"
        ) from None
    run_dir = Path(tempfile.mkdtemp(prefix="cj-api-"))
    env = {
        **os.environ,
        MULTIPROC_ENV: str(run_dir / "metrics"),
        "CJ_API_GRPC_PORT": str(grpc_port),
        "CJ_API_REST_PORT": str(rest_port),
    }
    if config.link_secret is None:  # one per service, not one per worker
        env["CJ_API_LINK_SECRET"] = secrets.token_urlsafe(32)
    limits_file = run_dir / "limits"
    LimitTable.create(
        limits_file, workers=config.worker_count, capacity=table_capacity(len(settings.auth.tokens))
    )
    limits = LimitTable.open(limits_file, worker=None)
    command = [
        *worker_command(config_path),
        *("--status-file", str(run_dir / "workers.json")),
        *("--limits-file", str(limits_file)),
    ]
    supervisor = Supervisor(
        settings,
        count=config.worker_count,
        command=command,
        env=env,
        run_dir=run_dir,
        limits=limits,
    )
    stop = shutdown if shutdown is not None else trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            pids: list[int] = await nursery.start(supervisor.run, stop)
            tls = config.tls_cert_file is not None
            endpoints = ApiEndpoints(config.host, grpc_port, rest_port, tls)
            log.info(
                "api_started",
                grpc=endpoints.grpc_address,
                rest=endpoints.rest_url,
                workers=len(pids),
            )
            task_status.started(endpoints)
    except BaseException:
        with trio.CancelScope(shield=True):
            await supervisor.force_stop()
        raise
    finally:
        for sock in reserved:
            sock.close()
        limits.close()
        shutil.rmtree(run_dir, ignore_errors=True)
