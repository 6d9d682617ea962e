"""What the account page shows of one-time purchases and in-app currencies.

Pure functions over the catalog and the entitlements answer (the body the apps read), as in `plans`, so
the page never says a person owns something the API would not grant. One judgement is made here: a
renewing subscription is redundant when a lifetime purchase that stands already grants everything it
grants, and the page says so beside the subscription with the way to stop paying for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from entitle.core.catalog import Catalog, ProductType
from entitle.core.subscriptions import Store
from entitle.web.pages.plans import STORE_NAMES, SubscriptionCard


@dataclass(frozen=True)
class PurchaseLine:
    """One purchase as the account page shows it."""

    store: Store
    id: str
    product: str | None
    product_name: str
    type: ProductType
    quantity: int
    purchased_at: str
    expires_at: str | None
    refunded_at: str | None
    # What it credited, as the person reads it: ["200 Credits"]; empty for an unlock.
    credited: tuple[str, ...] = ()
    # Whether it grants its entitlements now (a standing unlock or a pass not yet over).
    entitles: bool = False

    @property
    def store_name(self) -> str:
        return STORE_NAMES[self.store]

    @property
    def ended(self) -> bool:
        """A pass whose days are over (a refund is said on its own)."""
        return self.refunded_at is None and self.type is ProductType.NON_RENEWING and not self.entitles


@dataclass(frozen=True)
class BalanceLine:
    """One currency's balance, named as the catalog names it."""

    currency: str
    name: str
    amount: int

    @property
    def negative(self) -> bool:
        return self.amount < 0


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def purchase_lines(catalog: Catalog, answer: dict[str, Any], now: datetime) -> list[PurchaseLine]:
    """The account's purchases, newest first (the answer's order), each with what it gives now."""
    lines = []
    for bought in answer.get("purchases", []):
        product = catalog.product(bought["product"] or "")
        kind = ProductType(bought["type"])
        expires_at = _moment(bought["expires_at"])
        standing = bought["refunded_at"] is None and kind is not ProductType.CONSUMABLE
        credited = tuple(
            f"{amount * bought['quantity']:,} {_currency_name(catalog, currency)}"
            for currency, amount in sorted((product.grants if product else {}).items())
        )
        lines.append(
            PurchaseLine(
                store=Store(bought["store"]),
                id=bought["id"],
                product=bought["product"],
                product_name=product.name if product else (bought["product"] or "Unknown product"),
                type=kind,
                quantity=bought["quantity"],
                purchased_at=bought["purchased_at"],
                expires_at=bought["expires_at"],
                refunded_at=bought["refunded_at"],
                credited=credited,
                entitles=standing and (expires_at is None or now < expires_at),
            )
        )
    return lines


def _currency_name(catalog: Catalog, key: str) -> str:
    currency = catalog.currencies.get(key)
    return currency.name if currency is not None else key.replace("_", " ").capitalize()


def balance_lines(catalog: Catalog, answer: dict[str, Any]) -> list[BalanceLine]:
    """Every currency the answer carries (the catalog's, at 0 until credited), in the catalog's order."""
    balances: dict[str, int] = answer.get("balances", {})
    order = [*catalog.currencies, *sorted(set(balances) - set(catalog.currencies))]
    return [BalanceLine(key, _currency_name(catalog, key), int(balances.get(key, 0))) for key in order]


def redundant_subscriptions(
    catalog: Catalog, cards: list[SubscriptionCard], lines: list[PurchaseLine]
) -> dict[str, PurchaseLine]:
    """Renewing subscriptions (by id) that a standing lifetime purchase makes pointless, with that purchase.

    Only when the lifetime purchase grants every entitlement the subscription grants: one that grants
    Pro does not make a Pro + Storage subscription redundant, as cancelling it would lose Storage."""
    owned = [
        (line, frozenset(catalog.entitlements_of(line.product)))
        for line in lines
        if line.type is ProductType.NON_CONSUMABLE and line.entitles and line.product
    ]
    redundant = {}
    for card in cards:
        granted = frozenset(catalog.entitlements_of(card.product))
        if not (card.will_renew and card.entitles and granted):
            continue
        for line, covers in owned:
            if granted <= covers:
                redundant[card.id] = line
                break
    return redundant
