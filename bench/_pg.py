"""A private PostgreSQL database for a benchmark run (or the one given by URL)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cj.db.migrate import migrate
from cj.pgcluster import LocalCluster, free_port


@contextmanager
def benchmark_database(url: str | None, *, name: str = "bench") -> Iterator[str]:
    """Yield a migrated database URL; without `url`, on a throwaway cluster (durable
    settings, 1 GiB shared buffers) started from the machine's PostgreSQL binaries."""
    if url is not None:
        migrate(url)
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="cj-bench-pg-"))
    base.chmod(0o755)
    cluster = LocalCluster(
        data_dir=base / "data",
        port=free_port(),
        extra_settings=("shared_buffers=1GB", "max_wal_size=4GB"),
    )
    try:
        print(f"starting a private PostgreSQL in {base} …")
        cluster.init()
        cluster.start()
        cluster.create_database(name)
        migrate(cluster.url(name))
        yield cluster.url(name)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
