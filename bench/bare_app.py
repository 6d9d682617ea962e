"""The baseline: a bare Starlette app with a JSON endpoint and a health check, nothing else."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(_request: Request) -> JSONResponse:
    return JSONResponse({"entitlements": {"pro": {"active": True}}})


app = Starlette(routes=[Route("/healthz", hello), Route("/json", hello)])
