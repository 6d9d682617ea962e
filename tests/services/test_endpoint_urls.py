"""Outbound webhook URLs: IPv6 transition addresses are judged by the IPv4 address they carry."""

from __future__ import annotations

import pytest

from entitle.services.delivery.endpoint_urls import BlockedURL, check_url


@pytest.mark.parametrize(
    "address",
    [
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
        "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 to the metadata service
        "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "fec0::1",  # site-local
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_transition_addresses_that_reach_internal_ipv4_are_refused_in_production(address: str) -> None:
    with pytest.raises(BlockedURL, match="not a public address"):
        check_url(f"https://[{address}]/hooks", development=False)


@pytest.mark.parametrize("address", ["2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_transition_addresses_that_reach_public_ipv4_are_allowed(address: str) -> None:
    assert check_url(f"https://[{address}]/hooks", development=False) == (address, 443)
