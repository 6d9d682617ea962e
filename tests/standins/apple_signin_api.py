"""A local stand-in for Sign in with Apple's REST API: `POST /auth/token` and `POST /auth/revoke`.

It checks what Apple checks: the client secret is an ES256 JWT signed by the team's key (header `kid`;
`iss` the team id, `aud` https://appleid.apple.com, `sub` the form's client_id, `exp` no more than six
months after `iat` and not passed), and an authorization code works once, for the client it was issued
to, for five minutes. Revoked refresh tokens are kept in `revoked` for tests to check.

    with AppleSigninApiStandin(team_id="TEAM123456", key_id="KEY1234567") as apple:
        code = apple.issue_code(sub="001.abc", client_id="com.example.entitle")
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

AUDIENCE = "https://appleid.apple.com"
SIX_MONTHS = 15_777_000
CODE_LIFETIME = 300


@dataclass
class IssuedCode:
    sub: str
    client_id: str
    issued_at: float
    used: bool = False


@dataclass
class AppleSigninApiStandin:
    team_id: str = "TEAM123456"
    key_id: str = "KEY1234567"
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    # refresh token -> (sub, client_id)
    refresh_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)
    # Why requests were refused, newest last (for test failure messages).
    refusals: list[str] = field(default_factory=list)
    # Set to 503 to play an outage of the revoke endpoint.
    revoke_status: int = 200

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def write_key(self, folder: Path) -> Path:
        """The team's key as Apple hands it out (a PKCS#8 .p8 file)."""
        path = folder / f"AuthKey_{self.key_id}.p8"
        path.write_bytes(
            self.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return path

    def issue_code(self, *, sub: str, client_id: str) -> str:
        """What Apple gives the app with the identity token at sign-in."""
        code = "c" + secrets.token_hex(16) + ".0.abcd." + secrets.token_urlsafe(12)
        with self._lock:
            self.codes[code] = IssuedCode(sub=sub, client_id=client_id, issued_at=time.time())
        return code

    # -- checks ---------------------------------------------------------------------------------
    def _client_ok(self, form: dict[str, str]) -> str | None:
        """None when the client secret is right for the form's client_id; otherwise why not."""
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
        try:
            header = jwt.get_unverified_header(secret)
            claims = jwt.decode(
                secret,
                self.private_key.public_key(),
                algorithms=["ES256"],
                audience=AUDIENCE,
                issuer=self.team_id,
                options={"require": ["iss", "iat", "exp", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"client secret: {exc}"
        if header.get("kid") != self.key_id:
            return "client secret: wrong kid"
        if claims["sub"] != client_id:
            return "client secret: sub is not the client_id"
        if claims["exp"] - claims["iat"] > SIX_MONTHS:
            return "client secret: lives longer than six months"
        return None

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        problem = self._client_ok(form)
        if problem is not None:
            self.refusals.append(problem)
            return 400, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            issued = self.codes.get(form.get("code", ""))
            if issued is None or issued.used or issued.client_id != form["client_id"]:
                self.refusals.append("code: unknown, used, or for another client")
                return 400, {"error": "invalid_grant"}
            if time.time() - issued.issued_at > CODE_LIFETIME:
                return 400, {"error": "invalid_grant"}
            issued.used = True
            refresh = "r" + secrets.token_hex(16) + ".0.abcd." + secrets.token_urlsafe(16)
            self.refresh_tokens[refresh] = (issued.sub, issued.client_id)
        now = int(time.time())
        id_token = jwt.encode(
            {"iss": AUDIENCE, "aud": issued.client_id, "sub": issued.sub, "iat": now, "exp": now + 600},
            secrets.token_bytes(32),
            algorithm="HS256",
        )
        return 200, {
            "access_token": "a" + secrets.token_hex(16),
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": refresh,
            "id_token": id_token,
        }

    def _revoke(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        problem = self._client_ok(form)
        if problem is not None:
            self.refusals.append(problem)
            return 400, {"error": "invalid_client"}
        if self.revoke_status != 200:
            return self.revoke_status, {"error": "unavailable"}
        with self._lock:
            token = form.get("token", "")
            owner = self.refresh_tokens.get(token)
            if owner is not None and owner[1] == form["client_id"]:
                self.revoked.append(token)
        # Apple answers 200 whether or not it knew the token.
        return 200, {}

    # -- the server -----------------------------------------------------------------------------
    def __enter__(self) -> AppleSigninApiStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = parse_qs(self.rfile.read(length).decode())
                form = {key: values[0] for key, values in raw.items()}
                if self.path == "/auth/token":
                    status, body = standin._token(form)
                elif self.path == "/auth/revoke":
                    status, body = standin._revoke(form)
                else:
                    status, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"
