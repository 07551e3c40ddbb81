"""Only the right clients in: TLS, mutual TLS and device tokens on a real recognizer, refused calls refused.

Certificates are made at test time (tests/pki.py); the servers reuse the session's loaded tiny.en.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT, ServerThread
from tests.pki import Pki, make_pki
from voxrelay.cloud.security import TokenSet
from voxrelay.cloud.settings import ServerSettings
from voxrelay.edge.link.uplink import UplinkSettings
from voxrelay.errors import InvalidArgument
from voxrelay.protos import pb, pb_grpc

pytestmark = pytest.mark.slow

TOKEN = "edge-token-0123456789abcdef"
SAMPLE = ROOT / "samples" / "voxrelay-sample.wav"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text(f"# accepted device tokens\n{TOKEN} kitchen-pi\n\nanother-token-fedcba9876543210\n")
    return path


@pytest.fixture(scope="module")
def tls_server(engines: dict[str, Any], pki: Pki, token_file: Path) -> Iterator[ServerThread]:
    settings = ServerSettings(
        port=0, tls_cert=str(pki.server.cert), tls_key=str(pki.server.key), auth_token_file=str(token_file)
    )
    running = ServerThread(settings, engines)
    yield running
    running.stop(close_engines=False)


@pytest.fixture(scope="module")
def mtls_server(engines: dict[str, Any], pki: Pki) -> Iterator[ServerThread]:
    settings = ServerSettings(
        port=0, tls_cert=str(pki.server.cert), tls_key=str(pki.server.key), tls_client_ca=str(pki.client_ca)
    )
    running = ServerThread(settings, engines)
    yield running
    running.stop(close_engines=False)


def tls_channel(address: str, pki: Pki, client: Any = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.server_ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.secure_channel(address, credentials)


def get_info(channel: grpc.Channel, token: str | None = None) -> pb.ServerInfo:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    return pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10, metadata=metadata)


def voxrelay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_tls_with_a_token_is_served(tls_server: ServerThread, pki: Pki) -> None:
    with tls_channel(tls_server.address, pki) as channel:
        assert get_info(channel, TOKEN).models[0].name == "tiny.en"
        assert get_info(channel, "another-token-fedcba9876543210").models[0].name == "tiny.en"


def test_calls_without_a_known_token_are_unauthenticated(tls_server: ServerThread, pki: Pki) -> None:
    with tls_channel(tls_server.address, pki) as channel:
        for token, says in ((None, "needs a device token"), ("wrong-token-0000000000000", "not accepted")):
            with pytest.raises(grpc.RpcError) as info:
                get_info(channel, token)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert says in info.value.details()
            with pytest.raises(grpc.RpcError) as info:
                requests = iter([pb.StreamRequest(config=pb.SessionConfig(device_id="d", session_id="s"))])
                list(pb_grpc.RecognizerStub(channel).Stream(requests, timeout=10))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Probes need no token.
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_to_a_tls_server_is_refused(tls_server: ServerThread) -> None:
    with grpc.insecure_channel(tls_server.address) as channel, pytest.raises(grpc.RpcError) as info:
        get_info(channel, TOKEN)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_transcribe_over_tls_with_a_token(tls_server: ServerThread, pki: Pki, token_file: Path) -> None:
    edge_token = token_file.parent / "edge-token.txt"
    edge_token.write_text(f"{TOKEN}\n")
    run = voxrelay(
        *("transcribe", "--server", tls_server.address, "--tls-ca", str(pki.server_ca)),
        *("--auth-token-file", str(edge_token), str(SAMPLE)),
    )
    assert run.returncode == 0, run.stderr
    assert "welcome" in run.stdout.lower()


def test_a_refused_edge_exits_1_with_one_clear_line(tls_server: ServerThread, pki: Pki, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("wrong-token-0000000000000\n")
    for extra in ((), ("--auth-token-file", str(wrong))):
        run = voxrelay(
            "transcribe", "--server", tls_server.address, "--tls-ca", str(pki.server_ca), *extra, str(SAMPLE)
        )
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("voxrelay transcribe: "), run.stderr
        assert "device token" in lines[0] and tls_server.address in lines[0]


def test_mutual_tls_admits_only_clients_with_a_certificate_from_its_ca(mtls_server: ServerThread, pki: Pki) -> None:
    with tls_channel(mtls_server.address, pki, pki.client) as channel:
        assert get_info(channel).models[0].name == "tiny.en"
    for client in (None, pki.stranger):
        with tls_channel(mtls_server.address, pki, client) as channel, pytest.raises(grpc.RpcError) as info:
            get_info(channel)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_transcribe_over_mutual_tls(mtls_server: ServerThread, pki: Pki) -> None:
    run = voxrelay(
        *("transcribe", "--server", mtls_server.address, "--tls-ca", str(pki.server_ca)),
        *("--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key), str(SAMPLE)),
    )
    assert run.returncode == 0, run.stderr
    assert "welcome" in run.stdout.lower()


def test_plaintext_only_on_loopback_unless_insecure() -> None:
    with pytest.raises(InvalidArgument, match=r"refusing to serve plaintext on 0\.0\.0\.0"):
        ServerSettings(host="0.0.0.0")
    assert ServerSettings(host="0.0.0.0", insecure=True).insecure
    assert ServerSettings(host="::1").host == "::1"
    with pytest.raises(InvalidArgument, match="--tls-cert and --tls-key go together"):
        ServerSettings(tls_cert="server.crt")
    with pytest.raises(InvalidArgument, match="mutual TLS"):
        ServerSettings(tls_client_ca="ca.crt")
    with pytest.raises(InvalidArgument, match=r"refusing to send audio in plaintext to 10\.1\.2\.3"):
        UplinkSettings(server="10.1.2.3:50051", device_id="d")
    assert UplinkSettings(server="10.1.2.3:50051", device_id="d", insecure=True).insecure
    assert UplinkSettings(server="recognizer.example:443", device_id="d", tls=True).uses_tls
    assert UplinkSettings(server="localhost:50051", device_id="d").server == "localhost:50051"


def test_serve_refuses_plaintext_on_a_public_address_in_one_line() -> None:
    run = voxrelay("serve", "--host", "0.0.0.0", "--port", "0")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "--insecure" in run.stderr


def test_token_files_are_checked(tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    with pytest.raises(InvalidArgument, match="line 1: a token must have at least 16 characters"):
        TokenSet.load(str(short))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(InvalidArgument, match="holds no token"):
        TokenSet.load(str(empty))
    tokens = TokenSet.load(str(_write(tmp_path / "ok.txt", f"{TOKEN} kitchen\n")))
    assert tokens.principal((("authorization", f"Bearer {TOKEN}"),)) == "kitchen"
    assert tokens.principal((("authorization", f"Basic {TOKEN}"),)) is None
    assert tokens.principal(()) is None


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
