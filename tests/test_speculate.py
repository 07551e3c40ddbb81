"""Speculative recognition over a real gRPC Stream on loopback with tiny.en and real speech: a pause
that the end follows gives the final result early and word for word the same; audio after a pause
makes the speculation moot; a stream read faster than real time and a server told not to speculate
get none; a misplaced pause is a clear error. And the edge reports pauses only of live audio."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import ROOT, ServerThread, load_pcm16
from voxrelay.cloud.scheduler import Priority
from voxrelay.cloud.speculate import LEAD_SECONDS, PACE_FACTOR
from voxrelay.edge.events import AudioBlock, SegmentAudio, SegmentClosed, SegmentPaused
from voxrelay.edge.vad.segmenter import SegmenterSettings
from voxrelay.edge.vad.speech import SpeechSegmenter
from voxrelay.protos import pb, pb_grpc

SAMPLE = ROOT / "samples" / "voxrelay-sample.wav"
CHUNK = 1600  # 0.1 s of 16 kHz audio
LABELS = {"model": "tiny.en", "backend": "faster-whisper"}


def clip() -> np.ndarray:
    """About 6 s of the sample's first sentence."""
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is missing")
    return load_pcm16(SAMPLE)[: 16000 * 6]


def sample(server: ServerThread, name: str, labels: dict[str, str]) -> float:
    return server.server.core.metrics.registry.get_sample_value(name, labels) or 0.0


def counted(server: ServerThread, name: str, outcome: str) -> float:
    return sample(server, name, {**LABELS, "outcome": outcome})


def speculations(server: ServerThread, outcome: str) -> float:
    return counted(server, "voxrelay_asr_speculative_total", outcome)


_STARTED: dict[int, int] = {}


def speculative_batches(server: ServerThread) -> int:
    """Batches of speculative work a worker has started on ``server``'s engines.

    Counted by a hook of our own on each engine (chained to the one there): engines loaded once for
    the test session are shared by the servers of several tests, and the last server made binds their
    batch metrics to its registry."""
    for engine in server.server.core.engines.values():
        if id(engine) not in _STARTED:
            _STARTED[id(engine)] = 0
            chained = engine.on_batch

            def hook(size: int, wait: float, priority: Priority, key: int = id(engine), chained: Any = chained) -> None:
                if priority == Priority.SPECULATIVE:
                    _STARTED[key] += 1
                if chained is not None:
                    chained(size, wait, priority)

            engine.on_batch = hook
    return sum(_STARTED[id(engine)] for engine in server.server.core.engines.values())


def idle(server: ServerThread) -> bool:
    """Whether no work is queued or running (what an earlier test left has finished)."""
    return all(engine.queued == 0 and engine.running == 0 for engine in server.server.core.engines.values())


async def wait_for(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        await asyncio.sleep(0.02)


async def stream(
    server: ServerThread,
    session_id: str,
    parts: list[np.ndarray],
    *,
    pause_after: tuple[int, ...] = (),
    paced: bool = True,
    wait_started: bool = True,
    pause_id: str = "seg-0",
    skipped_after: tuple[int, ...] = (),
    wasted_first: int = 1,
) -> list[tuple[str, Any]]:
    """One segment made of ``parts``, with a pause after each part index in ``pause_after``. Paced, the
    audio goes out no faster than the server takes for speech; after a pause the next message waits
    until a worker has started the speculation (so the outcome does not depend on the machine); the
    pauses in ``skipped_after`` go out once ``wasted_first`` earlier speculations have been counted
    wasted, and the next message waits until the server has counted them skipped."""
    wasted_before = speculations(server, "wasted") + wasted_first - 1

    await wait_for(lambda: idle(server))  # a speculation starts only while no final work waits

    async def requests() -> Any:
        yield pb.StreamRequest(config=pb.SessionConfig(device_id="speculate-test", session_id=session_id))
        yield pb.StreamRequest(start=pb.SegmentStart(segment_id="seg-0", sequence=0))
        opened, sent = time.monotonic(), 0
        for index, part in enumerate(parts):
            for i in range(0, part.size, CHUNK):
                chunk = part[i : i + CHUNK]
                sent += chunk.size
                yield pb.StreamRequest(audio=pb.AudioChunk(audio=chunk.tobytes()))
                if paced:  # just fast enough to count as spoken now
                    ahead = (sent / 16000 - LEAD_SECONDS) / PACE_FACTOR + 0.3 - (time.monotonic() - opened)
                    await asyncio.sleep(max(0.0, ahead))
            if index in skipped_after:
                await wait_for(lambda: speculations(server, "wasted") > wasted_before)
            if index in pause_after:
                before, skipped = speculative_batches(server), speculations(server, "skipped")
                yield pb.StreamRequest(pause=pb.SegmentPause(segment_id=pause_id))
                if index in skipped_after:
                    await wait_for(lambda skipped=skipped: speculations(server, "skipped") > skipped)
                elif wait_started:
                    await wait_for(lambda before=before: speculative_batches(server) > before)
        yield pb.StreamRequest(end=pb.SegmentEnd(segment_id="seg-0"))

    received = []
    async with grpc.aio.insecure_channel(server.address) as channel:
        async for response in pb_grpc.RecognizerStub(channel).Stream(requests(), timeout=300):
            kind = response.WhichOneof("message")
            received.append((kind, getattr(response, kind)))
    return received


def final(received: list[tuple[str, Any]]) -> Any:
    assert [kind for kind, _ in received] == ["accepted", "ack", "result"], received
    return received[-1][1]


@pytest.mark.slow
def test_a_pause_that_the_end_follows_gives_the_same_result_speculatively(server: ServerThread) -> None:
    audio = clip()
    reference = final(asyncio.run(stream(server, "plain", [audio], paced=False)))
    assert not reference.timings.speculative and reference.text.strip()

    used = speculations(server, "used")
    result = final(asyncio.run(stream(server, "paused", [audio], pause_after=(0,))))
    assert result.timings.speculative
    assert result.timings.queue_wait_seconds == 0.0
    assert result.text == reference.text
    assert result.timings.audio_seconds == reference.timings.audio_seconds
    assert speculations(server, "used") == used + 1
    assert counted(server, "voxrelay_asr_speculative_inference_seconds_total", "used") > 0


@pytest.mark.slow
def test_audio_after_a_pause_makes_the_speculation_moot(server: ServerThread) -> None:
    audio = clip()
    half = audio.size // 2
    reference = final(asyncio.run(stream(server, "whole", [audio], paced=False)))
    wasted = speculations(server, "wasted")
    result = final(asyncio.run(stream(server, "resumed", [audio[:half], audio[half:]], pause_after=(0,))))
    # The result is of the whole segment, decoded again; the first half's decode was waste.
    assert not result.timings.speculative
    assert result.text == reference.text
    asyncio.run(wait_for(lambda: speculations(server, "wasted") > wasted))
    assert counted(server, "voxrelay_asr_speculative_inference_seconds_total", "wasted") > 0


@pytest.mark.slow
def test_a_stream_whose_speculations_were_wasted_stops_speculating(server: ServerThread) -> None:
    audio = clip()
    quarters = np.array_split(audio, 4)
    wasted = speculations(server, "wasted")
    # The first two pauses are speculated on and wasted (more audio follows); the first is forgiven,
    # but with no final result yet to weigh the second against, the third is skipped.
    result = final(
        asyncio.run(stream(server, "wasteful", quarters, pause_after=(0, 1, 2), skipped_after=(2,), wasted_first=2))
    )
    assert not result.timings.speculative and result.text.strip()
    assert speculations(server, "wasted") >= wasted + 2


@pytest.mark.slow
def test_a_pause_in_audio_sent_faster_than_speech_is_skipped(server: ServerThread) -> None:
    audio = load_pcm16(SAMPLE) if SAMPLE.is_file() else clip()
    skipped = speculations(server, "skipped")
    result = final(asyncio.run(stream(server, "unpaced", [audio], pause_after=(0,), paced=False, wait_started=False)))
    assert not result.timings.speculative and result.text.strip()
    assert speculations(server, "skipped") == skipped + 1


@pytest.mark.slow
def test_a_server_told_not_to_speculate_ignores_pauses() -> None:
    from voxrelay.cloud.server import load_engines
    from voxrelay.cloud.settings import ServerSettings

    # Engines of its own: a server binds its engines' batch counters to its registry.
    settings = ServerSettings(port=0, speculate=False, inference_workers=1)
    running = ServerThread(settings, load_engines(settings))
    try:
        audio = clip()
        result = final(asyncio.run(stream(running, "off", [audio], pause_after=(0,), wait_started=False)))
        assert not result.timings.speculative and result.text.strip()
        assert speculative_batches(running) == 0
        assert all(speculations(running, o) == 0 for o in ("used", "wasted", "withdrawn", "skipped", "failed"))
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        (["pause"], "pause: no segment is open"),
        (["start", "audio", "pause-other"], "does not match the open segment"),
    ],
)
def test_a_misplaced_pause_is_a_clear_error(server: ServerThread, messages: list[str], named: str) -> None:
    def requests() -> Any:
        yield pb.StreamRequest(config=pb.SessionConfig(device_id="speculate-test", session_id="bad"))
        for kind in messages:
            if kind == "start":
                yield pb.StreamRequest(start=pb.SegmentStart(segment_id="seg-0", sequence=0))
            elif kind == "audio":
                yield pb.StreamRequest(audio=pb.AudioChunk(audio=bytes(3200)))
            elif kind == "pause":
                yield pb.StreamRequest(pause=pb.SegmentPause(segment_id="seg-0"))
            else:
                yield pb.StreamRequest(pause=pb.SegmentPause(segment_id="seg-9"))

    channel = grpc.insecure_channel(server.address)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            list(pb_grpc.RecognizerStub(channel).Stream(requests(), timeout=60))
    finally:
        channel.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (caught.value.details() or "")


# -- the edge: pauses are reported of live audio only ---------------------------------------------


def segment_events(paced: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The sample through the webrtc segmenter in 0.1 s blocks, on a clock that advances as the audio
    would arrive from a microphone (paced) or all at once (a file read at full speed)."""
    from voxrelay.edge.vad.detectors import WebRtcVad

    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is missing")
    audio = load_pcm16(SAMPLE)
    clock = [1000.0]
    monkeypatch.setattr("voxrelay.edge.vad.speech.time.perf_counter", lambda: clock[0])
    segmenter = SpeechSegmenter(WebRtcVad(), SegmenterSettings())
    events: list[Any] = []
    for i in range(0, audio.size, CHUNK):
        if paced:
            clock[0] += CHUNK / 16000
        events += segmenter.feed(AudioBlock(audio[i : i + CHUNK], i / 16000))
    return events + segmenter.flush()


def test_the_edge_reports_pauses_of_live_audio_only(monkeypatch: pytest.MonkeyPatch) -> None:
    live = segment_events(True, monkeypatch)
    paused = [e for e in live if isinstance(e, SegmentPaused)]
    assert paused, "no pause reported in 18 s of live speech"
    for event in paused:
        # A pause offers the segment as it stands: the next event of its segment is more audio (speech
        # resumed) or its close, and a close right after it ends where the pause said.
        after = live[live.index(event) + 1]
        assert after.sequence == event.sequence
        assert isinstance(after, SegmentAudio | SegmentClosed)
        if isinstance(after, SegmentClosed):
            assert after.end == pytest.approx(event.end)
    assert any(isinstance(live[live.index(e) + 1], SegmentClosed) for e in paused)
    # The same file read at full speed: the same segments, and no pauses.
    fast = segment_events(False, monkeypatch)
    assert not any(isinstance(e, SegmentPaused) for e in fast)
    closes = [(e.sequence, e.end) for e in live if isinstance(e, SegmentClosed)]
    assert closes == [(e.sequence, e.end) for e in fast if isinstance(e, SegmentClosed)]


@pytest.mark.slow
def test_transcribe_at_real_time_gets_speculative_results_with_the_same_text(server: ServerThread) -> None:
    """The whole path: ``transcribe --pace 1.0`` reports pauses, the server speculates, and the results
    are the ones of an unpaced run (which reports none), segment for segment."""
    from tests.test_transcribe_cli import json_lines, voxrelay

    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is missing")
    common = ("transcribe", "--server", server.address, "--format", "json", "--vad", "webrtc", str(SAMPLE))
    unpaced = voxrelay(*common)
    paced = voxrelay(*common, "--pace", "1.0")
    assert unpaced.returncode == 0 and paced.returncode == 0, (unpaced.stderr, paced.stderr)
    fast, live = json_lines(unpaced.stdout), json_lines(paced.stdout)
    assert not any(obj["speculative"] for obj in fast)
    assert any(obj["speculative"] for obj in live), live
    assert [(o["start"], o["end"], o["text"]) for o in live] == [(o["start"], o["end"], o["text"]) for o in fast]
    assert all(obj["queue_wait_seconds"] == 0 for obj in live if obj["speculative"])


@pytest.mark.slow
def test_a_moot_speculation_is_an_interim_result_for_a_stream_that_asked(server: ServerThread) -> None:
    """Speech resumed after a speculation ran: its text, the segment's so far, goes out as an interim
    (marked speculative), before the segment's end and never after it."""
    audio = clip()
    half = audio.size // 2
    got_interim = asyncio.Event()
    sent = [0]

    async def requests() -> Any:
        yield pb.StreamRequest(
            config=pb.SessionConfig(
                device_id="speculate-test", session_id="moot-interim", interim_results=True, interim_interval_seconds=10
            )
        )
        yield pb.StreamRequest(start=pb.SegmentStart(segment_id="seg-0", sequence=0))
        opened = time.monotonic()
        for i in range(0, half, CHUNK):
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=audio[i : i + CHUNK].tobytes()))
            ahead = ((i + CHUNK) / 16000 - LEAD_SECONDS) / PACE_FACTOR + 0.3 - (time.monotonic() - opened)
            await asyncio.sleep(max(0.0, ahead))
        before = speculative_batches(server)
        yield pb.StreamRequest(pause=pb.SegmentPause(segment_id="seg-0"))
        await wait_for(lambda: speculative_batches(server) > before)
        # Speech resumes: the rest at real time, then silence, until the interim has come.
        rest = audio[half:]
        deadline = time.monotonic() + 120
        for i in itertools.count(0, CHUNK):
            if i >= rest.size and got_interim.is_set():
                break
            assert time.monotonic() < deadline, "no interim from the moot speculation"
            chunk = rest[i : i + CHUNK] if i < rest.size else np.zeros(CHUNK, dtype=np.int16)
            sent[0] += chunk.size
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=chunk.tobytes()))
            await asyncio.sleep(CHUNK / 16000)
        yield pb.StreamRequest(end=pb.SegmentEnd(segment_id="seg-0"))

    async def run() -> list[tuple[str, Any]]:
        await wait_for(lambda: idle(server))
        received = []
        async with grpc.aio.insecure_channel(server.address) as channel:
            async for response in pb_grpc.RecognizerStub(channel).Stream(requests(), timeout=300):
                kind = response.WhichOneof("message")
                received.append((kind, getattr(response, kind)))
                if kind == "interim" and response.interim.timings.speculative:
                    got_interim.set()
        return received

    received = asyncio.run(run())
    kinds = [kind for kind, _ in received]
    speculative = [m for kind, m in received if kind == "interim" and m.timings.speculative]
    assert len(speculative) == 1 and kinds[-1] == "result"
    assert max(i for i, kind in enumerate(kinds) if kind == "interim") < kinds.index("ack")
    interim = speculative[0]
    assert interim.interim and interim.text.strip()
    assert interim.timings.audio_seconds == pytest.approx(half / 16000)
    # The interim reads the first half; the final, decoded again, the whole.
    assert not received[-1][1].timings.speculative
    assert received[-1][1].timings.audio_seconds == pytest.approx((half + sent[0]) / 16000)
