"""The gateway's pure parts: which address is the client's."""

from __future__ import annotations

from staybook.kernel.gateway import parse_networks, resolve_client_ip

PROXIES = parse_networks(["10.0.0.0/8", "192.0.2.10"])


def test_peer_is_the_client_without_trusted_proxies():
    assert resolve_client_ip("198.51.100.7", "203.0.113.1", []) == "198.51.100.7"


def test_forwarded_for_is_ignored_from_an_untrusted_peer():
    assert resolve_client_ip("198.51.100.7", "203.0.113.1", PROXIES) == "198.51.100.7"


def test_rightmost_untrusted_hop_is_the_client():
    # The client wrote a fake first hop; the proxies appended the real address after it.
    assert resolve_client_ip("10.1.2.3", "1.1.1.1, 203.0.113.5, 192.0.2.10", PROXIES) == "203.0.113.5"


def test_only_proxies_in_the_chain_falls_back_to_the_first_hop():
    assert resolve_client_ip("10.1.2.3", "10.0.0.9", PROXIES) == "10.0.0.9"


def test_garbage_hop_falls_back_to_the_peer():
    assert resolve_client_ip("10.1.2.3", "not-an-ip", PROXIES) == "10.1.2.3"
    assert resolve_client_ip(None, None, PROXIES) == "unknown"
