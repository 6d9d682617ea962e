"""A local stand-in for Apple's and Google's identity-token signers.

It generates RSA keys, serves their public halves as a JWKS on a real loopback HTTP server (the same
wire format as https://appleid.apple.com/auth/keys and https://www.googleapis.com/oauth2/v3/certs),
and mints identity tokens with the claims those providers put in them. The code under test is the
production verifier pointed at `standin.url`; nothing is patched.

    with JwksStandin() as idp:
        token = idp.apple_token(sub="001.abc", email="a@example.com")
        verifier = AppleIdentityVerifier(client_ids=[APPLE_BUNDLE_ID], jwks_url=idp.url, http=client)

It also plays Google's authorization endpoint for the web flow (`authorize_url`): a page whose
"Continue" form-POSTs an ID token for `google_person` (nonce and `aud` from the query) and the `state` to
the `redirect_uri`, as Google does with `response_mode=form_post`; "Cancel" posts `error=access_denied`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.standins.authorize_page import REQUIRED, authorize_page

APPLE_ISSUER = "https://appleid.apple.com"
GOOGLE_ISSUER = "https://accounts.google.com"
APPLE_BUNDLE_ID = "com.example.entitle"
APPLE_SERVICES_ID = "com.example.entitle.web"
GOOGLE_WEB_CLIENT_ID = "1234567890-web.apps.googleusercontent.com"
GOOGLE_IOS_CLIENT_ID = "1234567890-ios.apps.googleusercontent.com"
GOOGLE_AUTHORIZE_PATH = "/o/oauth2/v2/auth"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return jwk

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def make_key(kid: str | None = None) -> SigningKey:
    """A fresh RSA key; one not served by any stand-in is how tests forge signatures."""
    return SigningKey(
        kid=kid or uuid.uuid4().hex[:10],
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def forge_unsigned(claims: dict[str, Any], *, kid: str) -> str:
    """An `alg: none` token: no signature at all."""
    return _segments({"alg": "none", "typ": "JWT", "kid": kid}, claims) + "."


def forge_hs256(claims: dict[str, Any], *, kid: str, secret: bytes) -> str:
    """HS256 keyed with `secret` (the classic attack uses the provider's public key as the secret)."""
    signing_input = _segments({"alg": "HS256", "typ": "JWT", "kid": kid}, claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


class JwksStandin:
    """Serves a JWKS on 127.0.0.1:<random port> and mints tokens signed by its keys."""

    def __init__(self, *, keys: int = 1) -> None:
        self.keys: list[SigningKey] = [make_key() for _ in range(keys)]
        # More public keys to serve as they are (e.g. an EC key of an app's own identity provider).
        self.extra_jwks: list[dict[str, Any]] = []
        # What the endpoint answers; set to 500/503 to play an outage.
        self.status = 200
        self.requests = 0
        # Who signs in on Google's authorize page, and the query of every authorize request.
        self.google_person: dict[str, Any] = {
            "sub": "110169484474386270001",
            "email": "pat@gmail.com",
            "email_verified": True,
            "name": "Pat Person",
        }
        self.authorize_requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the server ---------------------------------------------------------------------------
    def start(self) -> JwksStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                if url.path == GOOGLE_AUTHORIZE_PATH:
                    query = {key: values[0] for key, values in parse_qs(url.query).items()}
                    status, page = standin._google_authorize(query)
                    self.send_response(status)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                with standin._lock:
                    standin.requests += 1
                    status = standin.status
                    document = {"keys": [key.public_jwk for key in standin.keys] + standin.extra_jwks}
                body = json.dumps(document if status == 200 else {"error": "unavailable"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> JwksStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/auth/keys"

    @property
    def authorize_url(self) -> str:
        """Google's authorization endpoint (`ENTITLE_GOOGLE_AUTH_URL`)."""
        return self.url.removesuffix("/auth/keys") + GOOGLE_AUTHORIZE_PATH

    def _google_authorize(self, query: dict[str, str]) -> tuple[int, bytes]:
        self.authorize_requests.append(query)
        if any(not query.get(name) for name in REQUIRED):
            return 400, b"invalid_request"
        # The implicit flow needs a nonce (checked above) and asks for an ID token only.
        if query["response_type"] != "id_token" or "openid" not in query.get("scope", "").split():
            return 400, b"unsupported_response_type"
        if query.get("response_mode") != "form_post":
            return 400, b"this stand-in answers with form_post only"
        token = self.google_token(aud=query["client_id"], nonce=query["nonce"], **self.google_person)
        answer = {"state": query["state"], "id_token": token}
        canceled = {"error": "access_denied", "state": query["state"]}
        return 200, authorize_page(query["redirect_uri"], answer, canceled)

    # -- keys ---------------------------------------------------------------------------------
    @property
    def current_key(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self, *, keep_old: bool = False) -> SigningKey:
        """Publish a new signing key (and by default retire the old ones), as providers do."""
        key = make_key()
        with self._lock:
            self.keys = [*self.keys, key] if keep_old else [key]
        return key

    # -- tokens -------------------------------------------------------------------------------
    def sign(self, claims: dict[str, Any], *, key: SigningKey | None = None, kid: str | None = None) -> str:
        """RS256 over `claims`; `key` may be one this stand-in does not serve (a forgery)."""
        key = key or self.current_key
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": kid or key.kid})

    def apple_claims(
        self,
        *,
        sub: str = "001234.0a1b2c3d4e5f.1234",
        aud: str = APPLE_BUNDLE_ID,
        email: str | None = "person@example.com",
        email_verified: Any = "true",
        is_private_email: Any = "false",
        nonce: str | None = None,
        now: float | None = None,
        lifetime: int = 600,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": APPLE_ISSUER,
            "aud": aud,
            "exp": now + lifetime,
            "iat": now,
            "sub": sub,
            "c_hash": _b64(uuid.uuid4().bytes),
            "auth_time": now,
            "nonce_supported": True,
        }
        if email is not None:
            claims.update(email=email, email_verified=email_verified, is_private_email=is_private_email)
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra)
        return claims

    def apple_token(self, *, key: SigningKey | None = None, **claims: Any) -> str:
        return self.sign(self.apple_claims(**claims), key=key)

    def google_claims(
        self,
        *,
        sub: str = "110169484474386276334",
        aud: str = GOOGLE_WEB_CLIENT_ID,
        email: str | None = "person@gmail.com",
        email_verified: Any = True,
        name: str | None = "Pat Person",
        iss: str = GOOGLE_ISSUER,
        nonce: str | None = None,
        now: float | None = None,
        lifetime: int = 3600,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": iss,
            "azp": aud,
            "aud": aud,
            "sub": sub,
            "iat": now,
            "nbf": now - 30,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        if email is not None:
            claims.update(email=email, email_verified=email_verified)
        if name is not None:
            claims.update(
                name=name, given_name=name.split()[0], picture="https://lh3.googleusercontent.com/a/x"
            )
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra)
        return claims

    def google_token(self, *, key: SigningKey | None = None, **claims: Any) -> str:
        return self.sign(self.google_claims(**claims), key=key)

    def apple_notification(
        self,
        event_type: str,
        *,
        sub: str = "001234.0a1b2c3d4e5f.1234",
        aud: str = APPLE_BUNDLE_ID,
        email: str | None = None,
        is_private_email: Any = "true",
        jti: str | None = None,
        key: SigningKey | None = None,
        now: float | None = None,
    ) -> str:
        """A Sign in with Apple server-to-server notification: `events` is a JSON string."""
        now = int(time.time() if now is None else now)
        event: dict[str, Any] = {"type": event_type, "sub": sub, "event_time": now}
        if email is not None:
            event.update(email=email, is_private_email=is_private_email)
        claims = {
            "iss": APPLE_ISSUER,
            "aud": aud,
            "iat": now,
            "jti": jti or uuid.uuid4().hex,
            "events": json.dumps(event),
        }
        return self.sign(claims, key=key)
