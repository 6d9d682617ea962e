"""The alerts card: where failures go (every operator by mail, the chat webhook) and what the team channel
hears, proven by a test message to each URL.

The last test's outcome is kept in `alerts_sent` (causes `setup_check:alert_webhook` and
`setup_check:team_channel`: when, and the HTTP status the URL answered, 0 for no answer), so every process
shows the same state; a test older than the URL's last save proves nothing and is ignored. A team channel
that refuses real moments (services/delivery/team_channel.py) makes the card `failing` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

import httpx
from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.events import AlertSent
from entitle.core.models.setup import SavedSetting
from entitle.db.types import utcnow
from entitle.services.delivery.alerts import INSERT_IGNORE
from entitle.services.delivery.team_channel import LEASE_CAUSE
from entitle.services.identity.operators import list_operators
from entitle.services.setup.cards import Card, CardState

if TYPE_CHECKING:
    from entitle.context import AppContext

FIELDS = ["alert_webhook_url", "team_channel_url", "team_channel_events"]
TEST_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_ALERTS = cast(Table, AlertSent.__table__)
# What each URL is called in a sentence, and the cause its last test is kept under.
TARGETS = {
    "alert_webhook_url": ("the chat webhook", "setup_check:alert_webhook"),
    "team_channel_url": ("the team channel", "setup_check:team_channel"),
}
MOMENT_WORDS = {
    "new_subscriber": "new subscribers",
    "cancellation": "cancellations",
    "refund": "refunds",
    "billing_problem": "billing problems",
}


@dataclass(frozen=True)
class Check:
    name: str
    checked_at: datetime
    # The HTTP status the URL answered; 0 when it did not answer.
    status: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def sentence(self) -> str:
        target = TARGETS[self.name][0]
        if self.ok:
            return f"{target.capitalize()} accepted the test message."
        if self.status == 0:
            return f"{target.capitalize()} did not answer the test message."
        return f"{target.capitalize()} refused the test message: it answered {self.status}."


async def card(db: AsyncSession, context: AppContext) -> Card:
    settings = context.settings
    mailed = sum(1 for operator, _ in await list_operators(db) if operator.email)
    configured = [name for name in TARGETS if getattr(settings, name) is not None]
    parts = [f"Alerts go to {mailed} operator{'s' if mailed != 1 else ''} by mail"]
    if settings.alert_webhook_url is not None:
        parts[0] += " and to the chat webhook"
    if settings.team_channel_url is not None:
        moments = [MOMENT_WORDS[moment] for moment in settings.team_channel_events]
        parts.append("the team channel hears of " + (", ".join(moments) or "nothing"))
    summary = "; ".join(parts) + "."
    if not configured:
        return Card(
            key="alerts",
            title="Alerts",
            state="not_set",
            sentence=summary
            + " Paste a Slack-compatible incoming webhook URL to have them in a channel too.",
            fields=FIELDS,
        )
    checks = await _current_checks(db, configured)
    refusing = await db.scalar(select(_ALERTS.c.suppressed).where(_ALERTS.c.cause == LEASE_CAUSE))
    state: CardState
    failed = [check for check in checks.values() if not check.ok]
    checked_at = max((check.checked_at for check in checks.values()), default=None)
    if failed:
        state, detail = "failing", " ".join(check.sentence() for check in failed)
    elif settings.team_channel_url is not None and refusing:
        state, detail = (
            "failing",
            f"The team channel refused the last {refusing} message(s); they are retried.",
        )
    elif len(checks) == len(configured):
        state, detail = "verified", " ".join(check.sentence() for check in checks.values())
    else:
        state, detail = "set", "Send a test message to prove it."
    return Card(
        key="alerts",
        title="Alerts",
        state=state,
        sentence=f"{summary} {detail}",
        fields=FIELDS,
        checked_at=checked_at,
    )


async def send_test(context: AppContext) -> list[tuple[Check, str]]:
    """Post a test line to each configured URL and keep the outcome; returns each check with its answer's
    words (the vendor's own reason, e.g. Slack's `no_service`), for the page to show once."""
    settings = context.settings
    results: list[tuple[Check, str]] = []
    for name, (target, cause) in TARGETS.items():
        url = getattr(settings, name)
        if url is None:
            continue
        text = f"{settings.app_name}: a test message from /admin/setup; {target} works."
        status, words = await _post(context.http, url.get_secret_value(), text)
        check = Check(name=name, checked_at=utcnow(), status=status)
        await _keep(context, cause, check)
        results.append((check, words))
    return results


async def _post(http: httpx.AsyncClient, url: str, text: str) -> tuple[int, str]:
    try:
        response = await http.post(url, json={"text": text}, timeout=TEST_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as exc:
        return 0, exc.__class__.__name__
    # Slack says why in a short plain-text body (`invalid_token`, `no_service`); a long page says nothing.
    words = response.text.strip()
    return response.status_code, words if 0 < len(words) <= 200 and "<" not in words else ""


async def _keep(context: AppContext, cause: str, check: Check) -> None:
    async with context.database.transaction() as db:
        connection = await db.connection()
        values = {"cause": cause, "last_sent_at": check.checked_at, "suppressed": check.status}
        await connection.execute(INSERT_IGNORE[connection.dialect.name], values)
        await connection.execute(
            update(_ALERTS)
            .where(_ALERTS.c.cause == cause)
            .values(last_sent_at=check.checked_at, suppressed=check.status)
        )


async def _current_checks(db: AsyncSession, names: list[str]) -> dict[str, Check]:
    """The last test of each URL, unless the URL was saved again since."""
    found: dict[str, Check] = {}
    for name in names:
        cause = TARGETS[name][1]
        row = (
            await db.execute(
                select(_ALERTS.c.last_sent_at, _ALERTS.c.suppressed).where(_ALERTS.c.cause == cause)
            )
        ).first()
        if row is None:
            continue
        saved_at = await db.scalar(select(SavedSetting.updated_at).where(SavedSetting.name == name))
        if saved_at is not None and saved_at > row[0]:
            continue
        found[name] = Check(name=name, checked_at=row[0], status=int(row[1]))
    return found
