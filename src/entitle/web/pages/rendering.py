"""Templates, the brand, and the headers every page is sent with."""

from __future__ import annotations

import mimetypes
from datetime import datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from entitle.core.currencies import display_amount
from entitle.settings import Settings
from entitle.web.pages.visits import CSRF_FIELD, PageVisit

TEMPLATES = Environment(
    loader=PackageLoader("entitle", "web/templates"),
    autoescape=select_autoescape(["html", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

# Pages load nothing from anywhere else, run no inline script, and cannot be framed (clickjacking).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show a person's own account; no shared cache may keep them.
    "Cache-Control": "no-store",
}


def _date(moment: str | datetime | None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return f"{moment:%B} {moment.day}, {moment.year}"


def _datetime(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


TEMPLATES.filters["money"] = display_amount
TEMPLATES.filters["date"] = _date
TEMPLATES.filters["datetime"] = _datetime


def render(
    visit: PageVisit, template: str, *, status: int = 200, notice: str | None = None, **values: Any
) -> Response:
    settings = visit.context.settings
    csrf = visit.csrf_token
    html = TEMPLATES.get_template(template).render(
        site=site(settings),
        me=visit.account,
        csrf=csrf,
        csrf_input=Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf),
        notice=notice,
        **values,
    )
    return visit.write_cookies(HTMLResponse(html, status_code=status, headers=PAGE_HEADERS))


def page_error(request: Request, status: int, message: str) -> Response:
    """An error as a page (a refused form, a page that does not exist), with a way back."""
    settings = request.app.state.context.settings
    html = TEMPLATES.get_template("error.html").render(
        site=site(settings), me=None, csrf="", csrf_input="", notice=None, status=status, message=message
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def redirect(visit: PageVisit, url: str) -> Response:
    """303 See Other: after a form's POST, the browser GETs the next page (no resubmission on reload)."""
    return visit.write_cookies(RedirectResponse(url, status_code=303, headers=PAGE_HEADERS))


def site(settings: Settings) -> dict[str, Any]:
    return {"app_name": settings.app_name, "logo_url": "/assets/logo", "development": settings.is_development}


# --- the brand ---------------------------------------------------------------------------------------------
def _channels(color: str) -> tuple[float, float, float]:
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    red, green, blue = (int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return red, green, blue


def _luminance(rgb: tuple[float, float, float]) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(c) for c in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: tuple[float, float, float], second: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio (1 to 21)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


WHITE = (1.0, 1.0, 1.0)
# Text on a brand background is white or black, whichever reads better: one of the two always passes 4.5:1.
INK = (0.0, 0.0, 0.0)


def brand_css(settings: Settings) -> str:
    """The brand color as CSS variables, with text colors that stay readable on it (WCAG AA, 4.5:1).

    Any color an app picks works: text on a brand button is white or black, whichever reads; links
    use the brand darkened until they read on white."""
    brand = _channels(settings.brand_color)
    on_brand = WHITE if contrast(brand, WHITE) >= contrast(brand, INK) else INK
    ink = brand
    while contrast(ink, WHITE) < 4.5:
        ink = (ink[0] * 0.9, ink[1] * 0.9, ink[2] * 0.9)
    return (
        f":root{{--brand:{_hex(brand)};--on-brand:{_hex(on_brand)};--brand-ink:{_hex(ink)};}}\n"
    )


def monogram_svg(settings: Settings) -> str:
    initial = (settings.app_name.strip()[:1] or "e").upper()
    brand = _channels(settings.brand_color)
    on_brand = WHITE if contrast(brand, WHITE) >= contrast(brand, INK) else INK
    return TEMPLATES.from_string(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        '<rect width="64" height="64" rx="14" fill="{{ fill }}"/>'
        '<text x="32" y="43" font-family="system-ui,sans-serif" font-size="34" font-weight="700" '
        'text-anchor="middle" fill="{{ ink }}">{{ initial }}</text></svg>'
    ).render(fill=_hex(brand), ink=_hex(on_brand), initial=initial)


def logo_response(settings: Settings) -> Response:
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    path = settings.logo_path
    if path is not None and path.is_file():
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if media_type not in ("image/svg+xml", "image/png", "image/jpeg", "image/webp"):
            media_type = "application/octet-stream"
        # An SVG logo is served as an image that can run nothing, even if opened on its own.
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return Response(path.read_bytes(), media_type=media_type, headers=headers)
    return Response(monogram_svg(settings), media_type="image/svg+xml", headers=headers)
