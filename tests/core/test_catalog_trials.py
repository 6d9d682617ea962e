"""`trial_requires_card` in the catalog: a Stripe trial that starts without a card, and the one sentence
that stops `entitle serve` when it is set where it means nothing."""

from __future__ import annotations

import pytest

from entitle.core.catalog import CatalogError, parse_catalog

HEAD = '[entitlements.pro]\n[products.pro_monthly]\nname = "Pro"\nentitlements = ["pro"]\n'
MONTHLY = 'lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month"'


def test_a_trial_without_a_card_is_read() -> None:
    catalog = parse_catalog(
        HEAD + f"stripe = {{ {MONTHLY}, trial_days = 14, trial_requires_card = false }}\n"
    )

    price = catalog.products["pro_monthly"].stripe
    assert price is not None
    assert (price.trial_days, price.trial_requires_card) == (14, False)


def test_a_trial_asks_for_a_card_unless_told_otherwise() -> None:
    catalog = parse_catalog(HEAD + f"stripe = {{ {MONTHLY}, trial_days = 14 }}\n")

    price = catalog.products["pro_monthly"].stripe
    assert price is not None and price.trial_requires_card is True


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            HEAD + f"stripe = {{ {MONTHLY}, trial_requires_card = false }}\n",
            '[products.pro_monthly] stripe "trial_requires_card" needs a trial: set "trial_days" too',
        ),
        (
            HEAD + f'stripe = {{ {MONTHLY}, trial_days = 7, trial_requires_card = "no" }}\n',
            "[products.pro_monthly] stripe \"trial_requires_card\" must be true or false, not 'no'",
        ),
        (
            '[entitlements.pro]\n[products.life]\nname = "Life"\ntype = "non_consumable"\n'
            'entitlements = ["pro"]\nstripe = { lookup_key = "life", unit_amount = 9999, currency = "usd", '
            "trial_requires_card = false }\n",
            '[products.life] stripe "trial_requires_card" is only for subscriptions',
        ),
    ],
)
def test_misplaced_trial_requires_card_names_file_and_product(text: str, problem: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="catalog.toml")

    assert str(caught.value).startswith("Catalog catalog.toml: ")
    assert problem in str(caught.value)
