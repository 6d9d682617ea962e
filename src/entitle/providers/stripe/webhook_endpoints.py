"""The one Stripe webhook endpoint entitle registers for its URL, made or found here for every caller.

Stripe shows an endpoint's signing secret once, in the answer that creates it, and its API offers no
way to read or roll it later (the Dashboard's "Roll secret" has no API). So each endpoint entitle
creates carries, in its metadata, a fingerprint of its secret (the first 16 hex digits of its SHA-256:
it identifies a secret without revealing it). A later run reuses an endpoint for the URL when that
fingerprint matches a secret this server already has, updating its events to exactly the handled ones.
Otherwise the secret is unknown, and:
- `recreate_unknown=True` (the set-up page, which saves the secret it gets back): a new endpoint is
  created first and every other endpoint for the URL is deleted after, so no event falls in a gap and
  none keeps arriving signed with a secret nobody has;
- `recreate_unknown=False` (`entitle doctor --create-stripe-webhook`, whose secret lives in the
  environment the operator edits): the endpoint is reused as it always was, its secret unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from entitle.providers.stripe.client import StripeDict, StripeGateway

# Metadata key on endpoints entitle creates.
FINGERPRINT_KEY = "entitle_secret_sha256"
# Metadata key on the throwaway customer whose deletion is the set-up page's test event.
TEST_EVENT_KEY = "entitle_webhook_test"


def fingerprint(secret: str) -> str:
    """A short, one-way name for a signing secret, safe to store at Stripe."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EndpointResult:
    endpoint_id: str
    url: str
    # created: none pointed at the URL; reused: kept (events updated); recreated: replaced one whose
    # secret this server did not have.
    action: Literal["created", "reused", "recreated"]
    # The new signing secret (`whsec_...`) when created or recreated; None when reused.
    secret: str | None
    enabled_events: tuple[str, ...]


async def ensure_webhook_endpoint(
    gateway: StripeGateway,
    *,
    url: str,
    events: Sequence[str],
    known_secrets: Sequence[str] = (),
    recreate_unknown: bool = False,
) -> EndpointResult:
    """The endpoint for `url` listening to exactly `events`, created only if none can be reused."""
    wanted = list(events)
    known = {fingerprint(secret) for secret in known_secrets}
    same_url = [e for e in await gateway.list_webhook_endpoints() if e.get("url") == url]
    ours = next((e for e in same_url if (e.get("metadata") or {}).get(FINGERPRINT_KEY) in known), None)
    if ours is None and same_url and not recreate_unknown:
        ours = same_url[0]
    if ours is not None:
        updated = await gateway.update_webhook_endpoint(str(ours["id"]), events=wanted)
        return _result(updated, "reused", None)
    created = await gateway.create_webhook_endpoint(url=url, events=wanted)
    secret = str(created["secret"])
    # The secret exists only once Stripe answers, so its fingerprint is a second call.
    tagged = await gateway.update_webhook_endpoint(
        str(created["id"]), metadata={FINGERPRINT_KEY: fingerprint(secret)}
    )
    for stale in same_url:
        await gateway.delete_webhook_endpoint(str(stale["id"]))
    return _result(tagged, "recreated" if same_url else "created", secret)


def _result(
    endpoint: StripeDict, action: Literal["created", "reused", "recreated"], secret: str | None
) -> EndpointResult:
    return EndpointResult(
        endpoint_id=str(endpoint["id"]),
        url=str(endpoint.get("url")),
        action=action,
        secret=secret,
        enabled_events=tuple(endpoint.get("enabled_events") or ()),
    )
