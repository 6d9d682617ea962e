"""What every command shares: settings and context built with clear, traceback-free failures."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from entitle.context import AppContext, build_context
from entitle.errors import EntitleError
from entitle.settings import Settings

console = Console(stderr=True)


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


def load_context(settings: Settings) -> AppContext:
    try:
        return build_context(settings)
    except (EntitleError, ValueError, OSError) as exc:
        fail(str(exc))
