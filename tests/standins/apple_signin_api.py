"""A local stand-in for Sign in with Apple's REST API: `POST /auth/token` and `POST /auth/revoke`, and
the web flow's `GET /auth/authorize` page.

It checks what Apple checks: the client secret is an ES256 JWT signed by the team's key (header `kid`;
`iss` the team id, `aud` https://appleid.apple.com, `sub` the form's client_id, `exp` no more than six
months after `iat` and not passed), and an authorization code works once, for the client it was issued
to, for five minutes. Revoked refresh tokens are kept in `revoked` for tests to check.

    with AppleSigninApiStandin(team_id="TEAM123456", key_id="KEY1234567") as apple:
        code = apple.issue_code(sub="001.abc", client_id="com.example.entitle")

`/auth/authorize` (with a `signer`, the JWKS stand-in whose keys the app trusts) shows the page Apple
shows: "Continue" form-POSTs to the `redirect_uri` an identity token for `person` (nonce and `aud` from
the query), a code `/auth/token` accepts, the `state`, and the first time only the `user` JSON with the
name; "Cancel" posts `error=user_cancelled_authorize`.
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
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.standins.authorize_page import REQUIRED, authorize_page
from tests.standins.jwks_server import JwksStandin

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
    # Seconds each revoke request takes (a slow Apple).
    revoke_delay: float = 0.0
    # Signs the identity tokens of the authorize page.
    signer: JwksStandin | None = None
    # Who signs in on the authorize page.
    person: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "001234.web.person",
            "email": "pat@example.com",
            "email_verified": "true",
            "is_private_email": "false",
            "name": {"firstName": "Pat", "lastName": "Person"},
        }
    )
    # The query of every authorize request, oldest first.
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    # (sub, client_id) pairs that have authorized once: Apple sends the name only the first time.
    _authorized: set[tuple[str, str]] = field(default_factory=set)

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

    def _authorize(self, query: dict[str, str]) -> tuple[int, bytes]:
        self.authorize_requests.append(query)
        if any(not query.get(name) for name in REQUIRED):
            return 400, b"invalid_request"
        if query["response_type"] not in ("code", "code id_token"):
            return 400, b"unsupported_response_type"
        if query.get("scope") and query.get("response_mode") != "form_post":
            # Apple: "response_mode must be form_post when name or email scope is requested".
            return 400, b"invalid_request"
        assert self.signer is not None, "give the stand-in a signer to serve /auth/authorize"
        person = dict(self.person)
        name = person.pop("name", None)
        client_id = query["client_id"]
        code = self.issue_code(sub=person["sub"], client_id=client_id)
        token = self.signer.apple_token(aud=client_id, nonce=query["nonce"], **person)
        answer = {"state": query["state"], "code": code, "id_token": token}
        with self._lock:
            first_time = (person["sub"], client_id) not in self._authorized
            self._authorized.add((person["sub"], client_id))
        if first_time and "name" in query.get("scope", "").split():
            answer["user"] = json.dumps({"name": name, "email": person.get("email")})
        canceled = {"error": "user_cancelled_authorize", "state": query["state"]}
        return 200, authorize_page(query["redirect_uri"], answer, canceled)

    # -- the server -----------------------------------------------------------------------------
    def __enter__(self) -> AppleSigninApiStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                if url.path == "/auth/authorize":
                    query = {key: values[0] for key, values in parse_qs(url.query).items()}
                    status, page = standin._authorize(query)
                else:
                    status, page = 404, b"not found"
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = parse_qs(self.rfile.read(length).decode())
                form = {key: values[0] for key, values in raw.items()}
                if self.path == "/auth/token":
                    status, body = standin._token(form)
                elif self.path == "/auth/revoke":
                    time.sleep(standin.revoke_delay)
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
