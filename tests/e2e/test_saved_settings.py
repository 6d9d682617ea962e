"""Two real `entitle serve` processes on one PostgreSQL: the first run's link makes an operator on one,
a Stripe key saved through its /admin/setup is used by the other within seconds, without a restart."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from entitle.services.identity.encryption import generate_key
from tests.e2e.processes import EntitleProcess, process_env
from tests.factories import eventually
from tests.web.test_pages import csrf_of

SECRET = "sk_test_" + "Pp4" * 10


async def test_a_key_saved_through_one_process_is_used_by_the_other(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several processes share PostgreSQL; SQLite is served by one process")
    from entitle.db.engine import Database
    from tests.conftest import _empty_all_tables

    database = Database(database_url)
    await _empty_all_tables(database)
    await database.dispose()
    # Both processes decrypt what the other saved: one encryption key, as a deployment has.
    env = process_env(database_url, tmp_path, ENTITLE_ENCRYPTION_KEY=generate_key())
    with EntitleProcess.server(env, tmp_path) as first, EntitleProcess.server(env, tmp_path) as second:
        found = re.search(r"open (http\S+/admin/first-run\?token=\S+) to make the first one", first.output())
        assert found, first.output()
        link = re.sub(r"^http://[^/]+", first.url, found.group(1))
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(second.url + "/v1/status")).json()["stores"]["stripe"][
                "configured"
            ] is False
            page = await http.get(link)
            assert page.status_code == 200, page.text
            made = await http.post(
                first.url + "/admin/first-run",
                data={
                    "csrf_token": csrf_of(page),
                    "token": link.split("token=", 1)[1],
                    "email": "owner@example.com",
                    "password": "correct horse battery",
                },
            )
            assert made.status_code == 303, made.text
            setup = await http.get(first.url + "/admin/setup")
            saved = await http.post(
                first.url + "/admin/setup/stripe",
                data={
                    "csrf_token": csrf_of(setup),
                    "stripe_secret_key": SECRET,
                    "stripe_publishable_key": "pk_test_e2e",
                },
            )
            assert saved.status_code == 303, saved.text

            async def configured() -> bool:
                status = (await http.get(second.url + "/v1/status")).json()
                return bool(status["stores"]["stripe"]["configured"])

            await eventually(configured, timeout=10, message="the other process never saw the saved key")
        for process in (first, second):
            assert SECRET not in process.output()
