"""App factories for `uvicorn --factory`, one per way `entitle serve` runs.

`processing_app` is `entitle serve`: events are processed at once in the process that stored them, and
the worker's loop (claims, retries, maintenance) runs beside the API. `acknowledging_app` is
`entitle serve --no-worker`: events are verified, stored and answered, and nothing else, so the
acknowledgement can be measured alone and a separate `entitle worker` can be timed on what it stored.
"""

from __future__ import annotations

from fastapi import FastAPI

from entitle.app import create_app
from entitle.context import build_context
from entitle.settings import Settings


def processing_app() -> FastAPI:
    return create_app(context=build_context(Settings()), run_worker=True)


def acknowledging_app() -> FastAPI:
    return create_app(context=build_context(Settings(), process_locally=False), run_worker=False)
