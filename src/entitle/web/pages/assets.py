"""Everything a page loads, served by entitle itself: the stylesheet, the brand, the logo."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from entitle.web.deps import SettingsDep
from entitle.web.pages.rendering import brand_css, logo_response

router = APIRouter(include_in_schema=False)


@router.get("/assets/brand.css")
async def brand(settings: SettingsDep) -> Response:
    return Response(
        brand_css(settings), media_type="text/css", headers={"Cache-Control": "public, max-age=300"}
    )


@router.get("/assets/logo")
async def logo(settings: SettingsDep) -> Response:
    return logo_response(settings)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/pricing", status_code=303)
