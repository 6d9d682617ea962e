"""The App Store provider object registered in `entitle.providers`: notifications in, purchases in, refreshes.

Notifications: verify, store in the inbox first (unique on notificationUUID, so Apple's retries find the
row they already made; ordered by signedDate, serialized per originalTransactionId), then process through
`HANDLERS`. The route answers 200 only once the row is stored; a failure after that is on the row and the
worker retries it, so Apple need not. The notification verified by the route is handed to processing in
memory; the worker, which only has the stored body, verifies it again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from entitle import untrusted_json
from entitle.core.catalog import Catalog
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.errors import ProviderUnavailable
from entitle.providers.appstore.api import AppStoreApi
from entitle.providers.appstore.errors import InvalidSignedData
from entitle.providers.appstore.handlers import HANDLERS
from entitle.providers.appstore.notifications import NotificationContext
from entitle.providers.appstore.verification import AppStoreVerifier, VerifiedNotification
from entitle.services.inbox import Inbox, StorageUnavailable  # noqa: F401  (re-exported for callers)
from entitle.settings import Settings

if TYPE_CHECKING:
    from entitle.context import AppContext


PROVIDER = "app_store"
# Verified notifications waiting for the processing step of the request that verified them.
_HANDOFF_SIZE = 256


@dataclass(frozen=True)
class NotificationReceipt:
    status: InboxStatus
    # False when Apple (or a back-fill) delivered a notification the inbox already holds.
    created: bool


class AppStoreNotConfigured(ProviderUnavailable):
    default_code = "appstore_not_configured"


class AppStoreProvider:
    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        catalog: Catalog,
        inbox: Inbox,
        verifier: AppStoreVerifier | None,
        api: AppStoreApi | None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.catalog = catalog
        self.inbox = inbox
        self._verifier = verifier
        self.api = api
        self._handoff: OrderedDict[str, VerifiedNotification] = OrderedDict()

    @classmethod
    def build(cls, context: AppContext, *, http: httpx.AsyncClient | None = None) -> AppStoreProvider:
        settings = context.settings
        verifier = AppStoreVerifier.from_settings(settings) if settings.apple_bundle_id else None
        return cls(
            settings=settings,
            database=context.database,
            catalog=context.catalog,
            inbox=context.inbox,
            verifier=verifier,
            api=AppStoreApi.from_settings(settings, http or context.http),
        )

    @property
    def verifier(self) -> AppStoreVerifier:
        if self._verifier is None:
            raise AppStoreNotConfigured(
                "App Store purchases are not configured on this server (ENTITLE_APPLE_BUNDLE_ID)."
            )
        return self._verifier

    # -- notifications ---------------------------------------------------------------------------
    async def receive_notification(self, body: bytes) -> NotificationReceipt:
        """Verify, store, process; returns the inbox status. Raises only for bad input or failed storage."""
        note = await self.verifier.verify_notification_async(signed_payload_of(body))
        if not note.notification_uuid:
            raise InvalidSignedData("The notification has no notificationUUID.")
        transaction = note.transaction
        # A storage failure raises StorageUnavailable (503), so Apple delivers it again later.
        received = await self.inbox.receive(
            provider=PROVIDER,
            event_id=note.notification_uuid,
            type=note.notification_type or "UNKNOWN",
            raw_body=body,
            ordering_key=str(transaction.payload.originalTransactionId) if transaction else None,
            occurred_at=note.signed_date,
        )
        if received.event.status == InboxStatus.PROCESSED:
            return NotificationReceipt(InboxStatus.PROCESSED, received.created)
        self._remember(note)
        try:
            return NotificationReceipt(await self.inbox.process(received.event), received.created)
        finally:
            self._handoff.pop(note.notification_uuid, None)

    def _remember(self, note: VerifiedNotification) -> None:
        self._handoff[note.notification_uuid] = note
        while len(self._handoff) > _HANDOFF_SIZE:
            self._handoff.popitem(last=False)

    async def process_event(self, db: AsyncSession, event: ProviderEvent) -> str | None:
        """The inbox's processor for `app_store` rows (fresh deliveries, worker retries, released parks)."""
        note = self._handoff.get(event.event_id)
        if note is None:
            note = await self.verifier.verify_notification_async(signed_payload_of(event.raw_body))
        return await process_notification(db, note, catalog=self.catalog, now=utcnow(), event=event)

    async def aclose(self) -> None:
        if self.api is not None:
            await self.api.aclose()


async def process_notification(
    db: AsyncSession,
    note: VerifiedNotification,
    *,
    catalog: Catalog,
    now: datetime,
    event: ProviderEvent | None = None,
) -> str:
    """Dispatch one verified notification through `HANDLERS`; an unknown type is acknowledged, not failed."""
    handler = HANDLERS.get(note.notification_type)
    if handler is None:
        return f"ignored: unknown notification type {note.notification_type or '(none)'}"
    return await handler(NotificationContext(db=db, note=note, catalog=catalog, now=now, event=event))


def signed_payload_of(body: bytes) -> str:
    """The `signedPayload` of an App Store Server Notifications V2 body."""
    try:
        document = untrusted_json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSignedData("The notification body is not JSON.", code="invalid_notification") from exc
    signed = document.get("signedPayload") if isinstance(document, dict) else None
    if not isinstance(signed, str) or not signed:
        raise InvalidSignedData("The notification body has no signedPayload.", code="invalid_notification")
    return signed
