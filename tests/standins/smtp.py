"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for end-to-end mail tests.

with SmtpSink() as sink:
    settings = make_settings(url, smtp_url=sink.url)
    ... the worker sends ...
    [mail] = sink.messages
    token = mail.link_token("/account/reset-password")
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return str(part.get_content()) if part is not None else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        return str(part.get_content()) if part is not None else ""

    def link(self, path: str) -> str:
        found = re.search(r"https?://\S+" + re.escape(path) + r"\?token=[A-Za-z0-9_\-%]+", self.text)
        assert found, f"no {path} link in:\n{self.text}"
        return found.group(0)

    def link_token(self, path: str) -> str:
        return parse_qs(urlsplit(self.link(path)).query)["token"][0]


class _Keeper:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's name)
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.sink.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        # A slow relay: each mail takes this long to be accepted.
        await asyncio.sleep(self.sink.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.sink.lock:
            if self.sink.refuse:
                return "451 4.3.0 try again later"
            self.sink.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


class _Authenticator:
    """Accepts only the sink's user and password (AUTH PLAIN/LOGIN), as a relay that needs a login does."""

    def __init__(self, username: str, password: str) -> None:
        self.expected = (username.encode(), password.encode())

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == self.expected:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class SmtpSink:
    def __init__(self, *, username: str | None = None, password: str | None = None) -> None:
        """With `username` and `password`, the server requires that login before it takes a mail."""
        self.messages: list[ReceivedMail] = []
        self.lock = threading.Lock()
        # True: answer every mail with a temporary failure (to test retries).
        self.refuse = False
        # Seconds the server takes to accept each mail (a slow relay).
        self.delay = 0.0
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.credentials = (username, password) if username is not None and password is not None else None
        auth: dict[str, Any] = {}
        if self.credentials is not None:
            # Loopback has no TLS: the login is allowed in the clear, which only a test server may do.
            # aiosmtpd warns on `auth_required` without TLS, so the keeper refuses MAIL before a login.
            auth = {"authenticator": _Authenticator(*self.credentials), "auth_require_tls": False}
        self.controller = Controller(_Keeper(self), hostname="127.0.0.1", port=self.port, **auth)

    @property
    def url(self) -> str:
        if self.credentials is not None:
            return f"smtp://{self.credentials[0]}:{self.credentials[1]}@127.0.0.1:{self.port}"
        return f"smtp://127.0.0.1:{self.port}"

    def to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [mail for mail in self.messages if address in mail.recipients]

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
