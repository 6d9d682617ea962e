"""What every command shares: settings and context built with clear, traceback-free failures."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from entitle.context import AppContext, build_context
from entitle.errors import EntitleError
from entitle.services.delivery.pipeline import DEFAULT_CONCURRENCY
from entitle.settings import Settings

console = Console(stderr=True)
T = TypeVar("T")


def fail(message: str) -> NoReturn:
    # Escaped: messages quote TOML tables like `[products.pro]`, which rich would take for markup.
    console.print(f"[bold red]entitle:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"ENTITLE_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            if error["loc"]
            else error["msg"]
            for error in exc.errors()
        )
        fail(f"the configuration is not valid: {problems}")


def os_user() -> str:
    """Who ran the command, for the records it writes (`cli:<user>`)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "unknown"


def load_context(
    settings: Settings, *, process_locally: bool = True, concurrency: int = DEFAULT_CONCURRENCY
) -> AppContext:
    try:
        return build_context(settings, process_locally=process_locally, concurrency=concurrency)
    except (EntitleError, ValueError, OSError) as exc:
        fail(str(exc))


async def apply_saved_settings(context: AppContext) -> None:
    """Overlay the settings saved from /admin/setup, so every command sees what the server uses."""
    from entitle.services.setup.runtime_settings import reload_settings

    try:
        await reload_settings(context)
    except SQLAlchemyError:  # not migrated yet: the environment alone
        return


def run_job(job: Callable[[AppContext], Awaitable[T]], context: AppContext | None = None) -> T:
    """Run one async job over the app context, close the context, and turn errors into one sentence."""
    context = context or load_context(load_settings())

    async def _main() -> T:
        try:
            await apply_saved_settings(context)
            return await job(context)
        finally:
            await context.aclose()

    try:
        return asyncio.run(_main())
    except EntitleError as exc:
        fail(exc.message)
    except SQLAlchemyError as exc:
        fail(f"the database refused the work ({type(exc).__name__}); has `entitle migrate` been run?")
