"""`voxrelay serve` as a real process: the listening line, reflection, graceful stop on signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import load_pcm16
from tests.pki import make_pki
from voxrelay.protos import SERVICE_NAME, pb, pb_grpc

pytestmark = pytest.mark.slow


def start_serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise AssertionError(f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}")
    return proc, line.removeprefix("listening on ")


def test_serve_prints_address_answers_and_stops_on_ctrl_c() -> None:
    proc, address = start_serve("--reflection")
    try:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        with grpc.insecure_channel(address) as channel:
            info = pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
            assert info.models[0].name == "tiny.en"
            from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
            names = {s.name for s in reply.list_services_response.service}
            assert SERVICE_NAME in names and "grpc.health.v1.Health" in names
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_sigterm_finishes_in_flight_segment_then_refuses(speech_dir: Path) -> None:
    proc, address = start_serve("--grace", "30")
    audio = load_pcm16(speech_dir / "asr" / "jfk_inaugural_1961.wav").tobytes()
    responses: list[pb.StreamResponse] = []
    ended = threading.Event()
    stop_sending = threading.Event()

    def requests() -> Iterator[pb.StreamRequest]:
        yield pb.StreamRequest(config=pb.SessionConfig(device_id="d", session_id="s"))
        yield pb.StreamRequest(start=pb.SegmentStart(segment_id="d/s/0"))
        for i in range(0, len(audio), 32000):
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=audio[i : i + 32000]))
        yield pb.StreamRequest(end=pb.SegmentEnd(segment_id="d/s/0"))
        ended.set()
        stop_sending.wait(60)

    channel = grpc.insecure_channel(address)
    call = pb_grpc.RecognizerStub(channel).Stream(requests(), timeout=120)
    try:
        for response in call:
            responses.append(response)
            if response.HasField("ack"):
                proc.send_signal(signal.SIGTERM)  # the segment is in flight now
                break
        for response in call:
            responses.append(response)
            if response.HasField("result"):
                break
        results = [r.result for r in responses if r.HasField("result")]
        assert results and "ask not" in results[0].text.lower()
        # Now draining: a new call is refused with UNAVAILABLE (or the port is already closed).
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.RecognizerStub(channel).Recognize(pb.RecognizeRequest(audio=audio[:32000]), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stop_sending.set()
        call.cancel()
        channel.close()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_serve_refuses_unknown_model_with_a_clear_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "voxrelay", "serve", "--port", "0", "--model", "no-such-model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2  # a usage error, like --backend nope
    assert "no-such-model" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_logs_what_it_runs_once_at_start(tmp_path: Path) -> None:
    from voxrelay.cli import STARTUP_LOGGER
    from voxrelay.cloud.server import STARTUP_LOGGER as SERVER_STARTUP_LOGGER

    assert STARTUP_LOGGER == SERVER_STARTUP_LOGGER
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("0123456789abcdef0123456789abcdef kitchen\n")
    pki = make_pki(tmp_path)
    tls = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key), "--tls-client-ca", str(pki.client_ca))
    proc, address = start_serve("--auth-token-file", str(tokens), "--workers", "1", "--threads", "1", *tls)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.server_ca.read_bytes(),
        private_key=pki.client.key.read_bytes(),
        certificate_chain=pki.client.cert.read_bytes(),
    )
    with grpc.secure_channel(address, credentials) as channel:  # answering: its signal handlers are in place
        token = (("authorization", "Bearer 0123456789abcdef0123456789abcdef"),)
        pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), metadata=token, timeout=30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [line for line in err.splitlines() if " serving " in line]  # at the default log level
    assert len(lines) == 1, err
    line = lines[0]
    for part in (
        "INFO voxrelay.startup: serving tiny.en: tiny.en version ",
        " on faster-whisper (cpu/int8",  # the compute type CTranslate2 chose for int8 on this CPU
        "inference 1 worker(s) x 1 CPU thread(s), batches of up to 2",
        "64 streams (16 per client)",
        "60 s per segment",
        "TLS on, mutual (client certificates)",
        "device tokens on",
        "admin tokens off",
    ):
        assert part in line, line


def test_the_recognizer_imports_neither_scipy_stats_nor_aiohttp() -> None:
    # What only some commands need stays out of `serve`'s memory: scipy.stats (eval's calibration
    # report; the drift monitors' Wasserstein distance is numpy), aiohttp (the HTTP front, the review page).
    code = (
        "import sys\n"
        "import voxrelay.cli, voxrelay.cloud.server, voxrelay.cloud.session, voxrelay.monitoring.monitor\n"
        "loaded = [m for m in ('scipy.stats', 'aiohttp') if m in sys.modules]\n"
        "print(loaded); sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
