"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from entitle import __version__
from entitle.context import AppContext, build_context
from entitle.metrics import RequestMetrics
from entitle.services.access.entitlements import refresh_due_entitlements
from entitle.services.delivery.account_work import deliver_account_work
from entitle.services.delivery.alerts import alerter
from entitle.services.delivery.outbound import deliver_due
from entitle.services.delivery.streams import forget_old_tickets
from entitle.services.identity.page_links import forget_old_links
from entitle.services.setup.first_run import announce_first_run
from entitle.services.setup.runtime_settings import follow_settings, reload_settings
from entitle.settings import Settings
from entitle.web.bodies import refuse_unread_body
from entitle.web.deps import storable_parameters
from entitle.web.docs import install_docs
from entitle.web.errors import install_error_handlers
from entitle.web.limits import BodyReadTimeout, BodySizeLimit
from entitle.web.openapi import install_openapi
from entitle.web.pages import install_pages
from entitle.web.routes import all_routers

log = logging.getLogger(__name__)

# How often the worker writes answers that time alone changed and sends outbound webhooks. Provider
# events do not wait for this: the pipeline works on them as soon as they are stored.
MAINTENANCE_SECONDS = 2.0


def create_app(
    settings: Settings | None = None, *, context: AppContext | None = None, run_worker: bool = False
) -> FastAPI:
    """The app; `run_worker` also does the worker's background work in this process (one-process setups)."""
    context = context or build_context(settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await start_settings(context)
        worker = asyncio.create_task(run_background_work(context)) if run_worker else None
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await context.aclose()

    app = FastAPI(
        title="entitle",
        version=__version__,
        summary="One account and one subscription across the web (Stripe) and iPhone (App Store).",
        lifespan=lifespan,
        # /docs is served by `install_docs` from local assets; FastAPI's own pages load from a CDN.
        docs_url=None,
        redoc_url=None,
        # Query and path parameters with a NUL are a 422 naming the parameter (entitle.storable_text).
        dependencies=[Depends(storable_parameters)],
    )
    app.state.context = context
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=context.settings.max_body_bytes)
    app.add_middleware(BodyReadTimeout, seconds=context.settings.http_body_timeout_seconds)
    app.add_middleware(RequestMetrics)
    if context.settings.web_origins:
        # Added last, so it wraps everything: error answers carry the CORS headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=context.settings.web_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    if context.settings.trusted_proxies:
        # Outermost, so everything inside (rate limits, logs, CORS) sees the client, not the proxy. Only
        # the named proxies are believed: `entitle serve` turns uvicorn's own trust (127.0.0.1) off.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=context.settings.trusted_proxies)
    for router in all_routers():
        # The API's routes, not the pages': a route that takes no body refuses one with fields.
        app.include_router(router, dependencies=[Depends(refuse_unread_body)])
    install_pages(app)
    install_openapi(app)
    install_docs(app)
    return app


async def start_settings(context: AppContext) -> None:
    """Apply the saved settings before serving, and follow changes made in any process from now on."""
    follow_settings(context)
    try:
        await reload_settings(context)
        await announce_first_run(context)
    except Exception as exc:  # an unmigrated database serves what the environment gives
        log.warning("saved settings not read: %s", exc.__class__.__name__)
    context.bus.start()


def serve_process_app() -> FastAPI:
    """One process of `entitle serve --workers N` that also does the worker's background work.

    uvicorn calls this in each process it spawns, so each builds its own context (pools, the change
    bus's listening connection, the Stripe pacer) from the settings its environment carries."""
    return _spawned_app(run_worker=True)


def serve_process_app_without_worker() -> FastAPI:
    """One process of `entitle serve --workers N --no-worker`: stores and acknowledges provider events."""
    return _spawned_app(run_worker=False)


def _spawned_app(*, run_worker: bool) -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    context = build_context(Settings(), process_locally=run_worker)
    return create_app(context=context, run_worker=run_worker)


async def run_background_work(context: AppContext, *, once: bool = False) -> int:
    """The worker's job: provider events as they come (woken at once, across processes), and every few
    seconds answers that time changed and outbound webhooks; forever unless `once`."""
    if once:
        return await context.pipeline.run(once=True) + await _maintenance(context)
    events = asyncio.create_task(context.pipeline.run())
    try:
        while True:
            await _maintenance(context)
            await asyncio.sleep(MAINTENANCE_SECONDS)
    finally:
        events.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await events


async def _maintenance(context: AppContext) -> int:
    done = 0
    try:
        # Answers that time alone changed (a period ended, a grant began) get their events written.
        async with context.database.transaction() as db:
            done += await refresh_due_entitlements(db)
            await forget_old_tickets(db)
            await forget_old_links(db)
        done += await deliver_due(context.database, context.http, development=context.settings.is_development)
        # Mail from the outbox, Apple token revocations.
        done += await deliver_account_work(context)
        await alerter(context).check()
    except Exception:  # keep the loop alive; the rows keep their state and are picked up next time
        log.exception("background work failed")
    return done
