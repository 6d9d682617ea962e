"""The generic JWKS verifier: signatures, algorithm confusion, claims, caching and outages."""

from __future__ import annotations

import httpx
import pytest

from entitle.identity.errors import IdentityProviderUnavailable, InvalidIdentityToken
from entitle.identity.jwks import JwksVerifier, parse_jwks
from tests.identity.conftest import FakeClock
from tests.standins.jwks_server import (
    APPLE_BUNDLE_ID,
    APPLE_ISSUER,
    APPLE_SERVICES_ID,
    JwksStandin,
    forge_hs256,
    forge_unsigned,
    make_key,
)


def make_verifier(idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock, **kw: object) -> JwksVerifier:
    options: dict[str, object] = {
        "issuers": [APPLE_ISSUER],
        "audiences": [APPLE_BUNDLE_ID, APPLE_SERVICES_ID],
        "jwks_url": idp.url,
        "http": http,
        "clock": clock,
        "cache_ttl": 3600.0,
        "min_refresh_interval": 60.0,
        "leeway": 30.0,
    }
    options.update(kw)
    return JwksVerifier(**options)  # type: ignore[arg-type]


async def test_valid_token_returns_its_claims(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    claims = await verifier.verify(idp.apple_token(sub="abc", now=clock.now))
    assert claims["sub"] == "abc"
    assert claims["aud"] == APPLE_BUNDLE_ID


async def test_any_configured_audience_is_accepted(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    claims = await verifier.verify(idp.apple_token(aud=APPLE_SERVICES_ID, now=clock.now))
    assert claims["aud"] == APPLE_SERVICES_ID


async def test_signature_from_a_key_not_in_the_jwks_is_rejected(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    forger = make_key(kid=idp.current_key.kid)  # claims the real kid, signs with its own key
    with pytest.raises(InvalidIdentityToken) as caught:
        await verifier.verify(idp.apple_token(key=forger, now=clock.now))
    assert caught.value.code == "invalid_identity_token"
    assert caught.value.status_code == 401


async def test_tampered_payload_is_rejected(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    header, _, signature = idp.apple_token(sub="victim", now=clock.now).split(".")
    other_payload = idp.apple_token(sub="attacker", now=clock.now).split(".")[1]
    with pytest.raises(InvalidIdentityToken):
        await verifier.verify(f"{header}.{other_payload}.{signature}")


async def test_alg_none_is_rejected(idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(idp, http, clock)
    token = forge_unsigned(idp.apple_claims(now=clock.now), kid=idp.current_key.kid)
    with pytest.raises(InvalidIdentityToken):
        await verifier.verify(token)


async def test_hs256_keyed_with_the_public_key_is_rejected(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    claims = idp.apple_claims(now=clock.now)
    for secret in (idp.current_key.public_pem, str(idp.current_key.public_jwk).encode()):
        with pytest.raises(InvalidIdentityToken):
            await verifier.verify(forge_hs256(claims, kid=idp.current_key.kid, secret=secret))


async def test_wrong_audience_is_rejected(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    with pytest.raises(InvalidIdentityToken, match="another application"):
        await verifier.verify(idp.apple_token(aud="com.someone.else", now=clock.now))


async def test_audience_list_claim_needs_one_of_ours(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    with pytest.raises(InvalidIdentityToken):
        await verifier.verify(idp.apple_token(aud=["com.someone.else", "com.third"], now=clock.now))  # type: ignore[arg-type]
    claims = await verifier.verify(idp.apple_token(aud=["com.someone.else", APPLE_BUNDLE_ID], now=clock.now))  # type: ignore[arg-type]
    assert APPLE_BUNDLE_ID in claims["aud"]


async def test_wrong_issuer_is_rejected(idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(idp, http, clock)
    with pytest.raises(InvalidIdentityToken, match="issued by someone else"):
        await verifier.verify(idp.apple_token(iss="https://evil.example", now=clock.now))


async def test_expiry_allows_the_leeway_and_no_more(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock, leeway=30.0)
    token = idp.apple_token(now=clock.now, lifetime=600)
    clock.advance(600 + 29)
    assert (await verifier.verify(token))["sub"]
    clock.advance(2)
    with pytest.raises(InvalidIdentityToken, match="expired"):
        await verifier.verify(token)


async def test_token_issued_in_the_future_is_rejected(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock, leeway=30.0)
    with pytest.raises(InvalidIdentityToken, match="future"):
        await verifier.verify(idp.apple_token(now=clock.now + 120))


async def test_missing_exp_is_rejected_unless_allowed(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    claims = idp.apple_claims(now=clock.now)
    del claims["exp"]
    token = idp.sign(claims)
    with pytest.raises(InvalidIdentityToken, match="expiry"):
        await verifier.verify(token)
    assert (await verifier.verify(token, require_exp=False))["sub"] == claims["sub"]


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "...", "eyJhbGciOiJSUzI1NiJ9.e30."])
async def test_garbage_is_an_invalid_token_not_a_crash(
    token: str, idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    with pytest.raises(InvalidIdentityToken):
        await verifier.verify(token)


async def test_token_without_kid_is_rejected(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    import jwt

    verifier = make_verifier(idp, http, clock)
    token = jwt.encode(idp.apple_claims(now=clock.now), idp.current_key.private_key, algorithm="RS256")
    with pytest.raises(InvalidIdentityToken, match="signing key"):
        await verifier.verify(token)


async def test_keys_are_cached_until_the_ttl(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock, cache_ttl=3600.0)
    for _ in range(3):
        await verifier.verify(idp.apple_token(now=clock.now))
    assert idp.requests == 1
    clock.advance(3601)
    await verifier.verify(idp.apple_token(now=clock.now))
    assert idp.requests == 2


async def test_rotated_key_is_picked_up_with_one_refresh(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock)
    await verifier.verify(idp.apple_token(now=clock.now))
    clock.advance(61)
    idp.rotate()
    claims = await verifier.verify(idp.apple_token(sub="after-rotation", now=clock.now))
    assert claims["sub"] == "after-rotation"
    assert idp.requests == 2


async def test_unknown_kids_refresh_at_most_once_per_interval(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock, min_refresh_interval=60.0)
    await verifier.verify(idp.apple_token(now=clock.now))
    clock.advance(61)
    for n in range(20):
        with pytest.raises(InvalidIdentityToken, match="unknown key"):
            await verifier.verify(idp.sign(idp.apple_claims(now=clock.now), kid=f"junk-{n}"))
    assert idp.requests == 2  # the first fetch plus exactly one refresh for all twenty junk kids
    # A real rotation inside the quiet interval waits for it to pass, then is picked up.
    idp.rotate()
    token = idp.apple_token(now=clock.now)
    with pytest.raises(InvalidIdentityToken):
        await verifier.verify(token)
    clock.advance(61)
    assert (await verifier.verify(idp.apple_token(now=clock.now)))["sub"]
    assert idp.requests == 3


async def test_endpoint_answering_503_is_provider_unavailable(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    idp.status = 503
    verifier = make_verifier(idp, http, clock)
    with pytest.raises(IdentityProviderUnavailable) as caught:
        await verifier.verify(idp.apple_token(now=clock.now))
    assert caught.value.code == "identity_provider_unavailable"
    assert caught.value.status_code == 503


async def test_endpoint_not_listening_is_provider_unavailable(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    idp = JwksStandin().start()
    url = idp.url
    idp.stop()
    verifier = JwksVerifier(
        issuers=[APPLE_ISSUER], audiences=[APPLE_BUNDLE_ID], jwks_url=url, http=http, clock=clock
    )
    with pytest.raises(IdentityProviderUnavailable):
        await verifier.verify(idp.apple_token(now=clock.now))


async def test_outage_after_a_fetch_keeps_using_the_cached_keys(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock, cache_ttl=600.0)
    await verifier.verify(idp.apple_token(now=clock.now))
    idp.status = 500
    clock.advance(601)
    assert (await verifier.verify(idp.apple_token(now=clock.now)))["sub"]
    assert idp.requests == 2


async def test_a_failed_fetch_is_not_retried_within_the_interval(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    idp.status = 503
    verifier = make_verifier(idp, http, clock, min_refresh_interval=60.0)
    for _ in range(5):
        with pytest.raises(IdentityProviderUnavailable):
            await verifier.verify(idp.apple_token(now=clock.now))
    assert idp.requests == 1
    idp.status = 200
    clock.advance(61)
    assert (await verifier.verify(idp.apple_token(now=clock.now)))["sub"]


async def test_verifier_without_client_ids_refuses_with_a_clear_code(
    idp: JwksStandin, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(idp, http, clock, audiences=[])
    with pytest.raises(IdentityProviderUnavailable) as caught:
        await verifier.verify(idp.apple_token(now=clock.now))
    assert caught.value.code == "identity_provider_not_configured"
    assert idp.requests == 0


def test_parse_jwks_keeps_only_rs256_signing_keys() -> None:
    good = make_key(kid="good").public_jwk
    document = {
        "keys": [
            good,
            {**make_key(kid="enc").public_jwk, "use": "enc"},
            {**make_key(kid="ps").public_jwk, "alg": "PS256"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "x", "y": "y"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not-a-key",
        ]
    }
    assert set(parse_jwks(document)) == {"good"}
    with pytest.raises(IdentityProviderUnavailable):
        parse_jwks({"nope": []})
