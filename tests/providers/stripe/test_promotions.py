"""Promotion codes judged and applied as Stripe does, and the answer's `discount`, from recorded shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from entitle.providers.stripe.promotions import (
    choose,
    discount_summary,
    discounted,
    promotion_of,
    refusal,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def promotion_code(coupon: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A promotion code as API 2025-09-30+ returns it with `promotion.coupon` expanded."""
    return {
        "id": "promo_1",
        "object": "promotion_code",
        "active": True,
        "code": "LAUNCH20",
        "created": 1,
        "customer": None,
        "expires_at": None,
        "max_redemptions": None,
        "promotion": {"type": "coupon", "coupon": {"id": "c1", "valid": True, "duration": "once", **coupon}},
        "restrictions": {
            "currency_options": {},
            "first_time_transaction": False,
            "minimum_amount": None,
            "minimum_amount_currency": None,
        },
        "times_redeemed": 0,
        **fields,
    }


def judge(raw: dict[str, Any], **overrides: Any) -> str | None:
    promo = promotion_of(raw)
    assert promo is not None
    args: dict[str, Any] = {
        "now": NOW,
        "customer_id": "cus_1",
        "product_id": "prod_1",
        "amount": 999,
        "currency": "usd",
        "first_purchase": True,
    }
    return refusal(promo, **(args | overrides))


def test_percentages_round_half_up_and_fixed_amounts_stop_at_zero() -> None:
    half = promotion_of(promotion_code({"percent_off": 50}))
    assert half is not None
    assert discounted(999, half, "usd") == 499  # 499.5 off rounds to 500
    assert discounted(1497, promotion_of(promotion_code({"percent_off": 15})), "usd") == 1272  # type: ignore[arg-type]
    five = promotion_of(promotion_code({"amount_off": 500, "currency": "usd"}))
    assert five is not None
    assert discounted(999, five, "usd") == 499 and discounted(300, five, "usd") == 0


def test_an_amount_off_applies_in_its_currency_or_its_currency_options() -> None:
    raw = promotion_code(
        {"amount_off": 500, "currency": "usd", "currency_options": {"eur": {"amount_off": 450}}}
    )
    promo = promotion_of(raw)
    assert promo is not None
    assert promo.amount_off("EUR") == 450 and promo.amount_off("gbp") is None
    assert judge(raw, currency="eur") is None
    assert "GBP" in (judge(raw, currency="gbp") or "")


def test_every_refusal_has_its_sentence() -> None:
    assert judge(promotion_code({"percent_off": 10})) is None
    cases: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]] = [
        ({}, {"active": False}, {}, "no longer active"),
        ({}, {"expires_at": int(NOW.timestamp()) - 1}, {}, "has expired"),
        ({}, {"max_redemptions": 2, "times_redeemed": 2}, {}, "as many times"),
        ({"valid": False}, {}, {}, "has ended"),
        ({"redeem_by": int(NOW.timestamp())}, {}, {}, "has ended"),
        ({}, {"customer": "cus_2"}, {}, "another customer"),
        ({"applies_to": {"products": ["prod_2"]}}, {}, {}, "does not apply to this product"),
        ({}, {}, {"first_purchase": False}, None),
    ]
    for coupon, fields, call, words in cases:
        said = judge(promotion_code({"percent_off": 10, **coupon}, **fields), **call)
        assert (said is None) if words is None else (words in (said or "")), (coupon, fields, said)
    first_only = promotion_code({"percent_off": 10})
    first_only["restrictions"]["first_time_transaction"] = True
    assert "first purchase" in (judge(first_only, first_purchase=False) or "")
    minimum = promotion_code({"percent_off": 10})
    minimum["restrictions"].update(minimum_amount=5000, minimum_amount_currency="usd")
    assert "larger purchase" in (judge(minimum) or "") and judge(minimum, amount=5000) is None


def test_an_active_code_wins_over_older_inactive_ones_with_the_same_text() -> None:
    old = promotion_code({"percent_off": 10}, id="promo_old", active=False, created=5)
    live = promotion_code({"percent_off": 10}, id="promo_live", created=1)
    assert choose([old, live])["id"] == "promo_live"  # type: ignore[index]
    assert choose([old])["id"] == "promo_old"  # type: ignore[index]
    assert choose([]) is None


def test_an_unexpanded_coupon_is_not_guessed() -> None:
    assert promotion_of({"id": "promo_1", "promotion": {"type": "coupon", "coupon": "c1"}}) is None
    assert discount_summary(["di_1"]) is None
    assert discount_summary([{"id": "di_1", "source": {"type": "coupon", "coupon": "c1"}}]) is None
    assert discount_summary(None) is None and discount_summary([]) is None


def test_the_answers_discount_from_expanded_discounts() -> None:
    summary = discount_summary(
        [
            {
                "id": "di_1",
                "object": "discount",
                "end": int(NOW.timestamp()),
                "promotion_code": {"id": "promo_1", "code": "LAUNCH20"},
                "source": {
                    "type": "coupon",
                    "coupon": {
                        "id": "c1",
                        "name": "Launch",
                        "percent_off": 20.0,
                        "amount_off": None,
                        "currency": None,
                        "duration": "repeating",
                        "duration_in_months": 3,
                    },
                },
            }
        ]
    )
    assert summary == {
        "code": "LAUNCH20",
        "name": "Launch",
        "percent_off": 20.0,
        "amount_off": None,
        "currency": None,
        "duration": "repeating",
        "duration_in_months": 3,
        "ends_at": "2030-01-01T00:00:00Z",
    }
    fixed = discount_summary(
        [{"source": {"coupon": {"amount_off": 500, "currency": "usd", "duration": "once"}}, "end": None}]
    )
    assert fixed is not None and (fixed["amount_off"], fixed["currency"], fixed["code"]) == (500, "usd", None)
