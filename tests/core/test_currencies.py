"""Minor units per currency: what Stripe amounts, App Store prices and reports are written in."""

from __future__ import annotations

from entitle.core.currencies import display_amount, minor_unit_digits


def test_minor_units_follow_the_currency() -> None:
    assert [minor_unit_digits(code) for code in ("usd", "JPY", "kwd")] == [2, 0, 3]
    assert display_amount(999, "usd") == "$9.99"
    assert display_amount(1200, "jpy") == "¥1,200"
    # Stripe writes three-decimal currencies in thousandths: 5120 is 5.120 KD, not 51.20.
    assert display_amount(5120, "kwd") == "5.120 KWD"
