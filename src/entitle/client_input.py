"""Dates, times and numbers from outside (a query, a form, a body, a cursor, the command line), bounded
where they are parsed.

Python's dates stop at years 1 and 9999, so the day after a chosen last day, a range's default start or
a time zone's offset overflow at the edges, and a database may refuse what Python accepts. Nothing
entitle records happened before 2000 or is planned past 2200, so a date outside that window is refused
with a 422 naming the field, and every date inside it leaves room for any arithmetic and offset.
Numbers are ASCII digits only: `str.isdigit` also accepts `²` and other digits `int()` refuses.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from entitle.errors import InvalidRequest

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# The window as people read it, both ends included.
WINDOW_TEXT = f"{EARLIEST.date().isoformat()} and {(LATEST - timedelta(days=1)).date().isoformat()}"

Moment = TypeVar("Moment", date, datetime)


def in_window(moment: date | datetime) -> bool:
    """True when the day or time falls between EARLIEST and LATEST (a naive time is taken as UTC)."""
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        # Compared with its own offset applied in Python's comparison, so no conversion can overflow.
        return EARLIEST <= aware < LATEST
    return EARLIEST.date() <= moment < LATEST.date()


def check_window(moment: Moment, field: str, *, code: str | None = None) -> Moment:
    """The day or time, or a 422 naming the field (`invalid_request`, or the caller's code for dates)."""
    if not in_window(moment):
        raise InvalidRequest(
            f"`{field}` must fall between {WINDOW_TEXT}.", code=code, details={"field": field}
        )
    return moment


def ascii_int(text: str) -> int | None:
    """The number written in ASCII digits, or None (`²`, `٣`, signs, spaces and empty text included)."""
    return int(text) if text.isascii() and text.isdigit() else None
