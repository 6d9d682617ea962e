"""`entitle import accounts FILE`: each hash format signs its owner in (and becomes argon2id), re-runs
change nothing, and a bad line is reported by number with nothing of it stored."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from typer.testing import CliRunner

from entitle.cli import app
from entitle.cli.imports import read_lines
from entitle.context import AppContext
from entitle.core.models.accounts import Account, Identity, PasswordCredential
from entitle.providers.stripe.models import StripeCustomer
from entitle.services.identity.passwords import hash_format, verify_legacy
from tests.conftest import ADMIN_KEY

runner = CliRunner()
PASSWORD = "imported passphrase 1"
SALT = "Qx7salt0"


def django_hash(password: str, iterations: int = 1000) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${SALT}${base64.b64encode(digest).decode()}"


def werkzeug_pbkdf2(password: str, iterations: int = 1000) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT.encode(), iterations)
    return f"pbkdf2:sha256:{iterations}${SALT}${digest.hex()}"


def werkzeug_scrypt(password: str, n: int = 1024, r: int = 8, p: int = 1) -> str:
    digest = hashlib.scrypt(password.encode(), salt=SALT.encode(), n=n, r=r, p=p, dklen=64)
    return f"scrypt:{n}:{r}:{p}${SALT}${digest.hex()}"


HASHES = {
    "bcrypt-2b": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode(),
    "bcrypt-2y": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1),
    "bcrypt-2a": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4, prefix=b"2a")).decode(),
    "argon2": PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD),
    "django": django_hash(PASSWORD),
    "werkzeug-pbkdf2": werkzeug_pbkdf2(PASSWORD),
    "werkzeug-scrypt": werkzeug_scrypt(PASSWORD),
}


@pytest.mark.parametrize("name", sorted(HASHES))
def test_each_format_verifies_and_refuses_a_wrong_password(name: str) -> None:
    assert hash_format(HASHES[name]) is not None
    assert verify_legacy(HASHES[name], PASSWORD)
    assert not verify_legacy(HASHES[name], PASSWORD + "x")


def test_unknown_or_hostile_hashes_are_refused() -> None:
    for value in ("md5$abc$def", "plaintext", "pbkdf2_sha256$999999999$s$h", "scrypt:1048576:64:64$s$ab"):
        assert hash_format(value) is None
        assert not verify_legacy(value, PASSWORD)


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENTITLE_ENVIRONMENT", "test")
    monkeypatch.setenv("ENTITLE_DATABASE_URL", database_url)
    monkeypatch.setenv("ENTITLE_JWT_PRIVATE_KEY_PATH", str(tmp_path / "key.pem"))
    monkeypatch.delenv("ENTITLE_CATALOG", raising=False)


async def run_import(path: Path) -> Any:
    return await asyncio.to_thread(runner.invoke, app, ["import", "accounts", str(path)])


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


async def test_import_signs_everyone_in_and_upgrades_their_hash(
    cli_env: None, client: httpx.AsyncClient, context: AppContext, tmp_path: Path
) -> None:
    people = [
        {
            "email": f"{name}@example.com",
            "password_hash": value,
            "external_id": f"user-{name}",
            "email_verified": True,
        }
        for name, value in HASHES.items()
    ]
    people.append(
        {
            "email": "Sam@Example.com",
            "name": "Sam",
            "external_id": "user-sam",
            "created_at": "2019-05-01T10:00:00Z",
            "apple_sub": "001.sam.apple",
            "google_sub": "g-sam",
            "stripe_customer_id": "cus_SAM123",
        }
    )
    bad = {"email": "bad@example.com", "password_hash": "md5$x$y", "external_id": "user-bad"}
    source = write_lines(tmp_path / "users.jsonl", [*people, bad, "{not json", {"email": "no-at-sign"}])

    result = await run_import(source)
    assert result.exit_code == 1
    assert "8 created, 0 updated, 0 unchanged, 3 failed" in result.output
    assert "line 9:" in result.output and "password_hash" in result.output
    assert "line 10:" in result.output and "line 11:" in result.output

    async with context.database.sessionmaker() as db:
        assert await db.scalar(select(Account).where(Account.external_id == "user-bad")) is None
        sam = await db.scalar(select(Account).where(Account.external_id == "user-sam"))
        assert sam is not None and sam.email == "sam@example.com" and sam.created_at.year == 2019
        providers = set(
            (await db.scalars(select(Identity.provider).where(Identity.account_id == sam.id))).all()
        )
        assert providers == {"apple", "google"}
        assert (await db.get(StripeCustomer, sam.id)) is not None

    # Running it again changes nothing.
    again = await run_import(write_lines(tmp_path / "again.jsonl", people))
    assert again.exit_code == 0, again.output
    assert "0 created, 0 updated, 8 unchanged, 0 failed" in again.output

    for name in HASHES:
        login = await client.post(
            "/v1/auth/login", json={"email": f"{name}@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, (name, login.text)
        wrong = await client.post(
            "/v1/auth/login", json={"email": f"{name}@example.com", "password": "nope nope"}
        )
        assert wrong.status_code == 401
    async with context.database.sessionmaker() as db:
        stored = (await db.scalars(select(PasswordCredential.password_hash))).all()
    assert len(stored) == len(HASHES) and all(
        value.startswith("$argon2id$v=19$m=65536,t=3,p=4$") for value in stored
    )

    found = await client.get(
        "/v1/accounts", params={"external_id": "user-sam"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert [a["email"] for a in found.json()["accounts"]] == ["sam@example.com"]


async def test_a_line_that_contradicts_what_is_stored_is_refused_whole(
    cli_env: None, client: httpx.AsyncClient, context: AppContext, tmp_path: Path
) -> None:
    first = write_lines(tmp_path / "first.jsonl", [{"email": "a@example.com", "google_sub": "g-shared"}])
    assert (await run_import(first)).exit_code == 0
    clash = write_lines(
        tmp_path / "clash.jsonl",
        [
            {
                "email": "b@example.com",
                "external_id": "user-b",
                "google_sub": "g-shared",
                "stripe_customer_id": "cus_B",
            }
        ],
    )
    result = await run_import(clash)
    assert result.exit_code == 1 and "line 1:" in result.output and "another account" in result.output
    async with context.database.sessionmaker() as db:
        assert await db.scalar(select(Account).where(Account.email == "b@example.com")) is None
        assert await db.scalar(select(StripeCustomer).where(StripeCustomer.customer_id == "cus_B")) is None


async def test_hashes_with_unbounded_work_or_malformed_are_refused_line_by_line(
    cli_env: None, context: AppContext, tmp_path: Path
) -> None:
    b64 = "c2FsdHNhbHRzYWx0c2FsdA"
    hostile = [
        "$2b$31$" + "a" * 53,
        f"$argon2id$v=19$m=16777216,t=3,p=4${b64}${b64}",
        f"$argon2id$v=19$m=65536,t=1000000,p=4${b64}${b64}",
        "$2b$99$",
        "$argon2id$garbage",
    ]
    lines = [{"email": f"p{n}@example.com", "password_hash": value} for n, value in enumerate(hostile)]
    result = await run_import(write_lines(tmp_path / "hostile.jsonl", lines))
    assert result.exit_code == 1
    assert "0 created, 0 updated, 0 unchanged, 5 failed" in result.output
    assert "line 1: password_hash: Value error, has bcrypt cost 31, outside 4-14" in result.output
    assert "line 2:" in result.output and "memory m=16777216 KiB over 262144" in result.output
    assert "line 3:" in result.output and "passes t=1000000 over 10" in result.output
    assert "line 4:" in result.output and "not a well-formed bcrypt hash" in result.output
    assert "line 5:" in result.output and "not a well-formed argon2 hash" in result.output
    async with context.database.sessionmaker() as db:
        assert (await db.scalars(select(Account))).all() == []


async def test_bad_lines_are_reported_by_number_and_the_run_goes_on(
    cli_env: None, context: AppContext, tmp_path: Path
) -> None:
    source = tmp_path / "rough.jsonl"
    with source.open("w") as out:
        out.write("[" * 60_000 + "\n")
        out.write(json.dumps({"email": "old@example.com", "created_at": "0001-01-01T00:00:00+14:00"}) + "\n")
        out.write(json.dumps({"email": "nul@example.com", "name": "Pat\u0000"}) + "\n")
        out.write(json.dumps({"email": "long@example.com", "name": "x" * 300_000}) + "\n")
        out.write(json.dumps({"email": "fine@example.com", "created_at": "2020-02-02T02:00:00+14:00"}) + "\n")
    result = await run_import(source)
    assert result.exit_code == 1, result.output
    assert "1 created, 0 updated, 0 unchanged, 4 failed" in result.output
    assert "line 1: not JSON: The JSON document nests deeper than 64 levels." in result.output
    assert "line 2: created_at: Value error, is out of range" in result.output
    assert "line 3: name: Value error, contains a NUL character" in result.output
    assert "line 4: longer than 65536 bytes; not read" in result.output
    async with context.database.sessionmaker() as db:
        emails = (await db.scalars(select(Account.email))).all()
    assert emails == ["fine@example.com"]


def test_lines_are_read_with_bounded_memory() -> None:
    class Recording(io.BytesIO):
        largest = 0

        def readline(self, size: int | None = -1, /) -> bytes:
            assert size is not None and size > 0
            line = super().readline(size)
            Recording.largest = max(Recording.largest, len(line))
            return line

    source = Recording(b'{"a": 1}\n' + b"x" * 1000 + b"\n" + b'{"b": 2}\r\n' + b"\xff\n" + b"last")
    lines = list(read_lines(source, max_bytes=100))
    assert [(line.text, line.problem) for line in lines] == [
        ('{"a": 1}', None),
        ("", "longer than 100 bytes; not read"),
        ('{"b": 2}', None),
        ("", "not UTF-8"),
        ("last", None),
    ]
    assert Recording.largest <= 101
    assert sum(line.size for line in lines) == len(source.getvalue())
