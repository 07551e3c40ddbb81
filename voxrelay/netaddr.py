"""Host names and addresses, shared by both sides: is an address loopback, how to split HOST:PORT."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def split_host_port(address: str) -> tuple[str, str]:
    """``"[::1]:50051"`` → ``("::1", "50051")``; ``"host:50051"`` → ``("host", "50051")``."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the usual names of the local host (no DNS lookup is made)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
