"""Reading the forms pages post: urlencoded fields, checked by the same models as the API's bodies."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import parse_qs

from fastapi import Request
from pydantic import BaseModel, ValidationError

from entitle.errors import InvalidRequest
from entitle.services.identity.passwords import MIN_PASSWORD_LENGTH
from entitle.web.pages.visits import CSRF_FIELD, PageVisit

Model = TypeVar("Model", bound=BaseModel)

# Form fields a person types are short; anything longer is not a person typing.
MAX_FIELD_LENGTH = 4096
_SENTENCES = {
    "email": "Enter a valid email address.",
    "password": f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.",
    "token": "This link is not valid; ask for a new one.",
}


async def read_form(request: Request, visit: PageVisit) -> dict[str, str]:
    """The posted fields (first value of each), after the CSRF check every form must pass."""
    fields = await read_form_without_csrf(request)
    visit.check_csrf(fields.pop(CSRF_FIELD, None))
    return fields


async def read_form_without_csrf(request: Request) -> dict[str, str]:
    """The posted fields, unchecked: only for the posts Apple and Google send back after sign-in, whose
    signed `state` is their CSRF protection (web/pages/provider_sign_in.py)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidRequest("Pages accept form posts only.", code="unsupported_form")
    try:
        text = (await request.body()).decode()
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("This form could not be read.", code="unreadable_form") from exc
    fields = {name: values[0] for name, values in parsed.items() if values}
    if any(len(value) > MAX_FIELD_LENGTH for value in fields.values()):
        raise InvalidRequest("A field of this form is too long.", code="field_too_long")
    return fields


def checked(model: type[Model], fields: dict[str, str]) -> Model:
    """`fields` as `model`, or an InvalidRequest whose sentence a person can act on."""
    try:
        return model.model_validate({name: fields.get(name, "") for name in model.model_fields})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        raise InvalidRequest(_SENTENCES.get(name, f"Check the {name} field."), code="invalid_field") from exc


def local_path(value: str | None, default: str) -> str:
    """`value` when it is a path on this site (never another site: no open redirect), else `default`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 32 for c in value):
        return default
    return value
