"""Google ID tokens against a live JWKS stand-in."""

from __future__ import annotations

import httpx
import pytest

from entitle.identity import GoogleIdentityVerifier, VerifiedIdentity
from entitle.identity.errors import IdentityProviderUnavailable, InvalidIdentityToken
from tests.identity.conftest import FakeClock
from tests.standins.jwks_server import (
    APPLE_BUNDLE_ID,
    GOOGLE_IOS_CLIENT_ID,
    GOOGLE_WEB_CLIENT_ID,
    JwksStandin,
    forge_hs256,
    forge_unsigned,
    make_key,
)


@pytest.fixture
def google(idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock) -> GoogleIdentityVerifier:
    return GoogleIdentityVerifier(
        client_ids=[GOOGLE_WEB_CLIENT_ID, GOOGLE_IOS_CLIENT_ID], jwks_url=idp.url, http=http, clock=clock
    )


async def test_valid_token_gives_the_verified_identity(
    google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    token = idp.google_token(sub="1101", email="pat@gmail.com", name="Pat Person", now=clock.now)
    assert await google.verify(token) == VerifiedIdentity(
        provider="google",
        subject="1101",
        email="pat@gmail.com",
        email_verified=True,
        is_private_relay=False,
        name="Pat Person",
        issued_at=float(int(clock.now)),
        audience=GOOGLE_WEB_CLIENT_ID,
    )


@pytest.mark.parametrize("issuer", ["https://accounts.google.com", "accounts.google.com"])
async def test_both_google_issuers_are_accepted(
    issuer: str, google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    assert (await google.verify(idp.google_token(iss=issuer, now=clock.now))).provider == "google"


async def test_ios_client_id_is_an_accepted_audience(
    google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    assert (await google.verify(idp.google_token(aud=GOOGLE_IOS_CLIENT_ID, now=clock.now))).subject


@pytest.mark.parametrize(("claim", "expected"), [(True, True), ("true", True), (False, False), (None, False)])
async def test_email_is_trusted_only_when_verified(
    claim: object, expected: bool, google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    claims = idp.google_claims(email_verified=claim, now=clock.now)
    if claim is None:
        del claims["email_verified"]
    identity = await google.verify(idp.sign(claims))
    assert identity.email == "person@gmail.com"
    assert identity.email_verified is expected


async def test_wrong_audience_is_rejected(
    google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    for aud in ("999-other.apps.googleusercontent.com", APPLE_BUNDLE_ID):
        with pytest.raises(InvalidIdentityToken, match="another application"):
            await google.verify(idp.google_token(aud=aud, now=clock.now))


async def test_wrong_issuer_is_rejected(
    google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    for issuer in (
        "https://appleid.apple.com",
        "https://accounts.google.com.evil.example",
        "http://accounts.google.com",
    ):
        with pytest.raises(InvalidIdentityToken, match="issued by someone else"):
            await google.verify(idp.google_token(iss=issuer, now=clock.now))


async def test_forged_and_unsigned_tokens_are_rejected(
    google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    claims = idp.google_claims(now=clock.now)
    kid = idp.current_key.kid
    forgeries = [
        idp.sign(claims, key=make_key(kid=kid)),
        forge_unsigned(claims, kid=kid),
        forge_hs256(claims, kid=kid, secret=idp.current_key.public_pem),
    ]
    for token in forgeries:
        with pytest.raises(InvalidIdentityToken):
            await google.verify(token)


async def test_expired_token_is_rejected(
    google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    token = idp.google_token(now=clock.now, lifetime=3600)
    clock.advance(3600 + 120)
    with pytest.raises(InvalidIdentityToken, match="expired"):
        await google.verify(token)


async def test_nonce_when_given_must_match(
    google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    assert (await google.verify(idp.google_token(nonce="n1", now=clock.now), nonce="n1")).subject
    with pytest.raises(InvalidIdentityToken, match="nonce"):
        await google.verify(idp.google_token(nonce="n2", now=clock.now), nonce="n1")
    with pytest.raises(InvalidIdentityToken, match="nonce"):
        await google.verify(idp.google_token(now=clock.now), nonce="n1")


async def test_rotated_google_key_verifies_after_one_refresh(
    google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock
) -> None:
    await google.verify(idp.google_token(now=clock.now))
    clock.advance(120)
    idp.rotate(keep_old=True)
    assert (await google.verify(idp.google_token(now=clock.now))).subject
    assert idp.requests == 2


async def test_jwks_down_is_a_503(google: GoogleIdentityVerifier, idp: JwksStandin, clock: FakeClock) -> None:
    idp.status = 503
    with pytest.raises(IdentityProviderUnavailable) as caught:
        await google.verify(idp.google_token(now=clock.now))
    assert caught.value.status_code == 503
