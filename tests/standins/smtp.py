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


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.lock = threading.Lock()
        # True: answer every mail with a temporary failure (to test retries).
        self.refuse = False
        # Seconds the server takes to accept each mail (a slow relay).
        self.delay = 0.0
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(_Keeper(self), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [mail for mail in self.messages if address in mail.recipients]

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
