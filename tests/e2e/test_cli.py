"""The `entitle` command as a person runs it: a fresh folder, SQLite, the shipped sample catalog."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLE_")}
    env.update(extra)
    return env


def test_serve_migrates_the_embedded_database_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "entitle", "serve", "--port", str(port), "--no-worker", "--demo"],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"entitle serve did not start:\n{output}")
                time.sleep(0.2)
        assert response.json() == {"status": "ok"}
        register = httpx.post(
            f"http://127.0.0.1:{port}/v1/auth/register",
            json={"email": "ada@example.com", "password": "correct horse battery staple"},
        )
        assert register.status_code == 201
        assert (tmp_path / "entitle.db").exists()
        # The sample data: a demo account entitled through a promotional grant, and the sample catalog.
        demo = httpx.post(
            f"http://127.0.0.1:{port}/v1/auth/login",
            json={"email": "demo@example.com", "password": "entitle-demo-password"},
        ).json()
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v1/me/entitlements",
            headers={"Authorization": f"Bearer {demo['access_token']}"},
        ).json()
        assert answer["entitlements"]["pro"]["active"] is True
        assert answer["entitlements"]["pro"]["store"] == "promotional"
        assert answer["entitlements"]["pro"]["source"] == "grant"
        assert answer["balances"] == {"credits": 250}
        catalog = httpx.get(f"http://127.0.0.1:{port}/v1/catalog").json()
        assert {p["key"] for p in catalog["products"]} >= {"pro_monthly"}
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout:
            process.stdout.close()


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "entitle", "migrate"],
        cwd=tmp_path,
        env=_clean_env(ENTITLE_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "fresh.db") as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master where type='table'")}
    assert {"accounts", "identities", "provider_events", "account_events"} <= tables


def test_bad_configuration_is_one_clear_sentence(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "entitle", "serve"],
        cwd=tmp_path,
        env=_clean_env(ENTITLE_ENVIRONMENT="production"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "ENTITLE_ADMIN_API_KEY" in result.stderr


def test_doctor_checks_and_prints_the_urls_to_register(tmp_path: Path) -> None:
    env = _clean_env(
        ENTITLE_DATABASE_URL=f"sqlite:///{tmp_path / 'doctor.db'}",
        ENTITLE_PUBLIC_URL="https://billing.example.com",
    )
    before = subprocess.run(
        [sys.executable, "-m", "entitle", "doctor"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert before.returncode == 1
    assert "pending migrations" in before.stderr
    subprocess.run(
        [sys.executable, "-m", "entitle", "migrate"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    after = subprocess.run(
        [sys.executable, "-m", "entitle", "doctor"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert after.returncode == 0, after.stderr
    assert "https://billing.example.com/webhooks/stripe" in after.stderr
    assert "https://billing.example.com/webhooks/appstore" in after.stderr
    assert "customer.subscription.updated" in after.stderr
