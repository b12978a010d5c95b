"""Database failures as our own types (translated once, in `cj.db.pool`)."""


class DatabaseError(Exception):
    """Base of database failures."""


class DatabaseUnavailable(DatabaseError):
    """PostgreSQL cannot be reached or the pool is exhausted; retrying later may help."""


class MigrationError(DatabaseError):
    """The migrations on disk and in the database disagree, or one failed."""
