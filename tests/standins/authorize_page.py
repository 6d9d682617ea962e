"""The page a provider shows at its authorization endpoint, as the Apple and Google stand-ins serve it.

Like the real ones, after the person agrees it form-POSTs the answer to the `redirect_uri`
(`response_mode=form_post`): a "Continue" form with the answer's fields, and a "Cancel" form with the
provider's cancel error. `read_forms` is the test's browser: it reads the forms back from the HTML.
"""

from __future__ import annotations

from html import escape
from html.parser import HTMLParser

# The query parameters both providers insist on; a missing one is answered 400, as they do.
REQUIRED = ("client_id", "redirect_uri", "response_type", "state", "nonce")


def _form(action: str, fields: dict[str, str], label: str) -> str:
    inputs = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in fields.items()
    )
    button = f'<button type="submit">{label}</button>'
    return f'<form method="post" action="{escape(action)}">{inputs}{button}</form>'


def authorize_page(action: str, answer: dict[str, str], canceled: dict[str, str]) -> bytes:
    return (
        "<!doctype html><title>Sign in</title>"
        + _form(action, answer, "Continue")
        + _form(action, canceled, "Cancel")
    ).encode()


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((found.get("action", ""), {}, ""))
        elif tag == "input" and self.forms and "name" in found:
            self.forms[-1][1][found["name"]] = found.get("value", "")

    def handle_data(self, data: str) -> None:
        if self.forms and data.strip():
            action, fields, _label = self.forms[-1]
            self.forms[-1] = (action, fields, data.strip())


def read_forms(html: str) -> dict[str, tuple[str, dict[str, str]]]:
    """The page's forms by their button's label: {"Continue": (action, fields), ...}."""
    parser = _Forms()
    parser.feed(html)
    return {label: (action, fields) for action, fields, label in parser.forms}
