"""Offline App Store stand-ins: a signing chain shaped like Apple's, signed payloads, and the Server API."""

from .chain import SigningChain, mint_chain
from .history import Notification, SubscriptionSimulator, random_history
from .one_time import CONSUMABLE, NON_CONSUMABLE, NON_RENEWING, OneTimePurchase
from .server import AppStoreServerState, create_app, new_state, serve
from .signing import (
    STATUS_ACTIVE,
    STATUS_BILLING_RETRY,
    STATUS_EXPIRED,
    STATUS_GRACE_PERIOD,
    STATUS_REVOKED,
    AppStoreSigner,
    ms,
)

__all__ = [
    "CONSUMABLE",
    "NON_CONSUMABLE",
    "NON_RENEWING",
    "OneTimePurchase",
    "STATUS_ACTIVE",
    "STATUS_BILLING_RETRY",
    "STATUS_EXPIRED",
    "STATUS_GRACE_PERIOD",
    "STATUS_REVOKED",
    "AppStoreServerState",
    "AppStoreSigner",
    "Notification",
    "SigningChain",
    "SubscriptionSimulator",
    "create_app",
    "mint_chain",
    "ms",
    "new_state",
    "random_history",
    "serve",
]
