"""Migrations: fresh, re-run, concurrent, and refusing drift."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from cj.db.errors import MigrationError
from cj.db.migrate import default_sql_dir, load_migrations, migrate, pending


def _applied(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_fresh_database_gets_every_migration(empty_database_url: str) -> None:
    applied = migrate(empty_database_url)
    expected = [m.version for m in load_migrations()]
    assert [m.version for m in applied] == expected
    assert _applied(empty_database_url) == expected
    assert pending(empty_database_url) == []
    with psycopg.connect(empty_database_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
    assert {"calls", "recordings", "audit_log", "jobs", "schema_migrations"} <= tables


def test_rerun_is_a_no_op(empty_database_url: str) -> None:
    migrate(empty_database_url)
    assert migrate(empty_database_url) == []


def test_two_migrators_at_once_apply_each_migration_once(empty_database_url: str) -> None:
    results: list[object] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(len(migrate(empty_database_url)))
        except Exception as exc:  # pragma: no cover - reported by the assert below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [0, len(load_migrations())]  # type: ignore[type-var]
    assert _applied(empty_database_url) == [m.version for m in load_migrations()]


def test_changed_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    for source in default_sql_dir().glob("*.sql"):
        (tmp_path / source.name).write_text(source.read_text())
    migrate(empty_database_url, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate(empty_database_url, tmp_path)


def test_failed_migration_rolls_back_and_names_itself(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE t1 (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE t2 (x int); SELECT no_such_fn();")
    with pytest.raises(MigrationError, match="0002_bad failed"):
        migrate(empty_database_url, tmp_path)
    assert _applied(empty_database_url) == [1]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('t2')").fetchone() == (None,)


def test_database_from_a_newer_release_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0002_b.sql").write_text("SELECT 1;")
    migrate(empty_database_url, tmp_path)
    (tmp_path / "0002_b.sql").unlink()
    with pytest.raises(MigrationError, match="newer release"):
        migrate(empty_database_url, tmp_path)


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load_migrations(tmp_path)
