"""The App Store provider: notifications in, purchases in, refreshes.

Notifications: `verify_webhook` verifies the signed payload (the generic ingestion path then stores it in
the inbox, unique on notificationUUID, so Apple's retries find the row they already made). Processing
takes every unprocessed notification of one originalTransactionId at once, in signedDate order, through
`HANDLERS`. The notification verified at the webhook is handed to processing in memory; a worker, which
only has the stored body, verifies it again. Notifications carry Apple's signed state, so processing
reads nothing from Apple and needs no read slot; the one call it makes, answering a CONSUMPTION_REQUEST
(`consumption`), is a write the API client paces on its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from entitle import untrusted_json
from entitle.core.catalog import Catalog
from entitle.core.models.events import ProviderEvent
from entitle.core.purchases import PurchaseSink
from entitle.core.subscriptions import SubscriptionSink
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.errors import ProviderUnavailable
from entitle.providers.appstore.api import AppStoreApi
from entitle.providers.appstore.errors import InvalidSignedData
from entitle.providers.appstore.handlers import HANDLERS
from entitle.providers.appstore.notifications import NotificationContext
from entitle.providers.appstore.offers import PromotionalOfferSigner
from entitle.providers.appstore.verification import AppStoreVerifier, VerifiedNotification
from entitle.providers.base import IncomingEvent, no_slot
from entitle.settings import RestorePolicy, Settings

PROVIDER = "app_store"
# Verified notifications waiting for the processing step in this process.
_HANDOFF_SIZE = 256


class AppStoreNotConfigured(ProviderUnavailable):
    default_code = "appstore_not_configured"


@dataclass(frozen=True)
class AppStoreConfig:
    """The slice of the settings the App Store provider needs beyond its verifier and API client."""

    restore_policy: RestorePolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> AppStoreConfig:
        return cls(restore_policy=settings.appstore_restore_policy)


class AppStoreProvider:
    name = PROVIDER

    def __init__(
        self,
        *,
        config: AppStoreConfig,
        database: Database,
        catalog: Catalog,
        sink: SubscriptionSink,
        verifier: AppStoreVerifier | None,
        api: AppStoreApi | None,
        purchases: PurchaseSink | None = None,
        offers: PromotionalOfferSigner | None = None,
    ) -> None:
        self.config = config
        self.database = database
        self.catalog = catalog
        self.sink = sink
        # Where one-time purchases go; None leaves them out (the app's post of one is then refused).
        self.purchases = purchases
        self._verifier = verifier
        self.api = api
        self._offers = offers
        self._handoff: OrderedDict[str, VerifiedNotification] = OrderedDict()

    @property
    def verifier(self) -> AppStoreVerifier:
        if self._verifier is None:
            raise AppStoreNotConfigured(
                "App Store purchases are not configured on this server (set ENTITLE_APPLE_BUNDLE_ID)."
            )
        return self._verifier

    @property
    def offers(self) -> PromotionalOfferSigner:
        """Signs promotional offers with the In-App Purchase key; refused when there is none."""
        if self._offers is None:
            raise AppStoreNotConfigured(
                "App Store promotional offers are not configured on this server (set ENTITLE_APPLE_KEY_ID, "
                "ENTITLE_APPLE_ISSUER_ID and ENTITLE_APPLE_PRIVATE_KEY_PATH to the In-App Purchase key)."
            )
        return self._offers

    # -- notifications ---------------------------------------------------------------------------
    async def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> IncomingEvent:
        note = await self.verifier.verify_notification_async(signed_payload_of(body))
        if not note.notification_uuid:
            raise InvalidSignedData("The notification has no notificationUUID.")
        self._remember(note)
        transaction = note.transaction
        return IncomingEvent(
            event_id=note.notification_uuid,
            type=note.notification_type or "UNKNOWN",
            # Serialized and batched per purchase: Apple's order of signedDate is applied within it.
            ordering_key=str(transaction.payload.originalTransactionId) if transaction else None,
            occurred_at=note.signed_date,
        )

    def _remember(self, note: VerifiedNotification) -> None:
        self._handoff[note.notification_uuid] = note
        while len(self._handoff) > _HANDOFF_SIZE:
            self._handoff.popitem(last=False)

    def read_slot(self, events: Sequence[ProviderEvent]) -> AbstractAsyncContextManager[bool]:
        return no_slot()

    async def process_events(self, db: AsyncSession, events: Sequence[ProviderEvent]) -> list[str]:
        """The inbox's processor for `app_store` rows (fresh deliveries, worker retries, released parks)."""
        outcomes = []
        for event in events:
            note = self._handoff.get(event.event_id)
            if note is None:
                note = await self.verifier.verify_notification_async(signed_payload_of(event.raw_body))
            outcomes.append(
                await process_notification(
                    db,
                    note,
                    catalog=self.catalog,
                    sink=self.sink,
                    now=utcnow(),
                    event=event,
                    purchases=self.purchases,
                    api=self.api,
                )
            )
        for event in events:
            self._handoff.pop(event.event_id, None)
        return outcomes

    async def aclose(self) -> None:
        if self.api is not None:
            await self.api.aclose()


def appstore_provider(providers: Mapping[str, object]) -> AppStoreProvider:
    """The App Store provider of a registry (always registered; its verifier says when unconfigured)."""
    provider = providers[PROVIDER]
    assert isinstance(provider, AppStoreProvider)
    return provider


async def process_notification(
    db: AsyncSession,
    note: VerifiedNotification,
    *,
    catalog: Catalog,
    sink: SubscriptionSink,
    now: datetime,
    event: ProviderEvent | None = None,
    purchases: PurchaseSink | None = None,
    api: AppStoreApi | None = None,
) -> str:
    """Dispatch one verified notification through `HANDLERS`; an unknown type is acknowledged, not failed."""
    handler = HANDLERS.get(note.notification_type)
    if handler is None:
        return f"ignored: unknown notification type {note.notification_type or '(none)'}"
    return await handler(
        NotificationContext(
            db=db, note=note, catalog=catalog, sink=sink, now=now, event=event, purchases=purchases, api=api
        )
    )


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
