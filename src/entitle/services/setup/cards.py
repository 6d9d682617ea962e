"""What `/admin/setup` shows of one integration: its state, in one sentence, and what to paste.

The runtime-settings helper (branch setup-store) owns this module; this copy has the same shape so the
integration checks can be built and tested before it lands.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

CardState = Literal["not_set", "set", "verified", "failing"]


@dataclass
class Card:
    key: str
    title: str
    state: CardState
    # The human line; when failing, the vendor's own reason.
    sentence: str
    # The Settings field names the card asks for.
    fields: list[str] = field(default_factory=list)
    checked_at: dt.datetime | None = None
