"""What a customer page says when something fails: the error's own words, unless they are the operator's.

An error meant for whoever runs the server (a provider that is not configured or did not answer, a
misconfiguration) names a setting or an internal cause by design: the JSON API and /admin show it as is.
A person on /pricing or /account can do nothing with a setting's name, so the hosted pages say plainly
what cannot be done, and the detail goes to the log, where the operator looks.
"""

from __future__ import annotations

import logging

from entitle.errors import EntitleError, ProviderUnavailable

log = logging.getLogger(__name__)

PAYMENTS_OFF = "Subscriptions can't be bought on the web right now."
UNAVAILABLE = "This can't be done right now. Please try again later."
BILLING_UNAVAILABLE = "Billing can't be managed on the web right now. Please try again later."
SIGN_IN_UNAVAILABLE = "This way of signing in isn't available right now. Please use another one."

# Codes whose message is for the operator, with what a person reads instead.
_BY_CODE = {
    "stripe_not_configured": PAYMENTS_OFF,
    "identity_provider_not_configured": SIGN_IN_UNAVAILABLE,
}


def is_for_the_operator(exc: EntitleError) -> bool:
    """Whether the error's message is written for the operator (a setting, a vendor outage, our bug)."""
    return isinstance(exc, ProviderUnavailable) or exc.status_code >= 500


def customer_sentence(exc: EntitleError, *, unavailable: str | None = None) -> str:
    """The sentence a customer page shows for `exc`; an operator's message is logged, not shown.

    `unavailable` is what the page says when its action cannot be done now, whatever the cause."""
    if not is_for_the_operator(exc):
        return exc.message
    log.warning("customer page refused: %s (%s)", exc.message, exc.code)
    return unavailable or _BY_CODE.get(exc.code, UNAVAILABLE)
