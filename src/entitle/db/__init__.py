"""Database access: the engine and session factory, column types, and migrations."""

from entitle.db.base import Base
from entitle.db.engine import Database, normalize_database_url

__all__ = ["Base", "Database", "normalize_database_url"]
