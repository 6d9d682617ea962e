"""Schemathesis against the OpenAPI document, on a real server with every provider configured.

Every operation gets generated requests, valid and invalid, with a server key or an access token as
the route needs: no answer may be a 5xx, and every answer must match what the document declares
(status, content type, headers, body schema). Bounded: a few examples per operation and mode.
Then each operation, with a body or without, is sent a body with a field it does not know: 422.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from entitle.services.identity.tokens import SigningKey
from entitle.web.bodies import reads_raw_body
from tests.conftest import ADMIN_KEY, LiveServer, make_settings
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.appstore.fixtures import appstore_settings
from tests.standins.jwks_server import JwksStandin
from tests.standins.stripe import StripeStandin

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 8
# Put into one string of a valid request at a time (NUL, which PostgreSQL cannot store in text; non-ASCII
# of several widths): the generated examples rarely hold them, so the first example of each operation
# is sent again once per string and per addition.
HOSTILE_TEXT = ("\x00", "é\u3042\U0001f600")
# Server-key routes; everything else gets a person's access token.
ADMIN_PREFIXES = ("/v1/accounts", "/v1/webhook-endpoints", "/v1/events", "/v1/reports", "/metrics")
# Deleting the account would leave every later request with a dead token; deletion has its own tests.
SKIPPED = {("DELETE", "/v1/me")}
# Sent to every operation but the provider webhooks (they read their raw, signed body).
UNKNOWN = "entitle_unknown_field"


@pytest.fixture(scope="module")
def server(
    database_url: str, signing_key: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    from tests.standins.appstore.chain import mint_chain

    folder = tmp_path_factory.mktemp("appstore")
    root = folder / "root.pem"
    root.write_bytes(mint_chain().root_pem)
    # The In-App Purchase key signs promotional offers; the Server API it also unlocks points nowhere.
    iap_key = folder / "AuthKey.p8"
    iap_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with StripeStandin() as stripe, JwksStandin() as idp:
        overrides: dict[str, Any] = {
            **stripe_settings(stripe),
            **appstore_settings(
                Path(root),
                apple_key_id="SCHEMAKEY1",
                apple_issuer_id="57246542-96fe-1a63-e053-0824d011072a",
                apple_private_key_path=str(iap_key),
                apple_api_base="http://127.0.0.1:9",
            ),
            "apple_signin_client_ids": "com.example.app",
            "google_client_ids": "web-client.apps.googleusercontent.com",
            "apple_signin_jwks_url": idp.url,
            "google_jwks_url": idp.url,
        }
        live = LiveServer(make_settings(database_url, **overrides), signing_key)
        live.start()
        try:
            yield live
        finally:
            live.stop()


def test_the_api_matches_its_document_and_never_fails(server: LiveServer) -> None:
    session = httpx.post(
        f"{server.url}/v1/auth/register",
        json={"email": "schemathesis@example.com", "password": "correct horse battery staple"},
    )
    assert session.status_code in (201, 409), session.text
    if session.status_code == 409:
        session = httpx.post(
            f"{server.url}/v1/auth/login",
            json={"email": "schemathesis@example.com", "password": "correct horse battery staple"},
        )
    person = {"Authorization": f"Bearer {session.json()['access_token']}"}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    # First, while the session is fresh (generated requests may sign it out): every answer is a refusal.
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED or reads_raw_body(operation.path):
            continue
        headers = admin if operation.path.startswith(ADMIN_PREFIXES) else person
        problem = _send_an_unknown_field(operation, server.url, headers)
        if problem:
            failures.append(problem)
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        headers = admin if operation.path.startswith(ADMIN_PREFIXES) else person
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            problem = _exercise(operation, mode, server.url, headers)
            if problem:
                failures.append(problem)
    assert not failures, "\n\n".join(failures)


def _send_an_unknown_field(operation: Any, url: str, headers: dict[str, str]) -> str | None:
    """Send a body with a field the operation does not know, whether it takes a body or none: the
    answer must be the documented 422 naming it. Or the failure, described."""
    path_parameters = {name: str(uuid.UUID(int=1)) for name in re.findall(r"{(\w+)}", operation.path)}
    case = operation.Case(
        path_parameters=path_parameters, body={UNKNOWN: True}, media_type="application/json"
    )
    where = f"{operation.method.upper()} {operation.path} (unknown field)"
    try:
        response = case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=10)
    except Exception as exc:
        return f"{where}: {exc}"[:2000]
    error = response.json().get("error", {}) if response.status_code == 422 else {}
    if error.get("code") != "invalid_request" or f"'{UNKNOWN}'" not in error.get("message", ""):
        return f"{where}: {response.status_code} {response.text}"[:2000]
    return None


def _exercise(operation: Any, mode: GenerationMode, url: str, headers: dict[str, str]) -> str | None:
    """Run the operation's generated cases; the first failure, described, or None."""
    first: list[Any] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=10)
        first[:] = first or [case]

    try:
        run()
        for variant in _hostile_text_variants(operation, first[0]) if mode is GenerationMode.POSITIVE else ():
            variant.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=10)
    except Unsatisfiable:
        return None  # nothing in this operation can be made invalid (no parameters, no body)
    # Every operation's first failure is collected, then all are reported (a schemathesis FailureGroup
    # raised outside Hypothesis is a BaseExceptionGroup).
    except (Exception, BaseExceptionGroup) as exc:
        return f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"[:2000]
    return None


def _hostile_text_variants(operation: Any, case: Any) -> Iterator[Any]:
    """`case` again with HOSTILE_TEXT added to one of its strings (path, query, top-level body field);
    an optional query parameter the case left out is sent too, so every lookup gets its turn."""
    query = dict(case.query or {})
    places: dict[str, dict[str, Any]] = {
        "path_parameters": dict(case.path_parameters or {}),
        "query": {parameter.name: query.get(parameter.name, "x") for parameter in operation.query},
    }
    if isinstance(case.body, dict):
        places["body"] = case.body
    for where, values in places.items():
        for name, value in values.items():
            if not isinstance(value, str):
                continue
            for addition in HOSTILE_TEXT:
                parts = {
                    "path_parameters": case.path_parameters,
                    "query": query,
                    "body": case.body,
                    where: {**(query if where == "query" else values), name: value + addition},
                }
                yield operation.Case(
                    path_parameters=parts["path_parameters"],
                    query=parts["query"],
                    body=parts["body"],
                    media_type=case.media_type,
                )
