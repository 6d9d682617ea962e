"""ISO 4217 currency codes a price can be set in.

The list is ISO 4217's table of current codes (amendment 179, 2025) without the fund codes, precious
metals, SDR and testing codes, which no store charges in. Codes are kept lowercase because Stripe writes
them that way; the catalog requires that spelling so a catalog reads like the Stripe prices it creates.
Keeping the list here rather than pulling in a country-data package costs one file that changes about
once a year.
"""

from __future__ import annotations

ISO_4217_CURRENCIES = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn bwp byn bzd
    cad cdf chf clp cny cop crc cuc cup cve czk djf dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs gip
    gmd gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd
    kzt lak lbp lkr lrd lsl lyd mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok
    npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sdg sek sgd shp sle sll sos
    srd ssp stn svc syp szl thb tjs tmt tnd top try ttd twd tzs uah ugx usd uyu uzs ved ves vnd vuv wst
    xaf xcd xcg xof xpf yer zar zmw zwg zwl
    """.split()
)


def is_currency(code: str) -> bool:
    """Whether `code` is a lowercase ISO 4217 code for money a store can charge in."""
    return code in ISO_4217_CURRENCIES


# Currencies whose smallest unit is the unit itself (Stripe's list): 500 jpy is ¥500, not ¥5.00.
ZERO_DECIMAL_CURRENCIES = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
# Currencies with three decimals (Stripe's list): 5124 kwd is 5.124 KD. Apple prices everything in
# milli-units, which for these are the minor units themselves.
THREE_DECIMAL_CURRENCIES = frozenset("bhd jod kwd omr tnd".split())
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩"}


def minor_unit_digits(currency: str) -> int:
    """How many decimals the currency's minor unit has: 0 for jpy, 3 for kwd, 2 for most."""
    code = currency.lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if code in THREE_DECIMAL_CURRENCIES else 2


def display_amount(minor_units: int, currency: str) -> str:
    """An amount as a person reads it: `$9.99`, `¥500`, `12.50 CHF`, `5.120 KWD`."""
    code = currency.lower()
    digits = minor_unit_digits(code)
    if digits == 0:
        number = f"{minor_units:,}"
    else:
        sign = "-" if minor_units < 0 else ""
        whole, fraction = divmod(abs(minor_units), 10**digits)
        number = f"{sign}{whole:,}.{fraction:0{digits}d}"
    symbol = _SYMBOLS.get(code)
    if symbol is None:
        return f"{number} {code.upper()}"
    return f"-{symbol}{number[1:]}" if number.startswith("-") else f"{symbol}{number}"
