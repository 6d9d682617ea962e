"""Whose X-Forwarded-For is believed: only ENTITLE_TRUSTED_PROXIES' (issue 17, item 8).

A real server with `entitle serve`'s uvicorn options (the LiveServer fixture), connected to from
127.0.0.1: the address uvicorn itself would trust by default.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer

LIMITED = {"rate_limit_per_ip": "3/minute"}


async def _logins(server: LiveServer, forwarded_for: list[str]) -> list[int]:
    statuses = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for n, address in enumerate(forwarded_for):
            response = await http.post(
                "/v1/auth/login",
                json={"email": f"guess{n}@example.com", "password": "not the password at all"},
                headers={"X-Forwarded-For": address},
            )
            statuses.append(response.status_code)
    return statuses


@pytest.mark.parametrize("settings_overrides", [LIMITED])
async def test_a_forwarded_for_header_from_an_untrusted_peer_is_ignored(live_server: LiveServer) -> None:
    statuses = await _logins(live_server, [f"203.0.113.{n}" for n in range(1, 7)])

    assert 429 in statuses, statuses


@pytest.mark.parametrize("settings_overrides", [{**LIMITED, "trusted_proxies": "10.9.0.0/16, 127.0.0.1"}])
async def test_a_trusted_proxy_names_the_client_and_ipv6_counts_per_64(live_server: LiveServer) -> None:
    # Six clients behind the proxy, each within its own budget.
    assert 429 not in await _logins(live_server, [f"203.0.113.{n}" for n in range(1, 7)])
    # One IPv6 subscriber's /64, however many of its addresses it uses.
    statuses = await _logins(live_server, [f"2001:db8:5:6::{n:x}" for n in range(1, 7)])
    assert 429 in statuses, statuses
