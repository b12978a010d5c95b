"""A private PostgreSQL cluster from the machine's own binaries.

Used by `make run` in native mode (a cluster under `./var/pg` that survives restarts)
and by the test suite (a throwaway cluster in a temporary directory). PostgreSQL
refuses to run as root, so when we are root the server runs as the `postgres` user
(or `nobody`) and owns its data directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Settings that trade durability for speed: for throwaway test clusters only.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class ClusterError(RuntimeError):
    """The private cluster could not be created, started or stopped."""


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, else the newest Debian install."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (0,)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ClusterError("running as root and found neither a 'postgres' nor a 'nobody' user")


@dataclass
class LocalCluster:
    """One PostgreSQL cluster in `data_dir`, listening on `host:port` (trust auth)."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    superuser: str = "cj"
    fast: bool = False
    extra_settings: Sequence[str] = ()
    bin_dir: Path | None = field(default=None)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.absolute()
        if self.bin_dir is None:
            self.bin_dir = find_pg_bin()
        if self.bin_dir is None:
            raise ClusterError(
                "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under "
                "/usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: "
                "`apt-get install postgresql`) or point CJ_DATABASE_URL at a server."
            )
        self._account = _server_account()

    # --- lifecycle -------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster unless it exists."""
        if self.initialized:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            *(["--no-sync"] if self.fast else []),
        )

    def start(self, timeout_s: float = 60.0) -> None:
        settings = [
            f"port={self.port}",
            f"listen_addresses={self.host}",
            f"unix_socket_directories={self.data_dir}",
            "max_connections=200",
            *(FAST_SETTINGS if self.fast else ()),
            *self.extra_settings,
        ]
        options = " ".join(f"-c {s}" for s in settings)
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout_s)),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` rolls back sessions; `immediate` is a crash)."""
        if not self.running:
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        result = subprocess.run(
            [str(self._bin("pg_ctl")), "-D", str(self.data_dir), "status"],
            capture_output=True,
            user=self._account.pw_uid if self._account else None,
            check=False,
        )
        return result.returncode == 0

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def base_backup(self, data_dir: Path, port: int) -> LocalCluster:
        """A streaming standby of this (running) cluster in `data_dir`, not yet started.

        `pg_basebackup -R` copies the cluster and writes `standby.signal` and
        `primary_conninfo`; the initdb default pg_hba trusts replication from loopback.
        """
        data_dir = data_dir.absolute()
        data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(data_dir)
        data_dir.chmod(0o700)
        self._run(
            "pg_basebackup",
            "-d",
            f"host={self.host} port={self.port} user={self.superuser}",
            "-D",
            str(data_dir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            *(["--no-sync"] if self.fast else []),
        )
        return LocalCluster(
            data_dir=data_dir,
            port=port,
            host=self.host,
            superuser=self.superuser,
            fast=self.fast,
            extra_settings=self.extra_settings,
            bin_dir=self.bin_dir,
        )

    # --- helpers -----------------------------------------------------------------------

    def _bin(self, name: str) -> Path:
        assert self.bin_dir is not None
        path = self.bin_dir / name
        if not path.exists():  # bin_dir may hold only symlinks to pg_ctl and initdb
            beside = (self.bin_dir / "pg_ctl").resolve().parent / name
            if beside.exists():
                return beside
        return path

    def _chown(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        if self._account is not None:
            self.log_file.touch()
            self._chown(self.log_file)
        result = subprocess.run(
            [str(self._bin(program)), *args],
            capture_output=True,
            text=True,
            user=self._account.pw_uid if self._account else None,
            group=self._account.pw_gid if self._account else None,
            extra_groups=[] if self._account else None,
            cwd=self.data_dir.parent,
            check=False,
        )
        if result.returncode != 0:
            tail = ""
            if self.log_file.exists():
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise ClusterError(
                f"{program} {' '.join(args[-1:])} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{tail}".strip()
            )
