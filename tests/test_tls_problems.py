"""TLS problems said in words on both sides: expired, not yet valid, wrong CA, a key that is not the
certificate's, a certificate about to expire, a client certificate the server refuses.

The recognizer's checks run on its own files at start; the edge's against bare TLS gRPC servers on
loopback (no model needed), made to have the problem the test is about.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import ROOT
from tests.pki import Issued, issue, make_ca
from voxrelay.cloud.security import server_credentials
from voxrelay.cloud.settings import ServerSettings
from voxrelay.edge.link.channel import UplinkError, connect
from voxrelay.edge.link.settings import UplinkSettings
from voxrelay.errors import InvalidArgument, VoxrelayError

DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued | Path]:
    d = tmp_path_factory.mktemp("tlsproblems")
    server_ca, client_ca, other_ca = make_ca(d, "server-ca"), make_ca(d, "client-ca"), make_ca(d, "other-ca")
    return {
        "server_ca": server_ca[0].cert,
        "client_ca": client_ca[0].cert,
        "other_ca": other_ca[0].cert,
        "server": issue(d, "server", server_ca, server=True, valid_for=365 * DAY),
        "expired_server": issue(d, "old-server", server_ca, server=True, valid_from=-30 * DAY, valid_for=-2 * DAY),
        "future_server": issue(d, "new-server", server_ca, server=True, valid_from=3 * DAY, valid_for=30 * DAY),
        "soon_server": issue(d, "soon-server", server_ca, server=True, valid_for=5 * DAY),
        "client": issue(d, "edge-1", client_ca, server=False),
        "expired_client": issue(d, "edge-old", client_ca, server=False, valid_from=-30 * DAY, valid_for=-1 * DAY),
        "stranger": issue(d, "stranger", other_ca, server=False),
    }


def pair(certs: dict[str, Issued | Path], name: str) -> Issued:
    found = certs[name]
    assert isinstance(found, Issued)
    return found


def settings_with(cert: Issued, key: Path | None = None, client_ca: Path | None = None) -> ServerSettings:
    return ServerSettings(
        port=0,
        tls_cert=str(cert.cert),
        tls_key=str(key or cert.key),
        tls_client_ca=str(client_ca) if client_ca else None,
    )


def test_the_server_refuses_its_own_bad_certificate(certs: dict[str, Issued | Path]) -> None:
    with pytest.raises(
        VoxrelayError, match=r"--tls-cert: the certificate in .*old-server.crt \(CN=old-server\) expired on"
    ):
        server_credentials(settings_with(pair(certs, "expired_server")))
    with pytest.raises(VoxrelayError, match=r"is not valid before .*check the clock"):
        server_credentials(settings_with(pair(certs, "future_server")))
    mismatched = settings_with(pair(certs, "server"), key=pair(certs, "client").key)
    with pytest.raises(VoxrelayError, match=r"--tls-key: .*edge-1.key is not the private key of the certificate"):
        server_credentials(mismatched)


def test_the_server_warns_about_a_certificate_that_expires_soon(
    certs: dict[str, Issued | Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert server_credentials(settings_with(pair(certs, "soon_server"))) is not None
    (warning,) = [r.getMessage() for r in caplog.records if "expires on" in r.getMessage()]
    assert "(CN=soon-server)" in warning and ("in 5.0 days" in warning or "in 4.9 days" in warning), warning
    caplog.clear()
    server_credentials(settings_with(pair(certs, "server")))
    assert not [r for r in caplog.records if "expires on" in r.getMessage()]


class BareTlsServer:
    """A gRPC server with no service at all, only TLS with the given certificate (not checked), run by
    its own event loop thread."""

    def __init__(self, cert: Issued, client_ca: Path | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[grpc.aio.Server, int]:
            credentials = grpc.ssl_server_credentials(
                [(cert.key.read_bytes(), cert.cert.read_bytes())],
                root_certificates=client_ca.read_bytes() if client_ca else None,
                require_client_auth=client_ca is not None,
            )
            server = grpc.aio.server()
            port = server.add_secure_port("127.0.0.1:0", credentials)
            await server.start()
            return server, port

        self.server, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def connect(self, **tls: str) -> str:
        """What the edge says when it connects with ``tls`` settings (its one line)."""
        settings = UplinkSettings(server=f"127.0.0.1:{self.port}", device_id="d", connect_timeout=5, **tls)

        async def attempt() -> str:
            try:
                channel = await connect(settings)
            except (UplinkError, InvalidArgument) as err:
                return err.message
            await channel.close()
            raise AssertionError("connected although TLS should have failed")

        return asyncio.run(attempt())

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture()
def bare(certs: dict[str, Issued | Path]) -> Iterator[dict[str, BareTlsServer]]:
    servers: dict[str, BareTlsServer] = {}

    def make(name: str, client_ca: Path | None = None) -> BareTlsServer:
        servers[name] = BareTlsServer(pair(certs, name), client_ca)
        return servers[name]

    yield make  # type: ignore[misc]
    for server in servers.values():
        server.close()


def test_the_edge_says_what_is_wrong_with_the_servers_certificate(
    certs: dict[str, Issued | Path], bare: object
) -> None:
    make = bare
    expired = make("expired_server")  # type: ignore[operator]
    message = expired.connect(tls_ca=str(certs["server_ca"]))
    assert "TLS: the certificate of the recognizer" in message and "(CN=old-server) expired on" in message, message
    good = make("server")  # type: ignore[operator]
    message = good.connect(tls_ca=str(certs["other_ca"]))
    assert "is not signed by the CA in --tls-ca (CN=other-ca)" in message, message


def test_the_edge_says_what_is_wrong_with_its_own_certificate(certs: dict[str, Issued | Path], bare: object) -> None:
    mtls = bare("server", certs["client_ca"])  # type: ignore[operator]
    old = pair(certs, "expired_client")
    message = mtls.connect(tls_ca=str(certs["server_ca"]), tls_cert=str(old.cert), tls_key=str(old.key))
    assert message.startswith("--tls-cert: the certificate in") and "expired on" in message, message
    message = mtls.connect(tls_ca=str(certs["server_ca"]))
    assert "requires a client certificate" in message, message
    stranger = pair(certs, "stranger")
    message = mtls.connect(tls_ca=str(certs["server_ca"]), tls_cert=str(stranger.cert), tls_key=str(stranger.key))
    assert "does not trust the CA that signed this device's certificate" in message or "refused" in message, message
    assert "CN=stranger" in message, message


def test_a_mismatched_client_key_is_one_line_from_the_command(certs: dict[str, Issued | Path]) -> None:
    client, other = pair(certs, "client"), pair(certs, "stranger")
    run = subprocess.run(
        [
            *(sys.executable, "-m", "voxrelay", "transcribe", "--server", "127.0.0.1:9", "--tls-ca"),
            *(str(certs["server_ca"]), "--tls-cert", str(client.cert), "--tls-key", str(other.key)),
            str(ROOT / "samples" / "voxrelay-sample.wav"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not the private key of the certificate" in lines[0], run.stderr
