"""The `db` fixture: a `Database` on a fresh, migrated test database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cj.config import DatabaseConfig
from cj.db import Database, open_database


@pytest.fixture
async def db(database_config: DatabaseConfig) -> AsyncIterator[Database]:
    async with open_database(database_config) as database:
        yield database
