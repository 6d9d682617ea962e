"""Everything that speaks the App Store (StoreKit 2, Server Notifications V2, App Store Server API).

Public face, by module (imported from the modules themselves, so that loading the table definitions
from `core.models` does not pull in the whole provider):

- `verification`: `AppStoreVerifier` (transactions, renewal info, notifications), `configuration_problems`.
- `mapping`: `subscription_state`, `decide_status` (App Store data -> core `SubscriptionState`),
  `purchase_state` (a one-time transaction -> core `PurchaseState`).
- `provider`: `AppStoreProvider` (registered as `providers["app_store"]`; `receive_notification`,
  `process_event`), `process_notification`.
- `purchases`: `record_purchase`, `after_purchase` (the app posting a transaction).
- `consumption`: answering CONSUMPTION_REQUEST with consent (Send Consumption Information).
- `handlers`: `HANDLERS`, one handler per notification type.
- `ledger`: `decide_owner`, `set_owner` and the ownership audit; `models`: its tables.
- `api`: `AppStoreApi` (the Server API via Apple's client); `sync`: `sync_all`, `refresh_subscription`.
- `offers`: `PromotionalOfferSigner` (both promotional-offer signature forms, by Apple's library).
"""
