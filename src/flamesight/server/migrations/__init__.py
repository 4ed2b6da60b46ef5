"""Alembic migrations of the server database; they ship inside the package."""
