"""Set-up kept in the database: settings saved from /admin/setup, and the first run's one-time link.

A saved setting overlays the environment (which always wins, see services/setup/runtime_settings.py);
secrets are stored encrypted under the encryption key, so a database dump alone reveals none of them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import CheckedString, CheckedText, UTCDateTime, utcnow


class SavedSetting(Base):
    __tablename__ = "runtime_settings"

    # A Settings field name (e.g. "stripe_secret_key"), one of runtime_settings.RUNTIME_SETTINGS.
    name: Mapped[str] = mapped_column(CheckedString(64), primary_key=True)
    # The value as typed; a secret's is Fernet ciphertext.
    value: Mapped[str] = mapped_column(CheckedText)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who saved it: an operator's email or account id, or `cli:<os user>`.
    updated_by: Mapped[str | None] = mapped_column(CheckedString(200))


class SetupLink(Base):
    """The first run's one-time link to make the first operator; kept hashed, spent once."""

    __tablename__ = "setup_links"

    token_hash: Mapped[str] = mapped_column(CheckedString(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
