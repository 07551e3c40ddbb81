"""The server's own limits, with real ``voxrelay serve`` processes on loopback: each method's receive
limit, refused strangers that cost no memory, the connection limit and the idle-connection timeout.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import ROOT, load_pcm16
from voxrelay.cloud.handlers import ENVELOPE_BYTES
from voxrelay.protos import pb, pb_grpc

pytestmark = pytest.mark.slow

TOKEN = "limits-token-0123456789abcdef"
METADATA = (("authorization", f"Bearer {TOKEN}"),)
# Each channel its own TCP connection (gRPC shares one between channels to the same address otherwise),
# and room to send messages past the server's limits.
OWN_CONNECTION = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]


class Serve:
    """``voxrelay serve --port 0 EXTRA...`` as a process, its stderr drained by a thread."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxrelay", "serve", "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.errors: list[str] = []
        threading.Thread(target=lambda: self.errors.extend(self.proc.stderr or ()), daemon=True).start()
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise AssertionError(f"serve did not start: {line!r} {''.join(self.errors)}")
        self.address = line.split()[-1]

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=OWN_CONNECTION)

    def memory_kib(self, field: str) -> int:
        """``VmRSS`` or ``VmHWM`` (the peak resident set) of the server process."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for the server")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def limited() -> Iterator[Serve]:
    """Recognize calls of at most 2 s, three connections, connections closed after 1 s without calls."""
    server = Serve("--max-segment-seconds", "2", "--max-connections", "3", "--connection-idle", "1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """Default limits behind a device token."""
    tokens = tmp_path_factory.mktemp("limits") / "tokens.txt"
    tokens.write_text(f"{TOKEN} tester\n")
    server = Serve("--auth-token-file", str(tokens))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def speech(speech_dir: Path) -> bytes:
    """1.5 s of the JFK recording, 16 kHz PCM16."""
    return load_pcm16(speech_dir / "asr" / "jfk_inaugural_1961.wav")[:24000].tobytes()


def refusal(call: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    return call.code(), call.details() or ""


def test_each_method_refuses_a_message_over_its_own_limit(limited: Serve, speech: bytes) -> None:
    with limited.channel() as channel:
        stub = pb_grpc.RecognizerStub(channel)
        assert stub.Recognize(pb.RecognizeRequest(audio=speech), timeout=120).text  # within the limit: served
        # Over Recognize's limit (2 s of 48 kHz stereo float32 and its envelope): refused unread.
        limit = 2 * 48000 * 2 * 4 + ENVELOPE_BYTES
        with pytest.raises(grpc.RpcError) as info:
            stub.Recognize(pb.RecognizeRequest(audio=bytes(limit + 1000)), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refusal(info.value)
        # A Stream message larger than one chunk, though well under Recognize's limit: Stream's own limit.
        big = pb.StreamRequest(audio=pb.AudioChunk(audio=bytes(400_000)))
        config = pb.StreamRequest(config=pb.SessionConfig(device_id="limits", session_id="s"))
        start = pb.StreamRequest(start=pb.SegmentStart(segment_id="limits/s/0"))
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Stream(iter([config, start, big]), timeout=60))
        code, details = refusal(info.value)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "over this method's limit" in details, details
        # The server is still there for the next caller.
        assert stub.GetInfo(pb.GetInfoRequest(), timeout=30).limits.max_chunk_bytes == 256 * 1024


def test_large_requests_without_a_token_are_refused_without_growing_the_server(guarded: Serve) -> None:
    with guarded.channel() as channel:
        stub = pb_grpc.RecognizerStub(channel)
        stub.GetInfo(pb.GetInfoRequest(), metadata=METADATA, timeout=30)  # warmed up, with a token
        peak_before = guarded.memory_kib("VmHWM")
        request = pb.RecognizeRequest(
            audio=bytes(20_000_000), format=pb.AudioFormat(encoding=pb.FLOAT32, sample_rate_hz=48000)
        )
        calls = [stub.Recognize.future(request, timeout=120) for _ in range(16)]
        codes = []
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call.result()
            codes.append(info.value.code())
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 16
        # 320 MB sent; the server's peak resident set grew by less than 50 MB.
        grown_mib = (guarded.memory_kib("VmHWM") - peak_before) / 1024
        assert grown_mib < 50, f"the server's peak RSS grew by {grown_mib:.0f} MB"
        assert stub.GetInfo(pb.GetInfoRequest(), metadata=METADATA, timeout=30).limits.max_chunk_bytes > 0


def test_connections_past_the_limit_are_refused_and_a_freed_one_is_reused(limited: Serve) -> None:
    held = [limited.channel() for _ in range(3)]
    # Streams kept open, so that the idle-connection timeout leaves these connections alone.
    gates = [threading.Event() for _ in held]
    streams = []
    try:
        for channel, gate in zip(held, gates, strict=True):

            def requests(gate: threading.Event = gate) -> Iterator[pb.StreamRequest]:
                yield pb.StreamRequest(config=pb.SessionConfig(device_id="held", session_id="c"))
                gate.wait(60)

            stream = pb_grpc.RecognizerStub(channel).Stream(requests(), timeout=90)
            assert next(stream).HasField("accepted")
            streams.append(stream)
        with limited.channel() as extra, pytest.raises(grpc.RpcError) as info:
            pb_grpc.RecognizerStub(extra).GetInfo(pb.GetInfoRequest(), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, refusal(info.value)
    finally:
        for gate in gates:
            gate.set()
        for stream in streams:
            list(stream)
        for channel in held:
            channel.close()
    # The connections closed, a new one is accepted (the server may take a moment to see them go).
    for attempt in range(20):
        with limited.channel() as channel:
            try:
                pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=30)
                break
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE and attempt < 19, refusal(err)
                threading.Event().wait(0.5)


def test_a_connection_without_calls_is_closed_by_the_server(limited: Serve) -> None:
    went_idle = threading.Event()
    seen: list[grpc.ChannelConnectivity] = []

    def watch(state: grpc.ChannelConnectivity) -> None:
        seen.append(state)
        if grpc.ChannelConnectivity.READY in seen and state == grpc.ChannelConnectivity.IDLE:
            went_idle.set()

    with limited.channel() as channel:
        stub = pb_grpc.RecognizerStub(channel)
        stub.GetInfo(pb.GetInfoRequest(), timeout=30)
        channel.subscribe(watch)
        # The client never lets go of its connection on its own; the server's GOAWAY after 1 s
        # without calls takes it back to IDLE.
        assert went_idle.wait(60), seen
        channel.unsubscribe(watch)
        assert stub.GetInfo(pb.GetInfoRequest(), timeout=30).limits.max_chunk_bytes > 0  # it reconnects
