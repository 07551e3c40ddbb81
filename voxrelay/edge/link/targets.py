"""Where the edge sends segments: one recognizer, several replicas, or a DNS name that resolves to many.

``--server`` takes ``HOST:PORT``; a comma-separated list of them (or the flag repeated); or a gRPC
``dns:///NAME:PORT`` target, such as a Kubernetes headless Service, whose name resolves to every ready
replica and is resolved again when connections break. With several addresses (a list, or any
``dns:///`` target) the channel balances with gRPC's ``round_robin`` over the replicas that pass gRPC
client-side health checks (``grpc.health.v1`` of the ``voxrelay.v1.Recognizer`` service): a replica
that dies or drains stops being picked, and a session whose stream broke is resent on another one.

A list of host names is resolved once, when the channel opens (use a ``dns:///`` name for a set that
changes); with TLS, the first host's name is the one the certificates are checked against.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass

from voxrelay.errors import InvalidArgument, Unavailable
from voxrelay.netaddr import is_loopback, split_host_port
from voxrelay.protos import SERVICE_NAME

DNS_PREFIXES = ("dns:///", "dns://")


def service_config() -> str:
    """round_robin over the replicas that report SERVING on the recognizer's health service."""
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "healthCheckConfig": {"serviceName": SERVICE_NAME},
        }
    )


def _host_port(flag: str, value: str) -> tuple[str, int]:
    host, port = split_host_port(value)
    if ":" not in value or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(
            f"{flag}: {value!r} is not HOST:PORT (e.g. 127.0.0.1:50051), a list A:PORT,B:PORT or dns:///NAME:PORT"
        )
    return host, int(port)


@dataclass(frozen=True)
class Target:
    """A parsed ``--server``: its hosts and ports, and whether the channel balances over replicas."""

    given: str
    addresses: tuple[tuple[str, int], ...]
    dns: bool = False

    @classmethod
    def parse(cls, value: str, flag: str = "server") -> Target:
        value = value.strip()
        for prefix in DNS_PREFIXES:
            if value.startswith(prefix):
                rest = value[len(prefix) :]
                if prefix == "dns://":  # dns://AUTHORITY/NAME:PORT
                    _, slash, rest = rest.partition("/")
                    if not slash:
                        break
                return cls(value, (_host_port(flag, rest),), dns=True)
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise InvalidArgument(f"{flag}: empty; give HOST:PORT")
        return cls(value, tuple(_host_port(flag, p) for p in parts))

    @property
    def balanced(self) -> bool:
        return self.dns or len(self.addresses) > 1

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(host for host, _ in self.addresses)

    @property
    def loopback(self) -> bool:
        return all(is_loopback(host) for host in self.hosts)

    @property
    def authority(self) -> str:
        """The name TLS certificates are checked against and sent as ``:authority``."""
        host, port = self.addresses[0]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def grpc_target(self) -> str:
        """The channel target: as given for one address or a dns: name; ipv4:/ipv6: lists for several.

        Host names in a list are resolved here (blocking); an unresolvable one is an Unavailable error.
        """
        if self.dns or len(self.addresses) == 1:
            if self.dns:
                return self.given
            return self.authority
        v4: list[str] = []
        v6: list[str] = []
        for host, port in self.addresses:
            for address in _resolve(host, port):
                if isinstance(address, ipaddress.IPv4Address):
                    v4.append(f"{address}:{port}")
                else:
                    v6.append(f"[{address}]:{port}")
        # gRPC takes one address family per list; IPv4 wins when a name has both (localhost).
        chosen, scheme = (v4, "ipv4") if v4 else (v6, "ipv6")
        return f"{scheme}:{','.join(dict.fromkeys(chosen))}"


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise Unavailable(f"server: cannot resolve {host}: {err.strerror or err}") from err
    found = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            found.append(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
    v4 = [a for a in found if isinstance(a, ipaddress.IPv4Address)]
    return list(dict.fromkeys(v4 or found))
