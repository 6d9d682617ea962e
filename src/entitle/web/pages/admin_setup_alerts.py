"""/admin/setup, the alerts' share: the production checklist, and the buttons that prove the alerts and
outbound webhooks cards (a test message to each URL, a `webhook.test` to each endpoint).

The checklist (services/setup/checklist.py) is a partial template, `admin/setup_checklist.html`, that the
set-up page includes; `/admin/setup/checklist` shows it alone. `ACTIONS` names each card's proving button
for the set-up page to draw; after it, the card itself says what the test found.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.errors import EntitleError
from entitle.services.identity import operators
from entitle.services.setup import alerts_setup, webhooks_setup
from entitle.services.setup.checklist import checklist
from entitle.services.setup.runtime_settings import reload_settings, save_settings, source_of
from entitle.web.deps import SessionDep
from entitle.web.pages.admin import _operator
from entitle.web.pages.forms import read_form
from entitle.web.pages.rendering import redirect, render
from entitle.web.pages.visits import PageVisit, Visit

router = APIRouter(prefix="/admin", include_in_schema=False)

# card key -> (the form's action, the button's words)
ACTIONS: dict[str, tuple[str, str]] = {
    "alerts": ("/admin/setup/alerts/test", "Send a test message"),
    "webhooks": ("/admin/setup/webhooks/test", "Send a test message to every endpoint"),
}
NOTICES = {
    "alerts_tested": "Test messages sent; the alerts card shows what each URL answered.",
    "webhooks_tested": "A test message went to every endpoint; the card shows what each answered.",
    "backups_saved": "Saved; every server process uses it now.",
}


async def checklist_values(visit: PageVisit, db: AsyncSession) -> dict[str, object]:
    """What `admin/setup_checklist.html` needs, for any page that includes it."""
    return {
        "checklist": await checklist(db, visit.context.settings),
        "backups_source": source_of(visit.context, "backups_configured"),
    }


async def _checklist_page(
    visit: PageVisit, request: Request, db: AsyncSession, *, error: str | None = None, status: int = 200
) -> Response:
    return render(
        visit,
        "admin/setup_checklist_page.html",
        status=status,
        notice=NOTICES.get(request.query_params.get("notice", "")),
        error=error,
        **await checklist_values(visit, db),
    )


@router.get("/setup/checklist")
async def checklist_page(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    return await _checklist_page(visit, request, db)


@router.post("/setup/backups")
async def confirm_backups(request: Request, visit: Visit, db: SessionDep) -> Response:
    """The operator's word that backups run (the checklist cannot see a provider's backups)."""
    fields = await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    value = "true" if fields.get("backups_configured") == "true" else None
    try:
        await save_settings(
            db, visit.context, {"backups_configured": value}, by=operators.operator_label(operator)
        )
        # Names only, like every settings save in the account's event log.
        change = {"card": "checklist", "saved" if value else "removed": ["backups_configured"]}
        await operators.record_action(db, operator.id, operator, "settings.saved", change)
        await db.commit()
    except EntitleError as exc:
        await db.rollback()
        return await _checklist_page(visit, request, db, error=exc.message, status=exc.status_code)
    await reload_settings(visit.context)
    return redirect(visit, "/admin/setup?notice=backups_saved#checklist")


@router.post("/setup/alerts/test")
async def test_alerts(request: Request, visit: Visit, db: SessionDep) -> Response:
    await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    results = await alerts_setup.send_test(visit.context)
    refused = [
        f"{check.sentence()[:-1]} ({words})." if words else check.sentence()
        for check, words in results
        if not check.ok
    ]
    if refused:
        # Shown once, on the card, with the URL's own words (Slack's `no_service`, `invalid_token`).
        from entitle.web.pages.admin_setup import _setup_page  # the set-up page includes this module

        return await _setup_page(visit, request, db, error=" ".join(refused), failed="alerts")
    return redirect(visit, "/admin/setup?notice=alerts_tested#card-alerts")


@router.post("/setup/webhooks/test")
async def test_webhooks(request: Request, visit: Visit, db: SessionDep) -> Response:
    await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    await webhooks_setup.send_tests(visit.context)
    return redirect(visit, "/admin/setup?notice=webhooks_tested#card-webhooks")
