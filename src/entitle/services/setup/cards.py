"""One card per integration on /admin/setup: its state, a sentence a person reads, and what to paste.

Each integration offers `async def card(db, context) -> Card`. From the settings alone a card is
`not_set` or `set` (services/setup/settings_cards.py); a check that proves the integration works (an API
call that succeeds, a test event that arrives) upgrades it to `verified` or `failing`, with the vendor's
own reason in the sentence. A card never carries a secret's value: only the names of what it asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from entitle.context import AppContext

CardState = Literal["not_set", "set", "verified", "failing"]


@dataclass
class Card:
    key: str
    title: str
    # not_set: nothing pasted; set: pasted, not proven; verified: proven by a call that worked;
    # failing: the vendor refused (the sentence is its own reason).
    state: CardState
    sentence: str
    # The setting names (Settings fields, in RUNTIME_SETTINGS) the card lets an operator paste.
    fields: list[str] = field(default_factory=list)
    checked_at: datetime | None = None


def has_value(context: AppContext, name: str) -> bool:
    value = getattr(context.settings, name)
    return bool(value) if isinstance(value, list | str) else value is not None


def settings_card(
    context: AppContext,
    *,
    key: str,
    title: str,
    fields: list[str],
    required: list[str],
    set_sentence: str,
    not_set_sentence: str,
) -> Card:
    """A card whose state the settings alone decide: `set` once every required name has a value."""
    ready = all(has_value(context, name) for name in required)
    return Card(
        key=key,
        title=title,
        state="set" if ready else "not_set",
        sentence=set_sentence if ready else not_set_sentence,
        fields=fields,
    )
