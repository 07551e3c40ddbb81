"""The recognizer under pressure and abuse: admission limits, idle streams, vanished clients, bad bytes.

The servers here reuse the session's loaded tiny.en. To hold work in the queue deterministically, a
test occupies the engine's single inference worker with a blocker and releases it when it wants.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import ROOT, ServerThread, load_pcm16
from voxrelay.cloud.backends.base import DecodeOptions
from voxrelay.cloud.settings import ServerSettings
from voxrelay.protos import SERVICE_NAME, pb, pb_grpc

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "samples" / "voxrelay-sample.wav"


class Blocker:
    """Occupies an engine's only inference worker until released: a job of its own, taken by the
    worker, whose recognition waits for the release."""

    def __init__(self, engines: dict[str, Any]) -> None:
        self.engine = next(iter(engines.values()))
        assert self.engine.workers == 1
        self.release = threading.Event()
        self.marker = np.zeros(1600, dtype=np.float32)
        self.backend = self.engine.backend
        blocker = self

        class Gate:
            model = self.backend.model

            def transcribe(self, audio: Any, options: Any) -> Any:
                if audio is blocker.marker:
                    blocker.release.wait(60)
                return blocker.backend.transcribe(audio, options)

            def count_tokens(self, text: str) -> int:
                return int(blocker.backend.count_tokens(text))

            def close(self) -> None:
                blocker.backend.close()

        self.engine.backend = Gate()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.future = asyncio.run_coroutine_threadsafe(
            self.engine.recognize(self.marker, DecodeOptions(), "blocker"), self.loop
        )
        deadline = time.monotonic() + 10
        while self.engine.running < 1 and time.monotonic() < deadline:
            time.sleep(0.01)

    def __enter__(self) -> Blocker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.future.result(60)
        self.engine.backend = self.backend
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Client:
    """A Stream call fed from a queue, its responses collected by a thread."""

    def __init__(self, stub: pb_grpc.RecognizerStub, session: str) -> None:
        self.requests: queue.Queue[pb.StreamRequest | None] = queue.Queue()
        self.responses: list[pb.StreamResponse] = []
        self.error: grpc.RpcError | None = None
        self.changed = threading.Condition()
        self.call = stub.Stream(iter(self.requests.get, None), timeout=120)
        self.send(pb.StreamRequest(config=pb.SessionConfig(device_id="robust", session_id=session)))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                with self.changed:
                    self.responses.append(response)
                    self.changed.notify_all()
        except grpc.RpcError as err:
            with self.changed:
                self.error = err
                self.changed.notify_all()

    def send(self, *requests: pb.StreamRequest) -> None:
        for request in requests:
            self.requests.put(request)

    def segment(self, segment_id: str, audio: bytes) -> None:
        self.send(
            pb.StreamRequest(start=pb.SegmentStart(segment_id=segment_id)),
            *(pb.StreamRequest(audio=pb.AudioChunk(audio=audio[i : i + 64000])) for i in range(0, len(audio), 64000)),
            pb.StreamRequest(end=pb.SegmentEnd(segment_id=segment_id)),
        )

    def wait(self, predicate: Any, timeout: float = 60) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), timeout), (self.responses, self.error)

    def kinds(self) -> list[str]:
        return [str(r.WhichOneof("message")) for r in self.responses]

    def close(self) -> None:
        self.requests.put(None)
        self.thread.join(60)


def seconds_of_speech(speech_dir: Path, seconds: float) -> bytes:
    audio = load_pcm16(speech_dir / "asr" / "jfk_inaugural_1961.wav")
    return audio[: int(seconds * 16000)].tobytes()


@pytest.fixture(scope="module")
def limited(engines: dict[str, Any]) -> Iterator[ServerThread]:
    settings = ServerSettings(
        port=0,
        max_segment_seconds=8,
        max_queued_audio_seconds=10,
        max_pending_segments=2,
        max_concurrent_streams=2,
        retry_after_seconds=1.5,
        stream_idle_seconds=1.0,
    )
    running = ServerThread(settings, engines)
    yield running
    running.stop(close_engines=False)


@pytest.fixture()
def stub(limited: ServerThread) -> Iterator[pb_grpc.RecognizerStub]:
    with grpc.insecure_channel(limited.address) as channel:
        yield pb_grpc.RecognizerStub(channel)


def pushback(err: grpc.RpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get("grpc-retry-pushback-ms")  # type: ignore[attr-defined]


def test_admission_limits_refuse_with_a_retry_hint_and_the_rest_goes_on(
    stub: pb_grpc.RecognizerStub, limited: ServerThread, engines: dict[str, Any], speech_dir: Path
) -> None:
    three = seconds_of_speech(speech_dir, 3)
    five = seconds_of_speech(speech_dir, 5)
    with Blocker(engines):
        a = Client(stub, "a")
        a.segment("robust/a/0", three)
        a.segment("robust/a/1", three)
        a.wait(lambda c: c.kinds().count("ack") == 2)
        # Per stream: a third segment awaiting its result is one too many.
        a.send(pb.StreamRequest(start=pb.SegmentStart(segment_id="robust/a/2")))
        b = Client(stub, "b")
        b.wait(lambda c: "accepted" in c.kinds())
        # Streams: two are open, a third is refused at once.
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Stream(iter([pb.StreamRequest(config=pb.SessionConfig(device_id="d", session_id="c"))])))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "2 concurrent streams (limit 2)" in info.value.details() and pushback(info.value) == "1500"
        # Queued audio: 6 s wait for the model; 5 s more would pass the 10 s limit.
        b.segment("robust/b/0", five)
        b.wait(lambda c: c.error is not None)
        assert b.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[union-attr]
        assert "6.0 s of audio is queued for recognition (limit 10 s)" in b.error.details()  # type: ignore[union-attr]
        assert pushback(b.error) == "1500"  # type: ignore[arg-type]
        with pytest.raises(grpc.RpcError) as info:
            stub.Recognize(pb.RecognizeRequest(audio=five), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and pushback(info.value) == "1500"
        # 4 s more just fit (10 s queued); then a new stream is refused before it sends any audio.
        pending = threading.Thread(
            target=stub.Recognize, args=(pb.RecognizeRequest(audio=seconds_of_speech(speech_dir, 4)),)
        )
        pending.start()
        deadline = time.monotonic() + 30
        while limited.server.core.queued_audio_seconds < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Stream(iter([pb.StreamRequest(config=pb.SessionConfig(device_id="d", session_id="e"))])))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and pushback(info.value) == "1500"
        assert "10.0 s of audio is queued for recognition (limit 10 s)" in info.value.details()
        # A segment over the per-segment limit is no busy server: no retry hint.
        with pytest.raises(grpc.RpcError) as info:
            stub.Recognize(pb.RecognizeRequest(audio=seconds_of_speech(speech_dir, 9)), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and pushback(info.value) is None
    # Released: a's two segments get their results, then its stream ends over the third.
    a.wait(lambda c: c.error is not None)
    pending.join(60)
    assert a.kinds().count("result") == 2
    assert a.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[union-attr]
    assert "2 segments of this stream await their results (limit 2)" in a.error.details()  # type: ignore[union-attr]
    a.close()
    b.close()
    result = stub.Recognize(pb.RecognizeRequest(audio=five), timeout=60)
    assert "my fellow americans" in result.text.lower()


def test_idle_streams_are_closed_but_waiting_for_results_is_not_idle(
    stub: pb_grpc.RecognizerStub, engines: dict[str, Any], speech_dir: Path
) -> None:
    with Blocker(engines) as blocker:
        client = Client(stub, "idle")
        client.segment("robust/idle/0", seconds_of_speech(speech_dir, 2))
        client.wait(lambda c: "ack" in c.kinds())
        time.sleep(1.5)  # longer than stream_idle_seconds, but a result is pending
        blocker.release.set()
        client.wait(lambda c: "result" in c.kinds())
    client.wait(lambda c: c.error is not None)  # nothing pending any more: idle, closed
    assert client.error.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[union-attr]
    assert "sent nothing for 1 s with nothing pending" in client.error.details()  # type: ignore[union-attr]
    client.close()


def test_a_client_that_leaves_with_a_result_pending_frees_its_stream(
    stub: pb_grpc.RecognizerStub, limited: ServerThread, engines: dict[str, Any], speech_dir: Path
) -> None:
    core = limited.server.core
    with Blocker(engines):
        client = Client(stub, "gone")
        client.segment("robust/gone/0", seconds_of_speech(speech_dir, 2))
        client.wait(lambda c: "ack" in c.kinds())
        assert core.active_streams == 1
        client.call.cancel()
        client.thread.join(30)
    # The recognition itself goes on (its result is cached for a resend); the stream's slot is free.
    deadline = time.monotonic() + 60
    while (core.active_streams or core.queued_audio_seconds > 1e-6) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core.active_streams == 0
    assert core.queued_audio_seconds == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", ["Stream", "Recognize", "GetInfo"])
def test_bytes_that_do_not_parse_get_invalid_argument(limited: ServerThread, method: str) -> None:
    garbage = b"\xff\xff\xff\xff\x0f"
    with grpc.insecure_channel(limited.address) as channel:
        path = f"/{SERVICE_NAME}/{method}"
        with pytest.raises(grpc.RpcError) as info:
            if method == "Stream":
                list(channel.stream_stream(path)(iter([garbage]), timeout=10))
            else:
                channel.unary_unary(path)(garbage, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "5 bytes that do not parse as voxrelay.v1." in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(f"/{SERVICE_NAME}/NoSuchMethod")(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10).models


def test_garbage_audio_is_recognised_as_nothing_much_without_harm(stub: pb_grpc.RecognizerStub) -> None:
    noise = np.random.default_rng(7).integers(-32768, 32767, 16000, dtype=np.int16).tobytes()
    result = stub.Recognize(pb.RecognizeRequest(audio=noise), timeout=60)
    assert result.timings.audio_seconds == pytest.approx(1.0)
    silence = bytes(32000)
    assert stub.Recognize(pb.RecognizeRequest(audio=silence), timeout=60).timings.audio_seconds == 1.0


def test_no_audio_or_transcript_text_in_the_logs(
    server: ServerThread, speech_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audio = seconds_of_speech(speech_dir, 11)
    caplog.set_level(logging.DEBUG)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        requests = [
            pb.StreamRequest(config=pb.SessionConfig(device_id="log", session_id="log")),
            pb.StreamRequest(start=pb.SegmentStart(segment_id="log/log/0")),
            pb.StreamRequest(audio=pb.AudioChunk(audio=audio[:200000])),
            pb.StreamRequest(audio=pb.AudioChunk(audio=audio[200000:])),
            pb.StreamRequest(end=pb.SegmentEnd(segment_id="log/log/0")),
        ]
        results = [r.result for r in stub.Stream(iter(requests), timeout=120) if r.HasField("result")]
    assert "fellow americans" in results[0].text.lower()
    logged = "\n".join(record.getMessage() for record in caplog.records).lower()
    assert caplog.records, "nothing was logged at all"
    assert "fellow" not in logged and "americans" not in logged


def test_edges_refused_for_capacity_back_off_and_finish(engines: dict[str, Any]) -> None:
    single = ServerThread(ServerSettings(port=0, max_concurrent_streams=1, retry_after_seconds=0.5), engines)
    try:
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "voxrelay", "transcribe", "--server", single.address, str(SAMPLE)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for _ in range(3)
        ]
        outputs = [run.communicate(timeout=300) for run in runs]
    finally:
        single.stop(close_engines=False)
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert "welcome" in out.lower() and "Traceback" not in err
    assert any("RESOURCE_EXHAUSTED" in err for _, err in outputs), "no edge was ever refused"
