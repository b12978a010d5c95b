"""A private PostgreSQL cluster from the machine's own binaries.

Used by `make run` in native mode (a cluster under `./var/pg` that survives restarts)
and by the test suite (a throwaway cluster in a temporary directory). PostgreSQL
refuses to run as root, so when we are root the server runs as the `postgres` user
(or `nobody`) and owns its data directory.

Authentication: with a `password`, every connection (TCP and the unix socket, which
lives in the 0700 data directory) must give it (scram-sha-256), so other users of the
machine cannot use the database; a cluster created earlier with `trust` is converted
when it starts (`secure`). Without one (throwaway test and benchmark clusters) local
connections are trusted.
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
from urllib.parse import quote

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
    """One PostgreSQL cluster in `data_dir`, listening on `host:port`; scram-sha-256 with
    `password` for `superuser`, else trust (see the module doc)."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    superuser: str = "cj"
    fast: bool = False
    extra_settings: Sequence[str] = ()
    bin_dir: Path | None = field(default=None)
    password: str | None = field(default=None, repr=False)

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
        auth = ["-A", "trust"]
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pwfile"
        if self.password is not None:
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(self.password + "\n")
            self._chown(pwfile)
            auth = ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                *auth,
                "-E",
                "UTF8",
                "--locale=C",
                *(["--no-sync"] if self.fast else []),
            )
        finally:
            pwfile.unlink(missing_ok=True)

    @property
    def trusts_local_users(self) -> bool:
        """Whether pg_hba.conf lets someone in without a password."""
        hba = self.data_dir / "pg_hba.conf"
        return any(
            line.split()[-1] == "trust"
            for line in hba.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )

    def secure(self) -> bool:
        """With a password: make a running cluster that trusts local users demand it
        (set the password, rewrite pg_hba.conf to scram-sha-256, reload). True if it did."""
        if self.password is None or not self.trusts_local_users:
            return False
        import psycopg
        from psycopg import sql

        url = f"postgresql://{quote(self.superuser)}@{self.host}:{self.port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(self.superuser), sql.Literal(self.password)
                )
            )
        hba = self.data_dir / "pg_hba.conf"
        rules = [
            "# Written by cj: every connection needs the password (scram-sha-256).",
            "local   all   all                  scram-sha-256",
            "host    all   all   127.0.0.1/32   scram-sha-256",
            "host    all   all   ::1/128        scram-sha-256",
            "",
        ]
        partial = hba.with_name("pg_hba.conf.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write("\n".join(rules))
        self._chown(partial)
        partial.replace(hba)
        self._run("pg_ctl", "-D", str(self.data_dir), "reload")
        return True

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
        user = quote(self.superuser, safe="")
        if self.password is not None:
            user += ":" + quote(self.password, safe="")
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

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
