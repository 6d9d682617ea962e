"""Page links: an app holding an access token opens a hosted page signed in, once, with no second sign-in."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from entitle.context import AppContext
from entitle.core.models.accounts import PageLink, RefreshTokenFamily
from entitle.db.types import utcnow
from entitle.providers.stripe.catalog_push import push_catalog
from entitle.services.identity.page_links import forget_old_links
from tests.factories import DEFAULT_PASSWORD, bearer, register
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_pages import sign_up, subscribed


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


async def link_for(http: httpx.AsyncClient, session: dict[str, Any], page: str = "account") -> str:
    """Ask for a page link as an app would; returns the path and query to open."""
    answer = await http.post("/v1/me/page-link", json={"page": page}, headers=bearer(session))
    assert answer.status_code == 200, answer.text
    url = urlsplit(answer.json()["url"])
    return f"{url.path}?{url.query}"


async def families(context: AppContext) -> list[RefreshTokenFamily]:
    async with context.database.sessionmaker() as db:
        rows = await db.scalars(select(RefreshTokenFamily).order_by(RefreshTokenFamily.created_at))
        return list(rows.all())


async def test_the_answer_is_a_60_second_link_kept_only_as_a_hash(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    session = await register(client, "pat@example.com")
    answer = await client.post("/v1/me/page-link", json={"page": "account"}, headers=bearer(session))
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"url", "expires_in"} and body["expires_in"] == 60
    url = urlsplit(body["url"])
    assert f"{url.scheme}://{url.netloc}" == context.settings.public_url.rstrip("/")
    assert url.path == "/account/open" and url.query.startswith("token=pl_")
    token = url.query.removeprefix("token=")

    async with context.database.sessionmaker() as db:
        [row] = (await db.scalars(select(PageLink))).all()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr({c.name: getattr(row, c.name) for c in PageLink.__table__.columns})
    assert str(row.account_id) == session["account"]["id"] and row.page == "account"
    assert row.expires_at - row.created_at == timedelta(seconds=60)


async def test_the_first_open_signs_the_browser_in_and_leaves_the_token_behind(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    session = await register(client, "pat@example.com")
    link = await link_for(client, session)
    opened = await client.get(link)
    assert (opened.status_code, opened.headers["location"]) == (303, "/account")
    assert opened.headers["cache-control"] == "no-store"
    page = await client.get("/account")
    assert page.status_code == 200 and "pat@example.com" in page.text
    # An ordinary page session of the token's account, beside the app's own.
    [app_session, page_session] = await families(context)
    assert str(page_session.account_id) == session["account"]["id"] and page_session.revoked_at is None
    assert app_session.revoked_at is None


async def test_a_link_opens_once_another_browser_lands_on_the_sign_in_page(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    session = await register(client, "pat@example.com")
    link = await link_for(client, session)
    assert (await client.get(link)).headers["location"] == "/account"
    # The browser it signed in may open it again (an app that opens twice): it stays on the page.
    assert (await client.get(link)).headers["location"] == "/account"

    client.cookies.clear()
    again = await client.get(link)
    assert again.headers["location"] == "/account/sign-in?next=%2Faccount&notice=page_link_used"
    sign_in = await client.get(again.headers["location"])
    assert sign_in.status_code == 200 and "already used" in sign_in.text
    assert (await client.get("/account")).headers["location"].startswith("/account/sign-in")
    assert len(await families(context)) == 2  # the app's and the first open's, no third


async def test_an_expired_or_unknown_link_signs_nobody_in(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    session = await register(client, "pat@example.com")
    link = await link_for(client, session)
    async with context.database.transaction() as db:
        await db.execute(update(PageLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = await client.get(link)
    assert expired.headers["location"] == "/account/sign-in?next=%2Faccount&notice=page_link_expired"
    assert "has expired" in (await client.get(expired.headers["location"])).text

    for token in ["pl_" + "A" * 43, "st_whatever", "", "pl_" + "x" * 500, "%ff"]:
        unknown = await client.get(f"/account/open?token={token}")
        assert unknown.headers["location"] == "/account/sign-in?next=%2Faccount&notice=invalid_page_link"
    # Text no database can store is refused before any lookup, as on every route: an error page.
    refused = await client.get("/account/open?token=%00%ff")
    assert refused.status_code == 422 and "text/html" in refused.headers["content-type"]
    assert (await client.get("/account/open")).status_code == 303
    assert "is not valid" in (await client.get(unknown.headers["location"])).text
    assert (await client.get("/account")).headers["location"].startswith("/account/sign-in")
    assert len(await families(context)) == 1


async def test_opening_a_link_replaces_another_persons_page_session(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    await sign_up(client, "bea@example.com")
    assert "bea@example.com" in (await client.get("/account")).text
    # The app asks over the API (no cookies involved); the link is opened in Bea's browser.
    pat = await register(client, "pat@example.com")
    link = await link_for(client, pat)

    assert (await client.get(link)).headers["location"] == "/account"
    page = await client.get("/account")
    assert "pat@example.com" in page.text and "bea@example.com" not in page.text
    bea_session = next(f for f in await families(context) if str(f.account_id) != pat["account"]["id"])
    assert bea_session.revoked_reason == "replaced_by_page_link"


async def test_a_spent_link_of_another_account_signs_out_whoever_the_browser_had(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    pat = await register(client, "pat@example.com")
    link = await link_for(client, pat)
    async with context.database.transaction() as db:
        await db.execute(update(PageLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    await sign_up(client, "bea@example.com")
    refused = await client.get(link)
    assert refused.headers["location"].startswith("/account/sign-in?")
    # The app meant Pat: the page must not go on showing Bea's account.
    assert (await client.get("/account")).headers["location"].startswith("/account/sign-in")
    bea_session = [family for family in await families(context) if family.revoked_reason]
    assert [family.revoked_reason for family in bea_session] == ["replaced_by_page_link"]


async def test_a_link_nobody_issued_leaves_the_browser_signed_in(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    # Any site can send a visitor to /account/open with a made-up token: that must not sign them out.
    await sign_up(client, "bea@example.com")
    refused = await client.get("/account/open?token=pl_" + "B" * 43)
    assert refused.headers["location"].startswith("/account/sign-in?")
    assert (await client.get(refused.headers["location"])).headers["location"] == "/account"
    assert "bea@example.com" in (await client.get("/account")).text
    [bea_session] = await families(context)
    assert bea_session.revoked_at is None


async def test_the_pricing_and_billing_pages(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    await push_catalog(context.providers["stripe"].gateway, context.catalog)
    await subscribed(client, standin)  # pat@example.com pays on the pages
    client.cookies.clear()
    credentials = {"email": "pat@example.com", "password": DEFAULT_PASSWORD}
    session = (await client.post("/v1/auth/login", json=credentials)).json()
    assert (await client.get(await link_for(client, session, "pricing"))).headers["location"] == "/pricing"
    client.cookies.clear()
    portal = await client.get(await link_for(client, session, "billing"))
    assert portal.headers["location"].startswith("https://billing.stripe.com/")
    # Back from Stripe, the account page is signed in.
    assert "pat@example.com" in (await client.get("/account")).text

    # No Stripe customer yet: signed in, on the account page, told why.
    client.cookies.clear()
    bea = await register(client, "bea@example.com")
    nothing = await client.get(await link_for(client, bea, "billing"))
    assert nothing.headers["location"] == "/account?notice=billing_unavailable"
    page = await client.get(nothing.headers["location"])
    assert "Billing could not be opened" in page.text and "bea@example.com" in page.text


async def test_unknown_page_unknown_field_and_no_token(client: httpx.AsyncClient) -> None:
    session = await register(client, "pat@example.com")
    unknown = await client.post("/v1/me/page-link", json={"page": "admin"}, headers=bearer(session))
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_request"
    assert "page" in unknown.json()["error"]["message"]
    extra = await client.post(
        "/v1/me/page-link", json={"page": "account", "next": "/admin"}, headers=bearer(session)
    )
    assert extra.status_code == 422
    anonymous = await client.post("/v1/me/page-link", json={"page": "account"})
    assert anonymous.status_code == 401
    forged = await client.post("/v1/me/page-link", json={"page": "account"}, headers=bearer("nope"))
    assert forged.status_code == 401


async def test_unused_links_per_account_are_bounded(client: httpx.AsyncClient) -> None:
    session = await register(client, "pat@example.com")
    for _ in range(10):
        await link_for(client, session)
    more = await client.post("/v1/me/page-link", json={"page": "account"}, headers=bearer(session))
    assert more.status_code == 429 and "retry-after" in more.headers
    # Another account is not held back by this one.
    other = await register(client, "bea@example.com")
    await link_for(client, other)


async def test_a_link_of_a_deleted_account_opens_nothing(client: httpx.AsyncClient) -> None:
    session = await register(client, "pat@example.com")
    link = await link_for(client, session)
    assert (await client.delete("/v1/me", headers=bearer(session))).status_code == 204
    refused = await client.get(link)
    assert refused.headers["location"].startswith("/account/sign-in?")
    assert (await client.get("/account")).status_code == 303


async def test_old_links_are_forgotten(client: httpx.AsyncClient, context: AppContext) -> None:
    session = await register(client, "pat@example.com")
    await link_for(client, session)
    await link_for(client, session)
    async with context.database.transaction() as db:
        await db.execute(update(PageLink).values(expires_at=utcnow() - timedelta(minutes=5)))
    await link_for(client, session)
    async with context.database.transaction() as db:
        assert await forget_old_links(db) == 2
    async with context.database.sessionmaker() as db:
        assert len((await db.scalars(select(PageLink))).all()) == 1
