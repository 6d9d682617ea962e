"""/admin/setup: one card per integration, what to paste into it, and the first run's operator.

Saving a card writes the runtime settings (services.setup.runtime_settings) and the operator's action to
their own account's event log, like every dashboard action; every process applies the change at once. A
secret is never sent back to the browser: its input stays empty and the card says it is saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Account
from entitle.errors import EntitleError, NotFound
from entitle.services.identity import operators
from entitle.services.setup import first_run
from entitle.services.setup.cards import Card
from entitle.services.setup.page_cards import PAGE_CARDS
from entitle.services.setup.runtime_settings import (
    MULTILINE_SETTINGS,
    RUNTIME_SETTINGS,
    SECRET_SETTINGS,
    Source,
    reload_settings,
    save_settings,
    source_of,
)
from entitle.web.deps import SessionDep
from entitle.web.pages import admin_setup_alerts, sign_in_state
from entitle.web.pages.admin import _operator
from entitle.web.pages.forms import checked, read_form
from entitle.web.pages.rendering import redirect, render
from entitle.web.pages.sentences import customer_sentence
from entitle.web.pages.visits import PageVisit, Visit, cookie_name_for, start_page_session
from entitle.web.schemas import Credentials

router = APIRouter(prefix="/admin", include_in_schema=False)

# What each setting is called on the page, and where to find it.
LABELS: dict[str, tuple[str, str]] = {
    "stripe_secret_key": ("Secret key", "sk_test_… or sk_live_… (or a restricted rk_ key)"),
    "stripe_publishable_key": ("Publishable key", "pk_test_… or pk_live_…"),
    "stripe_webhook_secret": ("Webhook signing secret", "whsec_…; several comma-separated while rotating"),
    "apple_bundle_id": ("Bundle id", "com.example.app"),
    "apple_app_id": ("Apple id of the app", "the number in App Store Connect (needed for Production)"),
    "apple_issuer_id": ("In-App Purchase key issuer id", "App Store Connect, Users and Access, Keys"),
    "apple_key_id": ("In-App Purchase key id", "10 characters"),
    "apple_private_key": ("In-App Purchase key", "paste the whole AuthKey_….p8 file"),
    "apple_signin_client_ids": (
        "Client ids",
        "the app's bundle id and the web's Services ID, comma-separated",
    ),
    "apple_signin_web_client_id": ("Web Services ID", "for the hosted pages' button"),
    "apple_signin_team_id": ("Team id", "10 characters"),
    "apple_signin_key_id": ("Sign in with Apple key id", "10 characters"),
    "apple_signin_private_key": ("Sign in with Apple key", "paste the whole AuthKey_….p8 file"),
    "google_client_ids": ("Client ids", "OAuth client ids (iOS, web), comma-separated"),
    "google_web_client_id": ("Web client id", "for the hosted pages' button"),
    "smtp_url": ("SMTP server", "smtp://user:pass@host:587 or smtps://user:pass@host:465"),
    "email_from": ("From", "Example <no-reply@example.com>"),
    "alert_webhook_url": ("Chat webhook URL", "a Slack-compatible incoming webhook"),
    "team_channel_url": (
        "Team channel URL",
        "a Slack-compatible incoming webhook told of the business's moments",
    ),
    "team_channel_events": (
        "Moments the team channel hears of",
        "new_subscriber, cancellation, refund, billing_problem; comma-separated",
    ),
}
NOTICES = {
    "saved": "Saved; every server process uses it now.",
    "stripe_connected": "Connected: Stripe sends its events here, and the catalog is pushed.",
    "stripe_test_event": "Stripe is sending a test event; the card shows when it arrives.",
    **admin_setup_alerts.NOTICES,
}


@dataclass(frozen=True)
class Action:
    """A button under a set card that proves it works (a POST to `path`, see admin_setup_apple.py)."""

    path: str
    label: str
    # The button's id; by default made from the path.
    id: str | None = None


ACTIONS: dict[str, list[Action]] = {
    "app_store": [
        Action("/admin/setup/app_store/check", "Check the key with Apple"),
        Action("/admin/setup/app_store/test-notification", "Request a test notification"),
    ],
    "apple_signin": [Action("/admin/setup/apple_signin/check", "Fetch Apple's keys")],
    "google_signin": [Action("/admin/setup/google_signin/check", "Fetch Google's keys")],
    "mail": [Action("/admin/setup/mail/test", "Send me a test mail")],
    # Alerts and outbound webhooks prove themselves with a test message (web/pages/admin_setup_alerts.py).
    **{
        key: [Action(path, label, id=f"test-{key}")]
        for key, (path, label) in admin_setup_alerts.ACTIONS.items()
    },
}


@dataclass(frozen=True)
class FieldView:
    name: str
    label: str
    hint: str
    secret: bool
    # Pasted whole, in a textarea (a .p8 key).
    multiline: bool
    source: Source
    # A non-secret's current value (to edit); never a secret's.
    value: str


def _value(visit: PageVisit, name: str) -> str:
    if name in SECRET_SETTINGS:
        return ""
    value = getattr(visit.context.settings, name)
    if value is None:
        return ""
    return ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)


def _fields(visit: PageVisit, card: Card) -> list[FieldView]:
    views = []
    for name in card.fields:
        if name not in RUNTIME_SETTINGS:
            continue
        label, hint = LABELS.get(name, (name.replace("_", " ").capitalize(), ""))
        views.append(
            FieldView(
                name=name,
                label=label,
                hint=hint,
                secret=name in SECRET_SETTINGS,
                multiline=name in MULTILINE_SETTINGS,
                source=source_of(visit.context, name),
                value=_value(visit, name),
            )
        )
    return views


async def _setup_page(
    visit: PageVisit,
    request: Request,
    db: AsyncSession,
    *,
    error: str | None = None,
    failed: str | None = None,
    status: int = 200,
    checked: Card | None = None,
    notice: str | None = None,
) -> Response:
    """The page; `checked` is a card just proven (or refused) by an action, shown in place of its own."""
    cards = []
    for key, source in PAGE_CARDS.items():
        card = checked if checked is not None and checked.key == key else await source(db, visit.context)
        cards.append((card, _fields(visit, card)))
    return render(
        visit,
        "admin/setup.html",
        status=status,
        notice=notice or NOTICES.get(request.query_params.get("notice", "")),
        cards=cards,
        # Each card's proving buttons, and the production checklist (web/pages/admin_setup_alerts.py).
        actions=ACTIONS,
        **await admin_setup_alerts.checklist_values(visit, db),
        error=error,
        failed=failed,
    )


@router.get("/setup")
async def setup(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    return await _setup_page(visit, request, db)


@router.post("/setup/{key}")
async def save_card(key: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    """Save the settings one card asks for (audited); blank secrets keep what is saved."""
    fields = await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    source = PAGE_CARDS.get(key)
    if source is None:
        raise NotFound("There is no such card.", code="card_not_found")
    card = await source(db, visit.context)
    values = _posted(visit, card, fields)
    try:
        if values:
            await save_settings(db, visit.context, values, by=operators.operator_label(operator))
            await _audit(db, operator, key, values)
            await db.commit()
    except EntitleError as exc:
        await db.rollback()
        return await _setup_page(visit, request, db, error=exc.message, failed=key, status=exc.status_code)
    await reload_settings(visit.context)
    return redirect(visit, f"/admin/setup?notice=saved#card-{key}")


def _posted(visit: PageVisit, card: Card, fields: dict[str, str]) -> dict[str, str | None]:
    """The values to save: what the environment sets is left alone, an empty secret keeps the saved one
    (the page never shows it), and `clear-<name>` removes a saved value."""
    values: dict[str, str | None] = {}
    for name in card.fields:
        if name not in RUNTIME_SETTINGS or source_of(visit.context, name) == "environment":
            continue
        if fields.get(f"clear-{name}"):
            values[name] = None
            continue
        if name not in fields:
            continue
        value = fields[name].strip()
        if name in SECRET_SETTINGS and not value:
            continue
        if value != _value(visit, name):
            values[name] = value or None
    return values


async def _audit(db: AsyncSession, operator: Account, key: str, values: dict[str, Any]) -> None:
    # Names only, never values: the event log is shown on pages and in exports.
    await operators.record_action(
        db,
        operator.id,
        operator,
        "settings.saved",
        {
            "card": key,
            "saved": sorted(n for n, v in values.items() if v),
            "removed": sorted(n for n, v in values.items() if not v),
        },
    )


# --- the first run ------------------------------------------------------------------------------------------
# Apple or Google on the first run: the link's token waits in an HttpOnly cookie (never in the sign-in's
# `state`, which the provider sees) while the ordinary web sign-in runs (web/pages/provider_sign_in.py),
# which comes back to /admin/first-run/finish; there the person confirms the identity that becomes the
# first operator. The cookie only narrows who may finish: the link itself is still spent once.
FIRST_RUN_COOKIE = "entitle_first_run"
FIRST_RUN_FINISH = "/admin/first-run/finish"
FIRST_RUN_PROVIDERS = ("apple", "google")


def _first_run_cookie(visit: PageVisit) -> tuple[str, bool]:
    secure = not visit.context.settings.is_development
    return cookie_name_for(FIRST_RUN_COOKIE, secure=secure), secure


def _provider_links(visit: PageVisit, token: str) -> dict[str, str]:
    """The Continue buttons offered, as on the sign-in page: each provider configured for the web."""
    settings = visit.context.settings
    configured = {
        "apple": bool(settings.apple_signin_web_client_id),
        "google": bool(settings.google_web_client_id),
    }
    query = urlencode({"token": token})
    return {name: f"/admin/first-run/{name}?{query}" for name, on in configured.items() if on}


def _first_run_form(
    visit: PageVisit, *, usable: bool, token: str, error: str | None, email: str, status: int = 200
) -> Response:
    return render(
        visit,
        "admin/first_run.html",
        status=status,
        usable=usable,
        token=token if usable else "",
        error=error,
        email=email,
        providers=_provider_links(visit, token) if usable else {},
    )


@router.get("/first-run")
async def first_run_page(request: Request, visit: Visit, db: SessionDep) -> Response:
    token = request.query_params.get("token", "")
    if not await first_run.link_usable(db, token):
        return _first_run_form(visit, usable=False, token="", error=None, email="", status=410)
    return _first_run_form(visit, usable=True, token=token, error=None, email="")


@router.post("/first-run")
async def make_first_operator(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)
    token = fields.get("token", "")[: first_run.MAX_TOKEN_LENGTH]
    try:
        body = checked(Credentials, fields)
        account = await first_run.make_first_operator(db, token, email=body.email, password=body.password)
    except EntitleError as exc:
        await db.rollback()
        usable = await first_run.link_usable(db, token)
        return _first_run_form(
            visit,
            usable=usable,
            token=token,
            error=customer_sentence(exc),
            email=fields.get("email", "")[:320],
            status=exc.status_code,
        )
    await start_page_session(db, visit, account, request)
    return redirect(visit, "/admin/setup")


@router.get("/first-run/finish")
async def first_run_finish_page(request: Request, visit: Visit, db: SessionDep) -> Response:
    """Back from Apple or Google: whom the link will make the first operator, and a button to do it."""
    name, _secure = _first_run_cookie(visit)
    token = (request.cookies.get(name) or "")[: first_run.MAX_TOKEN_LENGTH]
    if not await first_run.link_usable(db, token):
        return _first_run_form(visit, usable=False, token="", error=None, email="", status=410)
    if visit.account is None:
        # Canceled or refused at the provider: the link still works, so offer it again.
        return redirect(visit, f"{first_run.FIRST_RUN_PATH}?{urlencode({'token': token})}")
    return render(visit, "admin/first_run_finish.html", who=visit.account.email or "this account")


@router.post("/first-run/finish")
async def first_run_finish(request: Request, visit: Visit, db: SessionDep) -> Response:
    await read_form(request, visit)
    name, secure = _first_run_cookie(visit)
    token = (request.cookies.get(name) or "")[: first_run.MAX_TOKEN_LENGTH]
    try:
        if visit.account is None:
            raise first_run.SetupLinkRefused(
                "Sign in with Apple or Google first, from the set-up link.", code="setup_link_used"
            )
        await first_run.make_operator_of(db, token, visit.account)
        await db.commit()
    except EntitleError as exc:
        await db.rollback()
        return _first_run_form(
            visit, usable=False, token="", error=customer_sentence(exc), email="", status=exc.status_code
        )
    response = redirect(visit, "/admin/setup")
    response.delete_cookie(name, path="/admin/first-run", secure=secure, httponly=True, samesite="lax")
    return response


@router.get("/first-run/{provider}")
async def first_run_with_provider(provider: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    """Keep the link's token in a cookie and sign in with Apple or Google, coming back to finish."""
    token = request.query_params.get("token", "")[: first_run.MAX_TOKEN_LENGTH]
    if provider not in FIRST_RUN_PROVIDERS:
        raise NotFound("There is no such sign-in.", code="not_found")
    if not await first_run.link_usable(db, token):
        return _first_run_form(visit, usable=False, token="", error=None, email="", status=410)
    response = redirect(visit, f"/account/sign-in/{provider}?{urlencode({'next': FIRST_RUN_FINISH})}")
    name, secure = _first_run_cookie(visit)
    response.set_cookie(
        name,
        token,
        max_age=sign_in_state.STATE_LIFETIME,
        path="/admin/first-run",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    return response
