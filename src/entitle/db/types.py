"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, String, Text, TypeDecorator, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

from entitle.storable_text import require_storable, storable_json


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; SQLite keeps no zone, so it is re-attached on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class CheckedString(TypeDecorator[str]):
    """VARCHAR(n) that refuses, on both databases, what PostgreSQL would: NUL, lone surrogates, excess length.

    The refusal is an `UnstorableText` (422) raised while binding, before anything reaches the database;
    see entitle.storable_text for why the check lives at the column.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.max_length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return require_storable(value, max_length=self.max_length)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        # A lookup longer than the column matches nothing rather than failing; NUL is still refused.
        return _COMPARED_STRING


_COMPARED_STRING = CheckedString()


class CheckedText(TypeDecorator[str]):
    """TEXT that refuses NUL and lone surrogates on both databases (PostgreSQL cannot store them)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else require_storable(value)


class JSONDocument(TypeDecorator[Any]):
    """JSONB on PostgreSQL (indexable, compact), plain JSON text on SQLite.

    JSONB refuses the escape \\u0000 and lone surrogates; these documents are kept copies, so such
    characters become U+FFFD on both databases instead of failing the write (entitle.storable_text).
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return storable_json(value)

UUID = Uuid(as_uuid=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def json_safe(value: Any) -> Any:
    """Datetimes and UUIDs inside JSON columns are stored as ISO strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
