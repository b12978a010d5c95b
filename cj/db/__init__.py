"""PostgreSQL access: the Trio-friendly pool, migrations and the repositories."""

from cj.db.errors import DatabaseError, DatabaseUnavailable, MigrationError
from cj.db.pool import Connection, Database, open_database

__all__ = [
    "Connection",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "MigrationError",
    "open_database",
]
