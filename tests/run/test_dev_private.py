"""Issue 11, item 10: `cj dev` keeps its data to its own user.

Its private PostgreSQL demands the password kept (0600) in the var directory, over TCP
and over the unix socket (in the 0700 data directory); a cluster an older `cj dev`
created with `trust` is converted when it starts. Every directory it creates is 0700,
and under its umask every file written (recordings, archived WAVs) is 0600.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio

from cj.dev import DevLayout, private_database, restrict_umask
from cj.pgcluster import LocalCluster, find_pg_bin, free_port
from cj.storage.filesystem import FilesystemStorage
from cj_agent.files import move_into

PG_BIN = find_pg_bin()
needs_pg = pytest.mark.skipif(PG_BIN is None, reason="no PostgreSQL server binaries")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def var_parent() -> Iterator[Path]:
    """A directory PostgreSQL can pass through when we are root (it runs as postgres)."""
    base = Path(tempfile.mkdtemp(prefix="cj-dev-private-"))
    base.chmod(0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_umask() -> Iterator[None]:
    old = restrict_umask()
    try:
        yield
    finally:
        os.umask(old)


def _refused_without_password(url: str, layout: DevLayout) -> None:
    without = url.replace(url.split("//", 1)[1].split("@", 1)[0], "cj", 1)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(without, connect_timeout=5).close()
    socket_dir = str(layout.pg_data)
    if os.geteuid() != 0:  # as root the server runs as postgres; root could enter anyway
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(
                host=socket_dir,
                port=url.rsplit(":", 1)[1].split("/")[0],
                user="cj",
                dbname="postgres",
                connect_timeout=5,
            ).close()


@needs_pg
def test_the_private_database_needs_its_password(var_parent: Path) -> None:
    layout = DevLayout(var_parent / "var")
    layout.create()
    with private_database(layout, bin_dir=PG_BIN, fast=True) as url:
        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("cj",)
        _refused_without_password(url, layout)
    assert mode(layout.pg_password_file) == 0o600
    assert layout.pg_password_file.read_text().strip() in url
    assert mode(layout.pg_data) == 0o700


@needs_pg
def test_a_cluster_that_trusted_everyone_is_converted(var_parent: Path) -> None:
    layout = DevLayout(var_parent / "var")
    layout.create()
    old = LocalCluster(data_dir=layout.pg_data, port=free_port(), bin_dir=PG_BIN, fast=True)
    old.init()  # as cj dev did before: -A trust
    assert old.trusts_local_users
    with private_database(layout, bin_dir=PG_BIN, fast=True) as url:
        _refused_without_password(url, layout)
        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not LocalCluster(data_dir=layout.pg_data, port=0, bin_dir=PG_BIN).trusts_local_users


def test_the_var_directory_is_private(tmp_path: Path) -> None:
    layout = DevLayout(tmp_path / "var")
    layout.create()
    expected_root = 0o711 if os.geteuid() == 0 else 0o700
    assert mode(layout.root) == expected_root
    for path in (layout.spool, layout.archive, layout.temp_storage, layout.recordings_storage):
        while path != layout.root:
            assert mode(path) == 0o700, path
            path = path.parent


async def test_recordings_and_archived_wavs_are_private(
    tmp_path: Path, private_umask: None
) -> None:
    with trio.fail_after(10):
        storage = FilesystemStorage("recordings", tmp_path / "recordings")
        source = tmp_path / "in.wav"
        source.write_bytes(b"RIFF" + b"\0" * 100)
        await storage.put_file("2026/03/02/x.mp3", source)
    stored = [p for p in (tmp_path / "recordings").rglob("*") if p.is_file()]
    assert stored and all(mode(p) == 0o600 for p in stored)
    dirs = [p for p in (tmp_path / "recordings").rglob("*") if p.is_dir()]
    assert all(mode(p) == 0o700 for p in dirs)
    dropped = tmp_path / "spool" / "call.wav"
    dropped.parent.mkdir()
    dropped.write_bytes(b"RIFF")
    dropped.chmod(0o644)  # as a PBX (or a user's cp) leaves it
    archived = move_into(dropped, tmp_path / "archive" / "2026-03-02")
    assert mode(archived) == 0o600
