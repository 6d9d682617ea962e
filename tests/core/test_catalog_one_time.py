"""Product types, currencies, grants and quantities in the catalog: what is accepted, and the one
sentence that stops `entitle serve` for each mistake."""

from __future__ import annotations

import pytest

from entitle.core.catalog import CatalogError, ProductType, parse_catalog

HEAD = """
[entitlements.pro]

[currencies.credits]
name = "Credits"
"""

ONE_TIME = (
    HEAD
    + """
[products.pro_lifetime]
name = "Pro, lifetime"
type = "non_consumable"
entitlements = ["pro"]
stripe = { lookup_key = "pro_lifetime", unit_amount = 19999, currency = "usd" }
app_store = { product_id = "com.example.app.pro.lifetime" }

[products.credits_100]
name = "100 credits"
type = "consumable"
grants = { credits = 100 }
max_quantity = 10
stripe = { lookup_key = "credits_100", unit_amount = 499, currency = "usd" }

[products.pass_week]
name = "A week of Pro"
type = "non_renewing"
entitlements = ["pro"]
duration_days = 7
app_store = { product_id = "com.example.app.pass.week" }

[products.pro_monthly]
name = "Pro, monthly, with credits"
entitlements = ["pro"]
grants = { credits = 50 }
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }
"""
)


def test_every_product_type_is_read_with_its_terms() -> None:
    catalog = parse_catalog(ONE_TIME)

    lifetime = catalog.products["pro_lifetime"]
    assert lifetime.type is ProductType.NON_CONSUMABLE and lifetime.is_one_time
    assert lifetime.stripe is not None and lifetime.stripe.interval is None
    assert not lifetime.stripe.is_recurring
    credits = catalog.products["credits_100"]
    assert credits.type is ProductType.CONSUMABLE
    assert credits.grants == {"credits": 100} and credits.max_quantity == 10
    assert credits.entitlements == ()
    assert catalog.products["pass_week"].duration_days == 7
    monthly = catalog.products["pro_monthly"]
    assert monthly.type is ProductType.SUBSCRIPTION and not monthly.is_one_time
    assert monthly.grants == {"credits": 50}
    assert catalog.currencies["credits"].name == "Credits"
    assert catalog.product_by_app_store_id("com.example.app.pass.week") is catalog.products["pass_week"]


@pytest.mark.parametrize(
    ("product", "says"),
    [
        ('type = "lifetime"\nentitlements = ["pro"]', 'type "lifetime" is not one of subscription'),
        ('type = "consumable"\ngrants = { coins = 5 }', 'names currency "coins"'),
        ('type = "consumable"', "must grant an amount of a currency"),
        ('type = "consumable"\nentitlements = ["pro"]\ngrants = { credits = 5 }', "not entitlements"),
        ('type = "consumable"\ngrants = { credits = 0 }', "whole number from 1"),
        ('type = "consumable"\ngrants = { credits = 5 }\nmax_quantity = 0', "max_quantity must be between"),
        ('type = "non_consumable"\nentitlements = ["pro"]\nmax_quantity = 3', "is bought once"),
        ('type = "non_renewing"\nentitlements = ["pro"]', "duration_days"),
        ('type = "non_consumable"\nentitlements = ["pro"]\nduration_days = 3', "only for non_renewing"),
        ("entitlements = []", "must be a non-empty list of entitlement names"),
        ('type = "non_consumable"', 'is missing "entitlements"'),
        (
            'type = "non_consumable"\nentitlements = ["pro"]\n'
            'stripe = { lookup_key = "x", unit_amount = 1, currency = "usd", interval = "month" }',
            'unknown field "interval"',
        ),
        (
            'entitlements = ["pro"]\nstripe = { lookup_key = "x", unit_amount = 1, currency = "usd" }',
            'missing "interval"',
        ),
    ],
)
def test_a_mistake_in_a_product_is_named(product: str, says: str) -> None:
    text = HEAD + f'\n[products.broken]\nname = "Broken"\n{product}\n'
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="shop.toml")
    assert "shop.toml" in str(caught.value)
    assert "broken" in str(caught.value)
    assert says in str(caught.value)


PRODUCT = '\n[products.p]\nname = "P"\nentitlements = ["pro"]\n'


def test_a_currency_needs_a_name_of_its_own() -> None:
    with pytest.raises(CatalogError, match="has the name of an entitlement"):
        parse_catalog(HEAD + '\n[currencies.pro]\nname = "Pro points"\n' + PRODUCT)
    with pytest.raises(CatalogError, match='missing "name"'):
        parse_catalog(HEAD.replace('name = "Credits"', "") + PRODUCT)
