"""Text from outside that the databases can store: no NUL, no lone surrogate, no more than a column holds.

PostgreSQL refuses NUL in `text`, `varchar` and JSONB, cannot encode a lone UTF-16 surrogate, and
refuses a string longer than a VARCHAR(n); SQLite stores all three. Left alone, the same request is
a 201 on one database and a 500 on the other. The rule lives here, once, and is applied at two depths:

- **At the column** (`entitle.db.types.CheckedString` / `CheckedText`, the type of every string
  column): every value bound to the database passes `require_storable`, on both databases, whatever
  path it took (ORM, Core statement, lookup). This is the guarantee: nothing reaches PostgreSQL with a
  NUL. It knows no field name, so its 422 says "a value"; the web layer turns it into 422
  `invalid_request` (it arrives wrapped in SQLAlchemy's StatementError).
- **Where text enters** (`StorableTextModel` under every request body and import line, the query and
  path parameters of every route, the claims of verified identity tokens): the same rule, earlier,
  so the 422 names the field.

JSON documents (a vendor's raw object, event data) are different: they are copies kept for reference,
and refusing one would drop a paying customer's subscription over a stray NUL in Stripe metadata. So
`storable_json` replaces NUL and lone surrogates with U+FFFD in them, on both databases; the provider
event inbox keeps the exact bytes received (a binary column), so nothing is lost.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationInfo, field_validator

from entitle.errors import InvalidRequest

# NUL, and UTF-16 surrogates (only ever alone in a Python str: a JSON "\ud800" or a broken decoder).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


class UnstorableText(InvalidRequest):
    """Text the database cannot store as given (422 `invalid_request`)."""


def unstorable_reason(value: str, *, max_length: int | None = None) -> str | None:
    """Why `value` cannot be stored ("contains a NUL character", ...), or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is not None:
        return "contains a NUL character" if found.group() == "\x00" else "contains an unpaired surrogate"
    if max_length is not None and len(value) > max_length:
        return f"is longer than {max_length} characters"
    return None


def require_storable(value: str, *, field: str | None = None, max_length: int | None = None) -> str:
    """`value` itself, or UnstorableText naming `field` (a sentence fragment such as "`email`")."""
    reason = unstorable_reason(value, max_length=max_length)
    if reason is not None:
        where = field or "A value"
        raise UnstorableText(f"{where[0].upper()}{where[1:]} {reason}, which cannot be stored.")
    return value


def storable_json(document: Any) -> Any:
    """`document` with NUL and lone surrogates in its strings (keys too) replaced by U+FFFD."""
    if isinstance(document, str):
        return _UNSTORABLE.sub(REPLACEMENT, document)
    if isinstance(document, dict):
        return {storable_json(key): storable_json(value) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [storable_json(value) for value in document]
    return document


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (*_strings_in(key), *_strings_in(item))]
    if isinstance(value, list | tuple | set | frozenset):
        return [text for item in value for text in _strings_in(item)]
    return []


class StorableTextModel(BaseModel):
    """A model whose every string field (in lists and dicts too) is refused when it cannot be stored."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        for text in _strings_in(value):
            reason = unstorable_reason(text)
            if reason is not None:
                raise ValueError(f"{reason}, which cannot be stored")
        return value
