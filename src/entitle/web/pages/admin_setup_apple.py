"""/admin/setup's proving buttons for the App Store, Sign in with Apple, Google sign-in and mail cards.

Each action runs its check (services/setup/*_setup.py) and answers the set-up page with the card showing
what the vendor said; nothing is saved by a check. The App Store's test notification is the exception
that lasts: it arrives at /webhooks/appstore and is stored in the inbox, so the card keeps showing when.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Account
from entitle.db.types import utcnow
from entitle.services.setup import appstore_setup, mail_setup, signin_setup
from entitle.services.setup.cards import Card
from entitle.web.deps import SessionDep
from entitle.web.pages.admin import _operator
from entitle.web.pages.admin_setup import _setup_page
from entitle.web.pages.forms import read_form
from entitle.web.pages.visits import PageVisit, Visit

router = APIRouter(prefix="/admin/setup", include_in_schema=False)

NO_KEY = "Save the In-App Purchase key (issuer id, key id and the .p8 key's text) first."


async def _signed_in(request: Request, visit: PageVisit, db: AsyncSession) -> Account | Response:
    # Checks send requests to vendors: a form post with the page's CSRF token, from an operator only.
    await read_form(request, visit)
    return await _operator(visit, db, request)


async def _failing_app_store(db: AsyncSession, visit: PageVisit, sentence: str) -> Card:
    card = await appstore_setup.card(db, visit.context)
    return Card(card.key, card.title, "failing", sentence, card.fields, utcnow())


@router.post("/app_store/check")
async def check_app_store(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _signed_in(request, visit, db)
    if isinstance(operator, Response):
        return operator
    key = appstore_setup.configured_key(visit.context)
    if key is None:
        card = await _failing_app_store(db, visit, NO_KEY)
    else:
        checked = await appstore_setup.check(visit.context, key)
        card = await appstore_setup.card(db, visit.context, checked=checked)
    return await _setup_page(visit, request, db, checked=card)


@router.post("/app_store/test-notification")
async def request_test_notification(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _signed_in(request, visit, db)
    if isinstance(operator, Response):
        return operator
    key = appstore_setup.configured_key(visit.context)
    if key is None:
        return await _setup_page(visit, request, db, checked=await _failing_app_store(db, visit, NO_KEY))
    requested = await appstore_setup.request_test_notification(visit.context, key)
    if requested.token is None:
        return await _setup_page(
            visit, request, db, checked=await _failing_app_store(db, visit, requested.sentence)
        )
    status = await appstore_setup.test_notification_status(visit.context, key, requested.token)
    return await _setup_page(visit, request, db, notice=f"{requested.sentence} {status}")


async def _check_sign_in(
    request: Request, visit: PageVisit, db: AsyncSession, provider: signin_setup.Provider
) -> Response:
    operator = await _signed_in(request, visit, db)
    if isinstance(operator, Response):
        return operator
    checked = await signin_setup.check(visit.context, provider)
    return await _setup_page(
        visit, request, db, checked=await signin_setup.card(db, visit.context, provider, checked=checked)
    )


@router.post("/apple_signin/check")
async def check_apple_signin(request: Request, visit: Visit, db: SessionDep) -> Response:
    return await _check_sign_in(request, visit, db, "apple")


@router.post("/google_signin/check")
async def check_google_signin(request: Request, visit: Visit, db: SessionDep) -> Response:
    return await _check_sign_in(request, visit, db, "google")


@router.post("/mail/test")
async def send_test_mail(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _signed_in(request, visit, db)
    if isinstance(operator, Response):
        return operator
    base = await mail_setup.card(db, visit.context)
    if operator.email is None:
        card = Card(
            base.key, base.title, "failing", "Your operator account has no email address.", base.fields
        )
        return await _setup_page(visit, request, db, checked=card)
    checked = await mail_setup.send_test_mail(visit.context, operator.email)
    return await _setup_page(
        visit, request, db, checked=await mail_setup.card(db, visit.context, checked=checked)
    )
