"""Sign in with Apple identity tokens and server-to-server notifications, against a live JWKS stand-in."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from entitle.identity import AppleIdentityVerifier, AppleNotificationType, VerifiedIdentity
from entitle.identity.errors import IdentityProviderUnavailable, InvalidIdentityToken
from tests.identity.conftest import FakeClock
from tests.standins.jwks_server import (
    APPLE_BUNDLE_ID,
    APPLE_SERVICES_ID,
    GOOGLE_ISSUER,
    GOOGLE_WEB_CLIENT_ID,
    JwksStandin,
    forge_hs256,
    make_key,
)


@pytest.fixture
def apple(idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock) -> AppleIdentityVerifier:
    return AppleIdentityVerifier(
        client_ids=[APPLE_BUNDLE_ID, APPLE_SERVICES_ID], jwks_url=idp.url, http=http, clock=clock
    )


async def test_ios_token_gives_the_verified_identity(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    token = idp.apple_token(sub="001.abc.2", email="Pat@Example.com", now=clock.now)
    assert await apple.verify(token) == VerifiedIdentity(
        provider="apple",
        subject="001.abc.2",
        # Read as a typed address is: checked and lower-cased.
        email="pat@example.com",
        email_verified=True,
        is_private_relay=False,
        issued_at=float(int(clock.now)),
        audience="com.example.entitle",
    )


async def test_web_token_with_the_services_id_is_accepted(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    identity = await apple.verify(idp.apple_token(aud=APPLE_SERVICES_ID, now=clock.now))
    assert identity.provider == "apple"


@pytest.mark.parametrize(
    ("claim", "expected"), [("true", True), (True, True), ("false", False), (False, False), ("yes", False)]
)
async def test_email_verified_as_string_or_bool(
    claim: object, expected: bool, apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    identity = await apple.verify(idp.apple_token(email_verified=claim, now=clock.now))
    assert identity.email_verified is expected


async def test_private_relay_by_claim_and_by_domain(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    relay = "x7y2k9q4@privaterelay.appleid.com"
    by_claim = await apple.verify(idp.apple_token(email=relay, is_private_email="true", now=clock.now))
    by_bool = await apple.verify(idp.apple_token(email=relay, is_private_email=True, now=clock.now))
    claims = idp.apple_claims(email=relay, now=clock.now)
    del claims["is_private_email"]
    by_domain = await apple.verify(idp.sign(claims))
    assert by_claim.is_private_relay and by_bool.is_private_relay and by_domain.is_private_relay
    real = await apple.verify(idp.apple_token(email="pat@example.com", now=clock.now))
    assert not real.is_private_relay


async def test_token_without_email_has_none(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    identity = await apple.verify(idp.apple_token(email=None, now=clock.now))
    assert identity.email is None and identity.email_verified is False


async def test_raw_and_hashed_nonce_are_both_accepted(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    raw = "n-0S6_WzA2Mj"
    hashed = hashlib.sha256(raw.encode()).hexdigest()
    assert (await apple.verify(idp.apple_token(nonce=raw, now=clock.now), nonce=raw)).subject
    assert (await apple.verify(idp.apple_token(nonce=hashed, now=clock.now), nonce=raw)).subject


async def test_nonce_mismatch_is_rejected(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    raw = "expected-nonce"
    for claimed in (
        "other-nonce",
        hashlib.sha256(b"other-nonce").hexdigest(),
        hashlib.sha256(raw.encode()).hexdigest()[:-1],
    ):
        with pytest.raises(InvalidIdentityToken, match="nonce"):
            await apple.verify(idp.apple_token(nonce=claimed, now=clock.now), nonce=raw)


async def test_missing_nonce_is_rejected_where_apple_supports_nonces(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    with pytest.raises(InvalidIdentityToken, match="nonce"):
        await apple.verify(idp.apple_token(now=clock.now), nonce="abc")
    unsupported = idp.apple_token(nonce_supported=False, now=clock.now)
    assert (await apple.verify(unsupported, nonce="abc")).subject


async def test_forged_signature_is_rejected(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    with pytest.raises(InvalidIdentityToken):
        await apple.verify(idp.apple_token(key=make_key(kid=idp.current_key.kid), now=clock.now))


async def test_hs256_with_apples_public_key_is_rejected(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    token = forge_hs256(
        idp.apple_claims(now=clock.now), kid=idp.current_key.kid, secret=idp.current_key.public_pem
    )
    with pytest.raises(InvalidIdentityToken):
        await apple.verify(token)


async def test_google_token_is_not_an_apple_token(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    with pytest.raises(InvalidIdentityToken):
        await apple.verify(idp.google_token(now=clock.now))
    with pytest.raises(InvalidIdentityToken, match="issued by someone else"):
        await apple.verify(idp.apple_token(iss=GOOGLE_ISSUER, now=clock.now))
    with pytest.raises(InvalidIdentityToken, match="another application"):
        await apple.verify(idp.apple_token(aud=GOOGLE_WEB_CLIENT_ID, now=clock.now))


async def test_expired_token_is_rejected(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    token = idp.apple_token(now=clock.now, lifetime=600)
    clock.advance(3600)
    with pytest.raises(InvalidIdentityToken, match="expired"):
        await apple.verify(token)


async def test_jwks_down_is_a_503(apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock) -> None:
    idp.status = 502
    with pytest.raises(IdentityProviderUnavailable) as caught:
        await apple.verify(idp.apple_token(now=clock.now))
    assert (caught.value.code, caught.value.status_code) == ("identity_provider_unavailable", 503)


@pytest.mark.parametrize("kind", list(AppleNotificationType))
async def test_notification_of_each_type(
    kind: AppleNotificationType, apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    payload = idp.apple_notification(
        kind.value, sub="001.abc.2", email="r@privaterelay.appleid.com", jti="jti-1", now=clock.now
    )
    notification = await apple.verify_notification(payload)
    assert (notification.event_id, notification.type, notification.subject) == ("jti-1", kind, "001.abc.2")
    assert notification.email == "r@privaterelay.appleid.com" and notification.is_private_email


async def test_forged_notification_is_rejected(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    payload = idp.apple_notification("account-delete", key=make_key(kid=idp.current_key.kid), now=clock.now)
    with pytest.raises(InvalidIdentityToken):
        await apple.verify_notification(payload)


async def test_notification_for_another_app_is_rejected(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    with pytest.raises(InvalidIdentityToken):
        await apple.verify_notification(
            idp.apple_notification("consent-revoked", aud="com.other", now=clock.now)
        )


@pytest.mark.parametrize(
    "events",
    [
        "{not json",
        json.dumps({"type": "password-changed", "sub": "x"}),
        json.dumps({"type": "consent-revoked"}),
        7,
    ],
)
async def test_malformed_notification_events_are_rejected(
    events: object, apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    claims = {"iss": "https://appleid.apple.com", "aud": APPLE_BUNDLE_ID, "iat": int(clock.now), "jti": "j"}
    claims["events"] = events  # type: ignore[assignment]
    with pytest.raises(InvalidIdentityToken):
        await apple.verify_notification(idp.sign(claims))


async def test_notification_events_as_an_object_are_tolerated(
    apple: AppleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    claims = {
        "iss": "https://appleid.apple.com",
        "aud": APPLE_SERVICES_ID,
        "iat": int(clock.now),
        "events": {
            "type": "email-enabled",
            "sub": "s1",
            "email": "a@example.com",
            "is_private_email": "false",
        },
    }
    notification = await apple.verify_notification(idp.sign(claims))
    assert notification.type is AppleNotificationType.EMAIL_ENABLED and not notification.is_private_email
    assert len(notification.event_id) == 64  # no jti: a stable digest of the payload stands in
