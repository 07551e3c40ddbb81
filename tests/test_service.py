"""The recognizer over a real gRPC server on loopback, with the real tiny.en model and real speech."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ServerThread, load_pcm16
from voxrelay.protos import SERVICE_NAME, pb, pb_grpc
from voxrelay.quality.wer import word_errors

pytestmark = pytest.mark.slow


@pytest.fixture()
def stub(server: ServerThread) -> Iterator[pb_grpc.RecognizerStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.RecognizerStub(channel)


def config(**options: Any) -> pb.StreamRequest:
    return pb.StreamRequest(
        config=pb.SessionConfig(
            device_id="test-device",
            session_id=options.pop("session_id", "s1"),
            format=options.pop("format", pb.AudioFormat()),
            options=pb.RecognitionOptions(**options),
        )
    )


def segment(segment_id: str, audio: bytes, offset: float = 0.0, chunk: int = 8000) -> list[pb.StreamRequest]:
    messages = [pb.StreamRequest(start=pb.SegmentStart(segment_id=segment_id, offset_seconds=offset))]
    messages += [pb.StreamRequest(audio=pb.AudioChunk(audio=audio[i : i + chunk])) for i in range(0, len(audio), chunk)]
    messages.append(pb.StreamRequest(end=pb.SegmentEnd(segment_id=segment_id, vad=pb.VadStats(vad="webrtc"))))
    return messages


def rpc_error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        list(call) if not isinstance(call, grpc.RpcError) else None
    return info.value


def utterance(speech_dir: Path, name: str) -> tuple[np.ndarray, str]:
    rows = [r for r in (speech_dir / "manifest.jsonl").read_text().splitlines() if name in r]
    import json

    row = json.loads(rows[0])
    return load_pcm16(speech_dir / row["audio"]), row["text"]


def test_get_info_and_health(stub: pb_grpc.RecognizerStub, server: ServerThread) -> None:
    info = stub.GetInfo(pb.GetInfoRequest(), timeout=10)
    assert info.models[0].name == "tiny.en"
    assert info.models[0].backend == "faster-whisper"
    assert len(info.models[0].version) == 12 and int(info.models[0].version, 16) >= 0
    assert not info.models[0].multilingual
    assert info.limits.max_segment_seconds == 40.0
    assert info.limits.max_chunk_bytes > 0 and info.limits.max_concurrent_streams > 0
    assert set(info.encodings) == {pb.LINEAR16, pb.FLOAT32}
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_recognize_transcribes_jfk_and_librispeech(stub: pb_grpc.RecognizerStub, english_utterances: list) -> None:
    rows = [r for r in english_utterances if "jfk" in r["audio"] or "librispeech" in r["audio"]]
    assert len(rows) >= 3
    from tests.conftest import SPEECH

    for row in rows:
        audio = load_pcm16(SPEECH / row["audio"])
        result = stub.Recognize(pb.RecognizeRequest(audio=audio.tobytes()), timeout=120)
        errors = word_errors(row["text"], result.text)
        assert errors.wer <= 0.2, f"{row['audio']}: {result.text!r} vs {row['text']!r}"
        assert result.language == "en"
        assert result.model.name == "tiny.en" and result.slot == "stable"
        assert result.avg_logprob < 0 and 0 <= result.no_speech_prob <= 1 and result.compression_ratio > 0
        assert result.timings.inference_seconds > 0
        assert result.timings.audio_seconds == pytest.approx(len(audio) / 16000)
        assert 0 <= result.start_seconds < result.end_seconds <= len(audio) / 16000 + 0.5
    jfk = next(r for r in rows if "jfk" in r["audio"])
    result = stub.Recognize(pb.RecognizeRequest(audio=load_pcm16(SPEECH / jfk["audio"]).tobytes()), timeout=120)
    assert "ask not what your country can do for you" in result.text.lower()


def test_recognize_accepts_float32_stereo_44k(stub: pb_grpc.RecognizerStub, speech_dir: Path) -> None:
    import soxr

    audio, reference = utterance(speech_dir, "jfk_inaugural")
    x = soxr.resample(audio.astype(np.float32) / 32768, 16000, 44100)
    stereo = np.stack([x, x], axis=1).astype("<f4")
    fmt = pb.AudioFormat(encoding=pb.FLOAT32, sample_rate_hz=44100, channels=2)
    result = stub.Recognize(pb.RecognizeRequest(format=fmt, audio=stereo.tobytes()), timeout=120)
    assert word_errors(reference, result.text).wer <= 0.2


def test_stream_sends_acks_then_results_in_order(stub: pb_grpc.RecognizerStub, speech_dir: Path) -> None:
    audio, reference = utterance(speech_dir, "jfk_inaugural")
    half = len(audio) // 2 + 16000 * 1  # cut in a pause near the middle is not needed: ids carry order
    first, second = audio[:half].tobytes(), audio[half:].tobytes()
    requests = [
        config(word_timestamps=True),
        *segment("d/s1/0", first),
        *segment("d/s1/1", second, half / 16000),
    ]
    responses = list(stub.Stream(iter(requests), timeout=120))
    kinds = [r.WhichOneof("message") for r in responses]
    assert kinds[0] == "accepted"
    assert responses[0].accepted.model.name == "tiny.en" and responses[0].accepted.limits.max_chunk_bytes > 0
    acks = [r.ack for r in responses if r.HasField("ack")]
    results = [r.result for r in responses if r.HasField("result")]
    assert [a.segment_id for a in acks] == ["d/s1/0", "d/s1/1"]
    assert acks[0].audio_seconds == pytest.approx(half / 16000)
    assert not any(a.duplicate for a in acks)
    assert [r.segment_id for r in results] == ["d/s1/0", "d/s1/1"]
    # Each ack comes before the result of its segment.
    assert kinds.index("ack") < kinds.index("result")
    # Times are in the session's timeline: the second segment starts at its offset.
    assert results[1].start_seconds >= half / 16000 - 0.01
    assert results[1].words and all(w.start_seconds >= half / 16000 - 0.01 for w in results[1].words)
    text = " ".join(r.text for r in results)
    assert word_errors(reference, text).wer <= 0.25, text
    assert all(r.timings.queue_wait_seconds >= 0 and r.timings.inference_seconds > 0 for r in results)


def test_resent_segment_gets_the_cached_result(stub: pb_grpc.RecognizerStub, speech_dir: Path) -> None:
    audio, _ = utterance(speech_dir, "pocketsphinx_goforward")
    first = list(stub.Stream(iter([config(session_id="dup"), *segment("dev/dup/0", audio.tobytes())]), timeout=60))
    again = list(stub.Stream(iter([config(session_id="dup"), *segment("dev/dup/0", audio.tobytes())]), timeout=60))
    ack1 = next(r.ack for r in first if r.HasField("ack"))
    ack2 = next(r.ack for r in again if r.HasField("ack"))
    res1 = next(r.result for r in first if r.HasField("result"))
    res2 = next(r.result for r in again if r.HasField("result"))
    assert not ack1.duplicate and ack2.duplicate
    assert res1 == res2  # identical, timings included: it was not recognised twice


def test_reused_segment_id_with_other_audio_is_refused(stub: pb_grpc.RecognizerStub, speech_dir: Path) -> None:
    first_audio, _ = utterance(speech_dir, "pocketsphinx_goforward")
    other_audio, _ = utterance(speech_dir, "jfk_inaugural")
    first = list(stub.Stream(iter([config(session_id="reuse"), *segment("0", first_audio.tobytes())]), timeout=60))
    assert any(r.HasField("result") for r in first)
    # A client numbering segments per session: the same id in a new session is a new segment.
    other = list(stub.Stream(iter([config(session_id="reuse-2"), *segment("0", other_audio.tobytes())]), timeout=60))
    ack = next(r.ack for r in other if r.HasField("ack"))
    result = next(r.result for r in other if r.HasField("result"))
    assert not ack.duplicate
    assert "country" in result.text.lower()
    # The same id in the same session with different audio is refused, never answered from the cache.
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Stream(iter([config(session_id="reuse"), *segment("0", other_audio.tobytes())]), timeout=60))
    err: Any = info.value
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "segment '0'" in (err.details() or "") and "different audio" in (err.details() or "")


BAD_REQUESTS = {
    "audio before config": (
        lambda: [pb.StreamRequest(audio=pb.AudioChunk(audio=b"\0\0"))],
        grpc.StatusCode.INVALID_ARGUMENT,
        "first message of a stream must be config",
    ),
    "wrong sample rate": (
        lambda: [config(format=pb.AudioFormat(sample_rate_hz=1000))],
        grpc.StatusCode.INVALID_ARGUMENT,
        "config.format.sample_rate_hz: 1000 is not supported",
    ),
    "odd byte count": (
        lambda: [
            config(),
            pb.StreamRequest(start=pb.SegmentStart(segment_id="x")),
            pb.StreamRequest(audio=pb.AudioChunk(audio=b"\0\0\0")),
        ],
        grpc.StatusCode.INVALID_ARGUMENT,
        "3 bytes is not a whole number of frames",
    ),
    "oversized chunk": (
        lambda: [
            config(),
            pb.StreamRequest(start=pb.SegmentStart(segment_id="x")),
            pb.StreamRequest(audio=pb.AudioChunk(audio=b"\0" * (1 << 20))),
        ],
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "a message of 1048584 bytes is over this method's limit of 278528 bytes",
    ),
    "segment over the limit": (
        lambda: [
            config(),
            pb.StreamRequest(start=pb.SegmentStart(segment_id="x")),
            *[pb.StreamRequest(audio=pb.AudioChunk(audio=b"\0" * 160000)) for _ in range(9)],
        ],
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "over the limit of 40 s per segment",
    ),
    "unknown model": (
        lambda: [config(model="no-such-model")],
        grpc.StatusCode.NOT_FOUND,
        "model 'no-such-model' is not served here",
    ),
    "language on an English-only model": (
        lambda: [config(language="de")],
        grpc.StatusCode.INVALID_ARGUMENT,
        "English-only",
    ),
    "start while a segment is open": (
        lambda: [
            config(),
            pb.StreamRequest(start=pb.SegmentStart(segment_id="a")),
            pb.StreamRequest(start=pb.SegmentStart(segment_id="b")),
        ],
        grpc.StatusCode.INVALID_ARGUMENT,
        "segment 'a' is still open",
    ),
    "empty message": (
        lambda: [config(), pb.StreamRequest()],
        grpc.StatusCode.INVALID_ARGUMENT,
        "no message set",
    ),
    "empty segment id": (
        lambda: [config(), pb.StreamRequest(start=pb.SegmentStart(segment_id=""))],
        grpc.StatusCode.INVALID_ARGUMENT,
        "start.segment_id: must not be empty",
    ),
    "missing device id": (
        lambda: [pb.StreamRequest(config=pb.SessionConfig(session_id="s"))],
        grpc.StatusCode.INVALID_ARGUMENT,
        "config.device_id: must not be empty",
    ),
}


def test_malformed_requests_get_clear_statuses_while_a_good_stream_completes(
    stub: pb_grpc.RecognizerStub, speech_dir: Path
) -> None:
    audio, reference = utterance(speech_dir, "librispeech_1272-128104-0000")
    good: dict[str, Any] = {}

    def slow_requests() -> Iterator[pb.StreamRequest]:
        yield config(session_id="good")
        for message in segment("dev/good/0", audio.tobytes(), chunk=3200):
            yield message
            threading.Event().wait(0.01)  # keep the good stream open while the bad ones run

    def run_good() -> None:
        good["responses"] = list(stub.Stream(slow_requests(), timeout=120))

    worker = threading.Thread(target=run_good)
    worker.start()
    for name, (make, code, message) in BAD_REQUESTS.items():
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Stream(iter(make()), timeout=60))
        assert info.value.code() == code, f"{name}: {info.value.code()} {info.value.details()}"
        assert message in info.value.details(), f"{name}: {info.value.details()}"
    with pytest.raises(grpc.RpcError) as info:
        stub.Recognize(pb.RecognizeRequest(), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "audio: empty" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.Recognize(pb.RecognizeRequest(audio=b"\0\0\0"), timeout=30)
    assert "whole number of frames" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        nan = np.full(1600, np.nan, dtype="<f4").tobytes()
        stub.Recognize(pb.RecognizeRequest(format=pb.AudioFormat(encoding=pb.FLOAT32), audio=nan), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in info.value.details()
    worker.join(120)
    results = [r.result for r in good["responses"] if r.HasField("result")]
    assert len(results) == 1 and word_errors(reference, results[0].text).wer <= 0.2


def test_generated_modules_are_up_to_date() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
