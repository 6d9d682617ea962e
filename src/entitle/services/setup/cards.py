"""One card per integration on `/admin/setup`: its state, the sentence that says why, what to paste."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

CardState = Literal["not_set", "set", "verified", "failing"]


@dataclass
class Card:
    key: str
    title: str
    # not_set: nothing pasted; set: pasted, not proven; verified: proven by a call that worked;
    # failing: the vendor refused (the sentence is its own reason).
    state: CardState
    sentence: str
    # The setting names (Settings fields) the card lets an operator paste.
    fields: list[str] = field(default_factory=list)
    checked_at: datetime | None = None
