"""Schema migrations: numbered SQL files applied in order, once each.

`sql/NNNN_name.sql` files are applied by `cj migrate`, each in its own transaction,
and recorded in `schema_migrations` with a checksum. A session advisory lock makes
concurrent migrators safe (the second waits, then finds nothing to do). A migration
whose file changed after it was applied is an error, not a silent skip.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog

from cj.db.errors import DatabaseUnavailable, MigrationError

log = structlog.get_logger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key: any constant that other applications are unlikely to use.
LOCK_KEY = 0x43_4A_4D_49_47  # "CJMIG"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def default_sql_dir() -> Path:
    """`$CJ_SQL_DIR`, else the `sql/` directory of the source tree."""
    env = os.environ.get("CJ_SQL_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "sql"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or default_sql_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist (set CJ_SQL_DIR)")
    migrations = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number in {directory}")
    return migrations


def migrate(conninfo: str, directory: Path | None = None) -> list[Migration]:
    """Apply pending migrations; return those applied (empty when up to date)."""
    migrations = load_migrations(directory)
    try:
        conn = psycopg.connect(conninfo, autocommit=True, application_name="cj-migrate")
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
    applied_now = []
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, checksum FROM schema_migrations")
            }
            known = {m.version for m in migrations}
            unknown = sorted(set(done) - known)
            if unknown:
                raise MigrationError(
                    f"the database has migrations {unknown} that this version does not know; "
                    "it was migrated by a newer release"
                )
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was changed "
                            "after it was applied; add a new migration instead"
                        )
                    continue
                _apply(conn, migration)
                applied_now.append(migration)
            _maintain_partitions(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def _apply(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    label = f"{migration.version:04d}_{migration.name}"
    try:
        with conn.transaction():
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    except psycopg.Error as exc:
        raise MigrationError(f"migration {label} failed: {exc}") from exc
    log.info("migration_applied", migration=label)


def _maintain_partitions(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Make the months ahead's partitions of `calls` (sql/0006), each migrate."""
    exists = conn.execute("SELECT to_regproc('cj_calls_maintain') IS NOT NULL").fetchone()
    if exists and exists[0]:
        made = conn.execute("SELECT cj_calls_maintain()").fetchone()
        if made and made[0]:
            log.info("call_partitions_made", count=made[0])


def pending(conninfo: str, directory: Path | None = None) -> list[Migration]:
    """Migrations not yet applied (for readiness checks and `cj migrate --check`)."""
    migrations = load_migrations(directory)
    try:
        conn = psycopg.connect(conninfo, autocommit=True, application_name="cj-migrate")
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
    with conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return migrations
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [m for m in migrations if m.version not in done]
