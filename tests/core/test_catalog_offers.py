"""`[offers.<name>]`: App Store promotional offers and who may have them, checked at start-up."""

from __future__ import annotations

import pytest

from entitle.core.catalog import CatalogError, OfferEligibility, parse_catalog

BASE = """
[entitlements.pro]

[products.pro_monthly]
name = "Pro, monthly"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }
app_store = { product_id = "com.example.app.pro.monthly" }

[products.pro_web]
name = "Pro on the web"
entitlements = ["pro"]
stripe = { lookup_key = "pro_web", unit_amount = 999, currency = "usd", interval = "month" }

[products.pro_lifetime]
name = "Pro, lifetime"
type = "non_consumable"
entitlements = ["pro"]
app_store = { product_id = "com.example.app.pro.lifetime" }
"""

WINBACK = """
[offers.winback]
product = "pro_monthly"
app_store_offer_id = "winback_3_months"
eligible = "lapsed"
"""


def test_an_offer_names_its_product_store_id_and_rule() -> None:
    catalog = parse_catalog(BASE + WINBACK, source="catalog.toml")
    offer = catalog.offers["winback"]
    assert (offer.product, offer.app_store_offer_id, offer.eligible) == (
        "pro_monthly",
        "winback_3_months",
        OfferEligibility.LAPSED,
    )
    assert catalog.app_store_offer("com.example.app.pro.monthly", "winback_3_months") == offer
    assert catalog.app_store_offer("com.example.app.pro.monthly", "other") is None
    assert catalog.app_store_offer("com.example.app.pro.lifetime", "winback_3_months") is None
    assert catalog.app_store_offer("com.example.unknown", "winback_3_months") is None


def test_a_catalog_without_offers_has_none() -> None:
    assert parse_catalog(BASE).offers == {}


@pytest.mark.parametrize("rule", [rule.value for rule in OfferEligibility])
def test_every_rule_is_accepted(rule: str) -> None:
    text = BASE + WINBACK.replace('"lapsed"', f'"{rule}"')
    assert parse_catalog(text).offers["winback"].eligible == OfferEligibility(rule)


@pytest.mark.parametrize(
    ("offers", "message"),
    [
        (
            '[offers.x]\nproduct = "pro_yearly"\napp_store_offer_id = "a"\neligible = "new"\n',
            '[offers.x] names product "pro_yearly", which [products] does not define',
        ),
        (
            '[offers.x]\nproduct = "pro_web"\napp_store_offer_id = "a"\neligible = "new"\n',
            '[offers.x] product "pro_web" must be a subscription sold in the App Store',
        ),
        (
            '[offers.x]\nproduct = "pro_lifetime"\napp_store_offer_id = "a"\neligible = "new"\n',
            '[offers.x] product "pro_lifetime" must be a subscription sold in the App Store',
        ),
        (
            '[offers.x]\nproduct = "pro_monthly"\napp_store_offer_id = "a"\neligible = "returning"\n',
            '[offers.x] eligible "returning" is not one of lapsed, new, subscribed, anyone',
        ),
        (
            '[offers.x]\nproduct = "pro_monthly"\napp_store_offer_id = "a\\u2063b"\neligible = "new"\n',
            '[offers.x] app_store_offer_id "a\u2063b" must be 1-64 letters, digits',
        ),
        (
            '[offers.x]\nproduct = "pro_monthly"\neligible = "new"\n',
            '[offers.x] is missing "app_store_offer_id"',
        ),
        (
            '[offers.x]\nproduct = "pro_monthly"\napp_store_offer_id = "a"\neligible = "new"\nstore = "x"\n',
            '[offers.x] has unknown field "store"',
        ),
        (
            '[offers.x]\nproduct = "pro_monthly"\napp_store_offer_id = "a"\neligible = "new"\n'
            '[offers.y]\nproduct = "pro_monthly"\napp_store_offer_id = "a"\neligible = "lapsed"\n',
            'offers "x" and "y" are both App Store offer "a" of product "pro_monthly"',
        ),
        ('offers = "winback"\n', "[offers] must be a table"),
    ],
)
def test_a_bad_offer_stops_start_up_with_one_sentence(offers: str, message: str) -> None:
    # Top-level keys must come before the first table in TOML.
    text = offers + BASE if offers.startswith("offers =") else BASE + offers
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="/etc/entitle/catalog.toml")
    assert str(caught.value).startswith("Catalog /etc/entitle/catalog.toml: ")
    assert message in str(caught.value)
