from __future__ import annotations

from pathlib import Path

import pytest

from entitle.core.catalog import CatalogError, Interval, load_catalog, parse_catalog
from entitle.core.currencies import ISO_4217_CURRENCIES

VALID = """
[entitlements.pro]
description = "Everything in the app"

[entitlements.extra_storage]

[products.pro_monthly]
name = "Pro, monthly"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }
app_store = { product_id = "com.example.app.pro.monthly" }

[products.bundle_quarterly]
name = "Bundle, every three months"
entitlements = ["pro", "extra_storage"]
stripe = { lookup_key = "bundle_q", unit_amount = 2500, currency = "eur", interval = "month", \
  interval_count = 3, trial_days = 14 }

[products.storage_ios]
name = "Storage on iPhone"
entitlements = ["extra_storage"]
app_store = { product_id = "com.example.app.storage" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_entitlements_products_and_store_identities(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, VALID))

    assert list(catalog.entitlements) == ["pro", "extra_storage"]
    assert catalog.entitlements["pro"].description == "Everything in the app"
    assert catalog.entitlements["extra_storage"].description == ""
    monthly = catalog.products["pro_monthly"]
    assert monthly.stripe is not None
    assert (monthly.stripe.unit_amount, monthly.stripe.currency, monthly.stripe.interval) == (
        999,
        "usd",
        "month",
    )
    assert monthly.stripe.interval_count == 1 and monthly.stripe.trial_days is None
    bundle = catalog.products["bundle_quarterly"]
    assert bundle.stripe is not None
    assert bundle.stripe.interval is Interval.MONTH
    assert (bundle.stripe.interval_count, bundle.stripe.trial_days) == (3, 14)
    assert bundle.app_store_product_id is None
    assert catalog.products["storage_ios"].stripe is None


def test_lookups_by_key_and_store_identity(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, VALID))

    assert catalog.product_by_lookup_key("bundle_q") is catalog.products["bundle_quarterly"]
    assert catalog.product_by_app_store_id("com.example.app.storage") is catalog.products["storage_ios"]
    assert catalog.product_by_store_id("app_store", "com.example.app.pro.monthly") is catalog.product(
        "pro_monthly"
    )
    assert catalog.product_by_lookup_key("com.example.app.storage") is None
    assert catalog.product_by_app_store_id("pro_monthly") is None
    assert catalog.product("nope") is None
    assert catalog.entitlements_of("bundle_quarterly") == ("pro", "extra_storage")
    assert catalog.entitlements_of("nope") == ()
    assert catalog.entitlements_of(None) == ()
    assert [p.key for p in catalog.products_granting("extra_storage")] == ["bundle_quarterly", "storage_ios"]


def test_packaged_sample_catalog_is_valid() -> None:
    catalog = load_catalog()

    assert set(catalog.entitlements) == {"pro"}
    assert set(catalog.products) == {"pro_monthly", "pro_yearly", "pro_lifetime", "credits_100"}
    assert set(catalog.currencies) == {"credits"}
    assert catalog.products["credits_100"].grants == {"credits": 100}
    assert catalog.products["pro_lifetime"].is_one_time
    monthly = catalog.products["pro_monthly"]
    assert monthly.stripe is not None and monthly.stripe.unit_amount == 999
    assert catalog.product_by_app_store_id("com.example.app.pro.monthly") is monthly
    assert catalog.products["pro_yearly"].stripe is not None


def test_catalog_is_frozen(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, VALID))
    with pytest.raises(AttributeError):
        catalog.products["pro_monthly"].name = "changed"  # type: ignore[misc]


MONTHLY = '[products.pro_monthly]\nname = "Pro"\nentitlements = ["pro"]\n'
PRO = "[entitlements.pro]\n"


def stripe(**fields: object) -> str:
    """A product with a Stripe price, starting from a valid one; None drops a field."""
    base: dict[str, object] = {"lookup_key": "k", "unit_amount": 1, "currency": "usd", "interval": "month"}
    base.update(fields)
    inline = ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in base.items() if v is not None)
    return PRO + MONTHLY + "stripe = { " + inline + " }\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            PRO + '[products.p]\nname = "P"\nentitlements = ["max"]\n',
            'product "p" grants unknown entitlement "max"',
        ),
        (
            PRO
            + MONTHLY
            + 'stripe = { lookup_key = "k", unit_amount = 1, currency = "usd", interval = "month" }\n'
            + '[products.pro_yearly]\nname = "Y"\nentitlements = ["pro"]\n'
            + 'stripe = { lookup_key = "k", unit_amount = 1, currency = "usd", interval = "year" }\n',
            'products "pro_monthly" and "pro_yearly" share the Stripe lookup key "k"',
        ),
        (
            PRO
            + MONTHLY
            + 'app_store = { product_id = "com.x" }\n'
            + '[products.b]\nname = "B"\nentitlements = ["pro"]\napp_store = { product_id = "com.x" }\n',
            'products "pro_monthly" and "b" share the app_store product id "com.x"',
        ),
        (
            stripe(currency="USD"),
            'currency "USD" is not a lowercase ISO 4217 currency code (write "usd")',
        ),
        (
            stripe(currency="usx"),
            'currency "usx" is not a lowercase ISO 4217 currency code',
        ),
        (
            stripe(interval="monthly"),
            'interval "monthly" is not one of day, week, month, year',
        ),
        (
            stripe(unit_amount=0),
            "unit_amount must be a positive amount in the smallest currency unit, not 0",
        ),
        (
            stripe(unit_amount=-5),
            "not -5",
        ),
        (
            stripe(unit_amount=9.99),
            '"unit_amount" must be a whole number, not 9.99',
        ),
        (
            stripe(unit_amount=None),
            '[products.pro_monthly] stripe is missing "unit_amount"',
        ),
        (
            stripe(interval_count=13),
            'interval_count must be between 1 and 12 for interval "month"',
        ),
        (
            stripe(interval="week", trial_days=0),
            "trial_days must be between 1 and 730, not 0",
        ),
        (
            stripe(lookup_key=None, lookupkey="k"),
            '[products.pro_monthly] stripe is missing "lookup_key"',
        ),
        (PRO + MONTHLY + 'app_store = { product = "com.x" }\n', 'app_store is missing "product_id"'),
        (PRO + MONTHLY + 'app_store = { product_id = "com x" }\n', 'product_id "com x" may hold only'),
        (PRO + '[products.p]\nentitlements = ["pro"]\n', '[products.p] is missing "name"'),
        (PRO + '[products.p]\nname = "P"\n', '[products.p] is missing "entitlements"'),
        (
            PRO + '[products.p]\nname = "P"\nentitlements = []\n',
            "must be a non-empty list of entitlement names",
        ),
        (PRO + '[products.p]\nname = "P"\nentitlements = ["pro", "pro"]\n', "lists an entitlement twice"),
        (
            PRO + MONTHLY + 'google = { product_id = "x" }\n',
            '[products.pro_monthly] has unknown field "google"',
        ),
        ("[products]\n", 'the catalog is missing "entitlements"'),
        ("[entitlements]\n[products]\n", "[entitlements] defines no entitlement"),
        ('[entitlements.pro]\nname = "x"\n[products]\n', '[entitlements.pro] has unknown field "name"'),
        ('entitlements = "pro"\n[products]\n', "[entitlements] must be a table"),
    ],
)
def test_invalid_catalog_names_file_and_problem_in_one_sentence(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(CatalogError) as caught:
        load_catalog(path)

    message = str(caught.value)
    assert message.startswith(f"Catalog {path}: ")
    assert problem in message
    assert message.endswith(".") and "\n" not in message
    assert caught.value.code == "invalid_catalog"


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[entitlements.pro]\n\n[products.p]\nname = "P\n')

    with pytest.raises(CatalogError) as caught:
        load_catalog(path)

    message = str(caught.value)
    assert message.startswith(f"Catalog {path} is not valid TOML: ")
    assert "line 4" in message and "\n" not in message


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"cannot be read: No such file or directory\.$"):
        load_catalog(tmp_path / "absent.toml")


def test_non_utf8_file_is_a_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_bytes(b'[entitlements.pro]\ndescription = "\xff"\n')

    with pytest.raises(CatalogError, match="is not UTF-8 text"):
        load_catalog(path)


def test_parse_catalog_uses_the_given_source_name() -> None:
    with pytest.raises(CatalogError, match=r"^Catalog inline: "):
        parse_catalog("[products]\n", source="inline")


def test_currency_list_is_real_iso_4217() -> None:
    for code in ("usd", "eur", "jpy", "gbp", "chf", "inr", "brl", "xof"):
        assert code in ISO_4217_CURRENCIES
    # Metals, testing and fund codes are ISO 4217 but nobody charges in them.
    for code in ("xau", "xts", "xxx", "usn", "usx", "USD"):
        assert code not in ISO_4217_CURRENCIES
    assert all(len(code) == 3 and code.isalpha() and code.islower() for code in ISO_4217_CURRENCIES)
