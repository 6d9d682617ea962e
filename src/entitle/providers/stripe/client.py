"""A thin async gateway over the official `stripe` SDK.

Decisions this module owns:
- One API version, pinned here and sent on every call (`Stripe-Version`), so an account's dashboard
  default can never change the shape of what we read. It is the pinned SDK's own default
  (`stripe.api_version`), the version its types describe; a test keeps the two equal.
- Everything returned is the JSON Stripe sent, as plain dicts: mapping and storage never see SDK
  objects, and the raw vendor object we keep is byte-for-byte what Stripe said.
- Every request is paced (`entitle.pacing`) under Stripe's limits, each under an explicit endpoint name
  (method and path template, as Stripe counts them): the account-wide limit, 25 requests/s with a test
  key and 100 live, and 25/s per endpoint in both modes (https://docs.stripe.com/rate-limits), or
  `ENTITLE_STRIPE_MAX_REQUESTS_PER_SECOND` when this process has only a share of the account.
- A 429 is retried within seconds: short exponential backoff with jitter (a `Retry-After` header, if
  Stripe ever sends one, wins), held back in the pacer so other requests to the same endpoint (or every
  request, when `Stripe-Rate-Limited-Reason` names the global limit) wait too. Only after about 20
  seconds of that does it become `ProviderUnavailable(code="stripe_rate_limited")`, for the inbox's
  slower retry. The SDK itself only retries network failures, 409s and 5xx.
- SDK errors stop here and become `entitle.errors` (see `errors.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import stripe
from stripe.params import (
    CustomerCreateParams,
    CustomerTaxIdCreateParams,
    CustomerUpdateParams,
    InvoiceCreatePreviewParams,
    PaymentIntentCreateParams,
    PriceCreateParams,
    PriceUpdateParams,
    ProductCreateParams,
    ProductUpdateParams,
    RefundCreateParams,
    SubscriptionCancelParams,
    SubscriptionCreateParams,
    SubscriptionListParams,
    SubscriptionUpdateParams,
    WebhookEndpointCreateParams,
)
from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
from stripe.params.checkout import SessionCreateParams as CheckoutSessionCreateParams
from stripe.params.tax import CalculationCreateParams as TaxCalculationCreateParams

from entitle.db.types import utcnow
from entitle.errors import Conflict, EntitleError, InvalidRequest, ProviderUnavailable
from entitle.pacing import Clock, Pacer, PacerStats, Sleep, retry_delay
from entitle.providers.stripe.errors import (
    PaymentRequired,
    StripeKeyRefused,
    StripeNotConfigured,
    StripeObjectMissing,
)
from entitle.settings import Settings

# The API version every request carries; equal to `stripe.api_version` of the pinned SDK major.
STRIPE_API_VERSION = "2026-10-28.endive"

StripeDict = dict[str, Any]

# Stripe's limits (https://docs.stripe.com/rate-limits): for the whole account, by mode, and for each
# endpoint (method + path template) unless noted, in live mode too.
SANDBOX_REQUESTS_PER_SECOND = 25.0
LIVE_REQUESTS_PER_SECOND = 100.0
ENDPOINT_REQUESTS_PER_SECOND = 25.0
# How much backoff a request sits through on 429s before giving up: seconds, not the inbox's 30.
RATE_LIMIT_BUDGET_SECONDS = 20.0
RATE_LIMIT_BACKOFF_CAP_SECONDS = 2.0

# The webhook path's re-reads, named for `pacer.reserved(...)`.
RETRIEVE_SUBSCRIPTION = "GET /v1/subscriptions/{id}"
LIST_SUBSCRIPTIONS = "GET /v1/subscriptions"
RETRIEVE_PAYMENT_INTENT = "GET /v1/payment_intents/{id}"
# What a one-time purchase is read with: its charge, and the charge's refunds (when each happened).
PAYMENT_INTENT_EXPAND = ["latest_charge", "latest_charge.refunds"]
# What a stored subscription is read with: the card (brand, last 4) and its discounts with their coupon
# and promotion code (discount ids, unexpanded coupons otherwise), for the answer's `discount`.
SUBSCRIPTION_DETAIL = ["default_payment_method", "discounts.source.coupon", "discounts.promotion_code"]
# What a promotion code is judged with: its coupon (unexpanded since API 2025-09-30) and the coupon's
# product restriction, which Stripe includes only when asked.
PROMOTION_CODE_EXPAND = ["promotion.coupon", "promotion.coupon.applies_to"]


# The SDK logs every response body at DEBUG (`stripe` logger), and creating a webhook endpoint answers
# with its signing secret: the log must never hold one, whatever level an operator runs at.
_SIGNING_SECRET = re.compile(r"whsec_[0-9A-Za-z]+")


class _RedactSigningSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "whsec_" in message:
            record.msg, record.args = _SIGNING_SECRET.sub("whsec_[redacted]", message), None
        return True


logging.getLogger("stripe").addFilter(_RedactSigningSecrets())


def stripe_limits(secret_key: str, override: float | None = None) -> tuple[float, float]:
    """(account-wide, per-endpoint) requests per second for this key, or for `override`."""
    sandbox = secret_key.startswith(("sk_test_", "rk_test_"))
    account = override or (SANDBOX_REQUESTS_PER_SECOND if sandbox else LIVE_REQUESTS_PER_SECOND)
    return account, min(ENDPOINT_REQUESTS_PER_SECOND, account)


class StripeGateway:
    """The calls entitle makes to Stripe, each returning Stripe's JSON as a dict."""

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str = stripe.DEFAULT_API_BASE,
        http_client: stripe.HTTPClient | None = None,
        max_network_retries: int = 2,
        max_requests_per_second: float | None = None,
        rate_limit_budget: float = RATE_LIMIT_BUDGET_SECONDS,
        backoff_seconds: float = 0.25,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._http = http_client or FormBodyHTTPXClient(timeout=30)
        self._client = stripe.StripeClient(
            secret_key,
            stripe_version=STRIPE_API_VERSION,
            base_addresses={"api": api_base},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )
        self._rate_limit_budget = rate_limit_budget
        self._backoff = backoff_seconds
        account, endpoint = stripe_limits(secret_key, max_requests_per_second)
        self.pacer = Pacer(per_second=account, per_endpoint=endpoint, clock=clock, sleep=sleep)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> StripeGateway:
        if settings.stripe_secret_key is None:
            raise StripeNotConfigured()
        return cls(
            settings.stripe_secret_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            max_requests_per_second=settings.stripe_max_requests_per_second,
            **overrides,
        )

    @property
    def stats(self) -> PacerStats:
        """Requests sent and 429s received, per endpoint."""
        return self.pacer.stats

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # --- customers ---------------------------------------------------------------------------------
    async def create_customer(
        self, *, account_id: str, email: str | None, idempotency_key: str
    ) -> StripeDict:
        params: CustomerCreateParams = {"metadata": {"account_id": account_id}}
        if email:
            params["email"] = email
        return await self._call(
            "POST /v1/customers",
            lambda: self._client.v1.customers.create_async(params, {"idempotency_key": idempotency_key}),
        )

    async def set_customer_address(self, customer_id: str, address: dict[str, str]) -> StripeDict:
        """The billing address Stripe Tax computes a subscription's tax from."""
        params: CustomerUpdateParams = {"address": address}  # type: ignore[typeddict-item]
        return await self._call(
            "POST /v1/customers/{id}",
            lambda: self._client.v1.customers.update_async(customer_id, params),
        )

    async def add_customer_tax_id(self, customer_id: str, *, type: str, value: str) -> StripeDict:
        """A business's tax id (a VAT number, say), shown on its invoices and used for reverse charge."""
        params: CustomerTaxIdCreateParams = {"type": type, "value": value}
        return await self._call(
            "POST /v1/customers/{id}/tax_ids",
            lambda: self._client.v1.customers.tax_ids.create_async(customer_id, params),
        )

    async def retrieve_customer(self, customer_id: str) -> StripeDict:
        """The customer, or `{"id", "object", "deleted": true}` once deleted."""
        return await self._call(
            "GET /v1/customers/{id}", lambda: self._client.v1.customers.retrieve_async(customer_id)
        )

    async def retrieve_payment_method(self, payment_method_id: str) -> StripeDict:
        return await self._call(
            "GET /v1/payment_methods/{id}",
            lambda: self._client.v1.payment_methods.retrieve_async(payment_method_id),
        )

    # --- catalog -----------------------------------------------------------------------------------
    async def prices_by_lookup_keys(self, lookup_keys: list[str]) -> list[StripeDict]:
        """Active prices holding any of `lookup_keys`, each with its product expanded."""
        found: list[StripeDict] = []
        for start in range(0, len(lookup_keys), 10):  # Stripe filters on at most 10 lookup keys per call
            chunk = lookup_keys[start : start + 10]
            page = await self._expanding(
                "GET /v1/prices",
                lambda expand, chunk=chunk: self._client.v1.prices.list_async(  # type: ignore[misc]
                    {"lookup_keys": chunk, "limit": 100, **expand}  # type: ignore[arg-type]
                ),
                ["data.product"],
            )
            found.extend(page["data"])
        return found

    async def create_product(self, params: ProductCreateParams, *, idempotency_key: str) -> StripeDict:
        return await self._call(
            "POST /v1/products",
            lambda: self._client.v1.products.create_async(params, {"idempotency_key": idempotency_key}),
        )

    async def update_product(self, product_id: str, params: ProductUpdateParams) -> StripeDict:
        return await self._call(
            "POST /v1/products/{id}", lambda: self._client.v1.products.update_async(product_id, params)
        )

    async def create_price(self, params: PriceCreateParams, *, idempotency_key: str) -> StripeDict:
        return await self._call(
            "POST /v1/prices",
            lambda: self._client.v1.prices.create_async(params, {"idempotency_key": idempotency_key}),
        )

    async def update_price(self, price_id: str, params: PriceUpdateParams) -> StripeDict:
        return await self._call(
            "POST /v1/prices/{id}", lambda: self._client.v1.prices.update_async(price_id, params)
        )

    # --- checkout, Payment Element, portal ----------------------------------------------------------
    async def create_checkout_session(
        self, params: CheckoutSessionCreateParams, *, idempotency_key: str | None = None
    ) -> StripeDict:
        options = {"idempotency_key": idempotency_key} if idempotency_key else {}
        return await self._call(
            "POST /v1/checkout/sessions",
            lambda: self._client.v1.checkout.sessions.create_async(params, options),  # type: ignore[arg-type]
        )

    async def create_subscription(
        self, params: SubscriptionCreateParams, *, idempotency_key: str
    ) -> StripeDict:
        return await self._call(
            "POST /v1/subscriptions",
            lambda: self._client.v1.subscriptions.create_async(params, {"idempotency_key": idempotency_key}),
        )

    async def create_portal_session(
        self, *, customer_id: str, return_url: str, add_card_then: str | None = None
    ) -> StripeDict:
        """The Billing Portal; with `add_card_then`, only its `payment_method_update` flow (the card
        becomes the customer's default), sending the person to that URL once it is added."""
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        if add_card_then is not None:
            params["flow_data"] = {
                "type": "payment_method_update",
                "after_completion": {"type": "redirect", "redirect": {"return_url": add_card_then}},
            }
        return await self._call(
            "POST /v1/billing_portal/sessions",
            lambda: self._client.v1.billing_portal.sessions.create_async(params),
        )

    # --- subscriptions -----------------------------------------------------------------------------
    async def retrieve_subscription(
        self, subscription_id: str, *, expand: list[str] | None = None
    ) -> StripeDict:
        """The subscription with its default payment method expanded (for brand and last 4)."""
        fields = expand or SUBSCRIPTION_DETAIL
        # A raw request: the hottest call (every webhook re-reads), and we only want Stripe's JSON, so
        # the SDK's object tree is not built just to be thrown away (a third of the call's CPU).
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}"
        return await self._expanding(
            RETRIEVE_SUBSCRIPTION,
            lambda expand: self._client.raw_request_async("get", path, **expand),
            fields,
        )

    async def change_price(
        self, subscription_id: str, *, item_id: str, price_id: str, proration_date: int
    ) -> StripeDict:
        """Move the subscription to `price_id`, invoicing the prorated difference now.

        `pending_if_incomplete`: if that payment fails, Stripe keeps the old plan instead of
        switching to a plan nobody paid for.
        """
        params: SubscriptionUpdateParams = {
            "items": [{"id": item_id, "price": price_id}],
            "proration_behavior": "always_invoice",
            "proration_date": proration_date,
            "payment_behavior": "pending_if_incomplete",
            "expand": SUBSCRIPTION_DETAIL,
        }
        return await self._call(
            "POST /v1/subscriptions/{id}",
            lambda: self._client.v1.subscriptions.update_async(subscription_id, params),
        )

    async def set_cancel_at_period_end(self, subscription_id: str, cancel: bool) -> StripeDict:
        params: SubscriptionUpdateParams = {
            "cancel_at_period_end": cancel,
            "expand": SUBSCRIPTION_DETAIL,
        }
        return await self._call(
            "POST /v1/subscriptions/{id}",
            lambda: self._client.v1.subscriptions.update_async(subscription_id, params),
        )

    async def set_default_payment_method(self, subscription_id: str, payment_method_id: str) -> StripeDict:
        params: SubscriptionUpdateParams = {
            "default_payment_method": payment_method_id,
            "expand": ["default_payment_method"],
        }
        return await self._call(
            "POST /v1/subscriptions/{id}",
            lambda: self._client.v1.subscriptions.update_async(subscription_id, params),
        )

    async def cancel_subscription(self, subscription_id: str, *, comment: str | None = None) -> StripeDict:
        """End the subscription now (no further invoices); Stripe keeps its history.

        Never `prorate`: Stripe would credit the unused time to the customer's balance, for a next invoice
        that may never come; money given back is a refund (`create_refund`), decided by the caller.
        """
        params: SubscriptionCancelParams = {"expand": SUBSCRIPTION_DETAIL}
        if comment:
            params["cancellation_details"] = {"comment": comment[:500]}
        return await self._call(
            "DELETE /v1/subscriptions/{id}",
            lambda: self._client.v1.subscriptions.cancel_async(subscription_id, params),
        )

    async def preview_price_change(
        self, *, customer_id: str, subscription_id: str, item_id: str, price_id: str, proration_date: int
    ) -> StripeDict:
        """The invoice `change_price` with the same arguments would create."""
        params: InvoiceCreatePreviewParams = {
            "customer": customer_id,
            "subscription": subscription_id,
            "subscription_details": {
                "items": [{"id": item_id, "price": price_id}],
                "proration_behavior": "always_invoice",
                "proration_date": proration_date,
            },
        }
        return await self._call(
            "POST /v1/invoices/create_preview", lambda: self._client.v1.invoices.create_preview_async(params)
        )

    async def iter_subscriptions(
        self, *, customer: str | None = None
    ) -> AsyncIterator[tuple[StripeDict, datetime]]:
        """Every subscription, ended ones included, each with the moment its page was requested: the
        vendor timestamp to store it under (see `mapping.py`), never a later one, because a page may
        wait a while before its last subscription is stored."""
        async for page, requested_at in self.iter_subscription_pages(customer=customer):
            for sub in page:
                yield sub, requested_at

    async def iter_subscription_pages(
        self, *, customer: str | None = None
    ) -> AsyncIterator[tuple[list[StripeDict], datetime]]:
        """Every subscription, ended ones included, a page of 100 at a time (each retried on 429), with
        the moment the page was requested.

        The next page is requested as soon as this one arrives, while the caller works on this one:
        a page's cursor is the previous page's last id, so pages can only be read one after another,
        and without the overlap a full sync would take the sum of the pacer's waits, Stripe's answer
        times and the caller's work instead of the larger of them.
        """
        params: SubscriptionListParams = {"status": "all", "limit": 100}
        if customer:
            params["customer"] = customer
        # The first page in this task: a slot the caller reserved (`Pacer.reserved`) is this task's.
        first: asyncio.Future[tuple[StripeDict, datetime]] = asyncio.get_running_loop().create_future()
        first.set_result(await self._subscriptions_page(params))
        pending = first
        try:
            while True:
                page, requested_at = await pending
                data: list[StripeDict] = page["data"]
                more = bool(page.get("has_more") and data)
                if more:
                    following: SubscriptionListParams = {**params, "starting_after": data[-1]["id"]}
                    pending = asyncio.ensure_future(self._subscriptions_page(following))
                yield data, requested_at
                if not more:
                    return
        finally:
            pending.cancel()
            if pending.done() and not pending.cancelled():
                pending.exception()  # a prefetch nobody will read: its error is not news

    async def _subscriptions_page(self, params: SubscriptionListParams) -> tuple[StripeDict, datetime]:
        requested_at = utcnow()
        # A raw request: the SDK's typed objects for a page of 100 cost three times the request's own
        # time here, and the JSON is all this needs.
        page = await self._expanding(
            LIST_SUBSCRIPTIONS,
            lambda expand: self._client.raw_request_async("get", "/v1/subscriptions", **params, **expand),
            [f"data.{path}" for path in SUBSCRIPTION_DETAIL],
        )
        return page, requested_at

    async def latest_payment_refunded(self, invoice_id: str) -> bool:
        """Whether the payment of `invoice_id` has been refunded in full."""
        page = await self._call(
            "GET /v1/invoice_payments",
            lambda: self._client.v1.invoice_payments.list_async(
                {"invoice": invoice_id, "expand": ["data.payment.payment_intent.latest_charge"]}
            ),
        )
        for payment in page["data"]:
            intent = (payment.get("payment") or {}).get("payment_intent")
            charge = intent.get("latest_charge") if isinstance(intent, dict) else None
            if isinstance(charge, dict) and charge.get("refunded"):
                return True
        return False

    # --- invoices and refunds -----------------------------------------------------------------------
    async def list_invoices(
        self, *, customer: str, limit: int, starting_after: str | None = None
    ) -> StripeDict:
        """One page of the customer's invoices, newest first (Stripe's list object, `has_more` included)."""
        params: dict[str, Any] = {"customer": customer, "limit": limit}
        if starting_after:
            params["starting_after"] = starting_after
        return await self._call(
            "GET /v1/invoices", lambda: self._client.raw_request_async("get", "/v1/invoices", **params)
        )

    async def last_paid_invoice(self, subscription_id: str) -> StripeDict | None:
        """The subscription's newest paid invoice, if any."""
        page = await self._call(
            "GET /v1/invoices",
            lambda: self._client.raw_request_async(
                "get", "/v1/invoices", subscription=subscription_id, status="paid", limit=1
            ),
        )
        data: list[StripeDict] = page.get("data") or []
        return data[0] if data else None

    async def retrieve_invoice(self, invoice_id: str) -> StripeDict:
        path = f"/v1/invoices/{quote(invoice_id, safe='')}"
        return await self._call("GET /v1/invoices/{id}", lambda: self._client.raw_request_async("get", path))

    async def invoice_payments(self, invoice_id: str) -> list[StripeDict]:
        """The invoice's payments (since API 2025-03-31 an invoice names no payment_intent of its own)."""
        page = await self._call(
            "GET /v1/invoice_payments",
            lambda: self._client.raw_request_async(
                "get", "/v1/invoice_payments", invoice=invoice_id, limit=100
            ),
        )
        return list(page.get("data") or [])

    async def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int | None,
        reason: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeDict:
        """Give back `amount` (all that is left when None) of the PaymentIntent's charge."""
        params: RefundCreateParams = {"payment_intent": payment_intent, "metadata": metadata}
        if amount is not None:
            params["amount"] = amount
        if reason is not None:
            params["reason"] = reason
        return await self._call(
            "POST /v1/refunds",
            lambda: self._client.v1.refunds.create_async(params, {"idempotency_key": idempotency_key}),
        )

    # --- one-time payments -------------------------------------------------------------------------
    async def create_payment_intent(
        self, params: PaymentIntentCreateParams, *, idempotency_key: str
    ) -> StripeDict:
        return await self._call(
            "POST /v1/payment_intents",
            lambda: self._client.v1.payment_intents.create_async(
                params, {"idempotency_key": idempotency_key}
            ),
        )

    async def create_tax_calculation(self, params: TaxCalculationCreateParams) -> StripeDict:
        """Stripe Tax for a PaymentIntent: the tax on what is bought, for the customer's address."""
        return await self._call(
            "POST /v1/tax/calculations", lambda: self._client.v1.tax.calculations.create_async(params)
        )

    async def retrieve_payment_intent(self, intent_id: str) -> StripeDict:
        """The PaymentIntent with its latest charge (amount refunded, refunds, disputed) expanded."""
        path = f"/v1/payment_intents/{quote(intent_id, safe='')}"
        return await self._expanding(
            RETRIEVE_PAYMENT_INTENT,
            lambda expand: self._client.raw_request_async("get", path, **expand),
            PAYMENT_INTENT_EXPAND,
        )

    async def list_payment_intents(
        self, *, created_since: int, customer: str | None = None
    ) -> list[StripeDict]:
        """PaymentIntents created since `created_since` (Unix time), the customer's or all, newest first."""
        found: list[StripeDict] = []
        params: dict[str, Any] = {"limit": 100, "created": {"gte": created_since}}
        if customer:
            params["customer"] = customer
        while True:
            page = await self._expanding(
                "GET /v1/payment_intents",
                lambda expand, params=params: self._client.raw_request_async(  # type: ignore[misc]
                    "get", "/v1/payment_intents", **params, **expand
                ),
                [f"data.{path}" for path in PAYMENT_INTENT_EXPAND],
            )
            data: list[StripeDict] = page.get("data") or []
            found.extend(data)
            if not page.get("has_more") or not data:
                return found
            params = {**params, "starting_after": data[-1]["id"]}

    async def disputes_of(self, intent_id: str) -> list[StripeDict]:
        """Every dispute of the PaymentIntent's charges, newest first."""
        page = await self._call(
            "GET /v1/disputes",
            lambda: self._client.raw_request_async(
                "get", "/v1/disputes", payment_intent=intent_id, limit=100
            ),
        )
        return list(page.get("data") or [])

    async def retrieve_checkout_session(self, session_id: str) -> StripeDict:
        path = f"/v1/checkout/sessions/{quote(session_id, safe='')}"
        return await self._call(
            "GET /v1/checkout/sessions/{id}", lambda: self._client.raw_request_async("get", path)
        )

    async def open_checkout_sessions(self, customer_id: str) -> list[StripeDict]:
        """The customer's Checkout Sessions a person could still pay (newest first, up to 100)."""
        page = await self._call(
            "GET /v1/checkout/sessions",
            lambda: self._client.v1.checkout.sessions.list_async(
                {"customer": customer_id, "status": "open", "limit": 100}
            ),
        )
        return [s for s in page["data"] if s.get("status") == "open"]

    async def expire_checkout_session(self, session_id: str) -> StripeDict:
        return await self._call(
            "POST /v1/checkout/sessions/{id}/expire",
            lambda: self._client.v1.checkout.sessions.expire_async(session_id),
        )

    # --- promotion codes ---------------------------------------------------------------------------
    async def promotion_codes(self, code: str) -> list[StripeDict]:
        """Every promotion code with this customer-facing `code` (Stripe matches it case-insensitively),
        active or not, newest first, each with its coupon expanded."""
        page = await self._call(
            "GET /v1/promotion_codes",
            lambda: self._client.raw_request_async(
                "get",
                "/v1/promotion_codes",
                code=code,
                limit=10,
                expand=[f"data.{path}" for path in PROMOTION_CODE_EXPAND],
            ),
        )
        return list(page.get("data") or [])

    # --- webhook endpoints -------------------------------------------------------------------------
    async def create_webhook_endpoint(self, *, url: str, events: list[str]) -> StripeDict:
        params: WebhookEndpointCreateParams = {
            "url": url,
            "enabled_events": events,  # type: ignore[typeddict-item]
            "api_version": STRIPE_API_VERSION,  # type: ignore[typeddict-item]
        }
        return await self._call(
            "POST /v1/webhook_endpoints", lambda: self._client.v1.webhook_endpoints.create_async(params)
        )

    async def list_webhook_endpoints(self) -> list[StripeDict]:
        page = await self._call(
            "GET /v1/webhook_endpoints",
            lambda: self._client.v1.webhook_endpoints.list_async({"limit": 100}),
        )
        return list(page.get("data", []))

    async def update_webhook_endpoint(
        self, endpoint_id: str, *, events: list[str] | None = None, metadata: dict[str, str] | None = None
    ) -> StripeDict:
        """Enable the endpoint, with `events` and `metadata` when given."""
        params: Any = {"disabled": False}
        if events is not None:
            params["enabled_events"] = events
        if metadata is not None:
            params["metadata"] = metadata
        return await self._call(
            "POST /v1/webhook_endpoints/{id}",
            lambda: self._client.v1.webhook_endpoints.update_async(endpoint_id, params),
        )

    async def delete_webhook_endpoint(self, endpoint_id: str) -> StripeDict:
        return await self._call(
            "DELETE /v1/webhook_endpoints/{id}",
            lambda: self._client.v1.webhook_endpoints.delete_async(endpoint_id),
        )

    # --- set-up checks -----------------------------------------------------------------------------
    async def retrieve_balance(self) -> StripeDict:
        """The account's balance: the cheapest read any secret key may make, and it says `livemode`."""
        return await self._call(
            "GET /v1/balance", lambda: self._client.raw_request_async("get", "/v1/balance")
        )

    async def first_of(self, path: str) -> StripeDict:
        """One object of the list at `path` (`/v1/customers`): proves this key may read that list."""
        return await self._call(f"GET {path}", lambda: self._client.raw_request_async("get", path, limit=1))

    async def create_test_customer(self, *, metadata: dict[str, str], idempotency_key: str) -> StripeDict:
        params: CustomerCreateParams = {"name": "entitle webhook test", "metadata": metadata}
        return await self._call(
            "POST /v1/customers",
            lambda: self._client.v1.customers.create_async(params, {"idempotency_key": idempotency_key}),
        )

    async def delete_customer(self, customer_id: str) -> StripeDict:
        return await self._call(
            "DELETE /v1/customers/{id}", lambda: self._client.v1.customers.delete_async(customer_id)
        )

    # --- the edge ----------------------------------------------------------------------------------
    async def _expanding(
        self, endpoint: str, request: Callable[[dict[str, Any]], Awaitable[Any]], expand: list[str]
    ) -> StripeDict:
        """Make a read with `expand`, or without it where the server refuses it.

        `expand` only adds detail (the card's brand and last 4); a Stripe-compatible server that
        rejects it must not stop a webhook from converging, so the plain read is the fallback.
        """
        try:
            return await self._call(endpoint, lambda: request({"expand": expand}))
        except ProviderUnavailable as exc:
            if exc.code != "stripe_rejected_request":
                raise
            return await self._call(endpoint, lambda: request({}))

    async def _call(self, endpoint: str, request: Callable[[], Awaitable[Any]]) -> StripeDict:
        """Make one SDK call when the pacer lets it go, retrying 429s, and return the JSON Stripe sent."""
        backed_off = 0.0
        for attempt in itertools.count():
            await self.pacer.acquire(endpoint)
            try:
                return _raw(await request())
            except stripe.RateLimitError as exc:
                delay = _retry_after(exc)
                if delay is None:
                    delay = retry_delay(attempt, base=self._backoff, cap=RATE_LIMIT_BACKOFF_CAP_SECONDS)
                # The retry itself waits in the pacer, behind this hold, with everyone else.
                self.pacer.back_off(endpoint, delay, account_wide=_account_wide(exc))
                backed_off += delay
                if backed_off > self._rate_limit_budget:
                    raise ProviderUnavailable(
                        "Stripe is rate-limiting this server; try again shortly.", code="stripe_rate_limited"
                    ) from exc
            except stripe.StripeError as exc:
                raise translate(exc) from exc
        raise AssertionError("unreachable")


def _retry_after(exc: stripe.StripeError) -> float | None:
    """Seconds from a `Retry-After` header; Stripe documents none, but a proxy or a future Stripe may."""
    try:
        return max(0.0, float((exc.headers or {}).get("retry-after", "")))
    except ValueError:
        return None


def _account_wide(exc: stripe.StripeError) -> bool:
    # `Stripe-Rate-Limited-Reason`: global-rate or global-concurrency for the account, endpoint-rate,
    # endpoint-concurrency or resource-specific for one endpoint or object.
    return str((exc.headers or {}).get("stripe-rate-limited-reason", "")).startswith("global")


class FormBodyHTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client, handing httpx the encoded form body as `content=`.

    The SDK passes its already-encoded body as `data=`, which httpx 0.28 deprecates for raw text.
    """

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Any, post_data: Any
    ) -> tuple[Any, Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if body:
            kwargs["content"] = body
        return args, kwargs


def _raw(obj: Any) -> StripeDict:
    if isinstance(obj, stripe.StripeResponse):
        parsed: StripeDict = json.loads(obj.body)
        return parsed
    response = getattr(obj, "last_response", None)
    if response is not None and isinstance(response.body, str):
        data: StripeDict = json.loads(response.body)
        return data
    converted: StripeDict = obj.to_dict(for_json=True)
    return converted


def translate(exc: stripe.StripeError) -> EntitleError:
    """The entitle error for a Stripe SDK error (the caller raises it `from exc`)."""
    message = exc.user_message or "Stripe refused the request."
    if isinstance(exc, stripe.CardError):
        return PaymentRequired(message, code=exc.code or "card_declined")
    if isinstance(exc, stripe.InvalidRequestError) and str(exc.param or "").startswith("discounts"):
        # A code that stopped applying between our check and Stripe's (its last redemption, its expiry).
        return InvalidRequest(f"This promotion code can't be used: {message}", code="invalid_promotion_code")
    if isinstance(exc, stripe.InvalidRequestError) and exc.code == "resource_missing":
        return StripeObjectMissing(message)
    if isinstance(exc, stripe.IdempotencyError):
        return Conflict(message, code="stripe_idempotency_conflict")
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        # Stripe's own sentence (the key masked, or the permission a restricted key lacks) is kept for
        # the operator's set-up page; callers that answer customers use the plain message.
        return StripeKeyRefused(
            "Stripe refused this server's API key.", reason=exc.user_message or str(exc) or None
        )
    if isinstance(exc, stripe.InvalidRequestError):
        return ProviderUnavailable(f"Stripe rejected a request: {message}", code="stripe_rejected_request")
    return ProviderUnavailable("Stripe did not answer; try again shortly.", code="stripe_unavailable")
