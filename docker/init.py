"""One-shot set-up for docker compose's `migrate` service: `python init.py`.

1. Applies the database migrations (`cj migrate`; safe to run concurrently and again).
2. Creates the S3 bucket of every configured S3 storage that does not exist yet
   (SeaweedFS starts empty; an existing bucket is left as it is).

Settings are read like the daemons read them (`CJ_*`, `CJ_CONFIG`). Exit status 0 when
everything is in place, 1 with one line saying what failed otherwise (compose then
keeps the daemons that depend on it from starting).
"""

from __future__ import annotations

import sys

import trio

from cj.config import ConfigError, S3StorageConfig, StorageConfig, ToolSettings, load_settings
from cj.db.errors import DatabaseError
from cj.db.migrate import migrate
from cj.logs import configure_logging
from cj.storage import S3Storage, StorageError


async def ensure_buckets(config: StorageConfig) -> list[str]:
    """Create the missing buckets of the S3 storages in `config`; return their names."""
    buckets = []
    for name, backend in config.backends.items():
        if not isinstance(backend, S3StorageConfig):
            continue
        storage = await trio.to_thread.run_sync(S3Storage, name, backend)
        try:
            await storage.ensure_bucket()
        finally:
            await storage.aclose()
        buckets.append(backend.bucket)
    return buckets


def main() -> int:
    try:
        settings = load_settings(ToolSettings)
        configure_logging(settings.logging)
        applied = migrate(settings.database.url.get_secret_value())
        print(f"migrations applied: {len(applied)}", flush=True)
        buckets = trio.run(ensure_buckets, settings.storage)
        print(f"S3 buckets in place: {', '.join(buckets) or 'none configured'}", flush=True)
    except (ConfigError, DatabaseError, StorageError) as exc:
        print(f"init failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
