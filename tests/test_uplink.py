"""The uplink with its spool against the real recognizer: replaying what an interrupted live session left,
and what happens to a segment the spool cannot hold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import ServerThread, load_pcm16
from voxrelay.edge.events import SegmentAudio, SegmentClosed, SegmentEvent, SegmentOpened, VadSummary
from voxrelay.edge.link.channel import connect
from voxrelay.edge.link.spool import Spool, SpooledSegment
from voxrelay.edge.link.uplink import Uplink, UplinkSettings
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.resume import MIC_PREFIX, replay_session
from voxrelay.quality.wer import word_errors

pytestmark = pytest.mark.slow

VAD = VadSummary("webrtc", 0.9, 0.9, -20.0, 0.0, False, 0.6, 0.4)


def utterance(speech_dir: Path, name: str) -> tuple[bytes, str]:
    import json

    row = next(json.loads(line) for line in (speech_dir / "manifest.jsonl").read_text().splitlines() if name in line)
    return load_pcm16(speech_dir / row["audio"]).tobytes(), row["text"]


async def collect(results: AsyncIterator[SegmentResult]) -> list[SegmentResult]:
    return [result async for result in results]


def test_segments_left_by_an_interrupted_live_session_are_replayed(
    server: ServerThread, speech_dir: Path, tmp_path: Path
) -> None:
    spoken = [utterance(speech_dir, name) for name in ("pocketsphinx_goforward", "ljspeech_LJ050-0131")]
    settings = UplinkSettings(server=server.address, device_id="pi", spool_dir=str(tmp_path))
    with Spool(settings.spool) as spool:  # what a killed `listen` left behind: two spooled segments
        spool.open_session("mic-1", source=f"{MIC_PREFIX}USB mic", label="USB mic")
        offset = 0.0
        for sequence, (audio, _) in enumerate(spoken):
            seconds = len(audio) / 32000
            spool.put(
                SpooledSegment(
                    f"pi/mic-1/{sequence}",
                    "mic-1",
                    sequence,
                    offset,
                    offset + seconds,
                    offset + seconds,
                    VAD,
                    audio,
                    1e12,
                )
            )
            offset += seconds + 1

    async def replay() -> list[SegmentResult]:
        channel = await connect(settings)
        try:
            with Spool(settings.spool) as spool:
                (session,) = spool.sessions()
                results = await collect(replay_session(Uplink(settings, channel, spool), session))
                assert spool.sessions() == [] and spool.depth == 0  # delivered, then forgotten
                return results
        finally:
            await channel.close()

    results = asyncio.run(replay())
    assert [r.sequence for r in results] == [0, 1]
    for result, (_, reference) in zip(results, spoken, strict=True):
        assert result.error is None and word_errors(reference, result.text).wer <= 0.25, result.text
    assert results[1].start >= results[0].end


def test_a_segment_the_spool_cannot_hold_is_reported_not_sent(
    server: ServerThread, speech_dir: Path, tmp_path: Path
) -> None:
    # 11 s of speech: more than a 64 KiB (2 s) spool holds.
    samples = load_pcm16(speech_dir / "asr" / "jfk_inaugural_1961.wav")
    settings = UplinkSettings(
        server=server.address, device_id="tiny", spool_dir=str(tmp_path), spool_max_bytes=64 * 1024
    )

    async def events() -> AsyncIterator[SegmentEvent]:
        yield SegmentOpened(0, 0.0)
        yield SegmentAudio(0, samples)
        yield SegmentClosed(0, len(samples) / 16000, len(samples) / 16000, VAD)

    async def run() -> tuple[list[SegmentResult], int]:
        channel = await connect(settings)
        try:
            with Spool(settings.spool) as spool:
                results = await collect(Uplink(settings, channel, spool).session("big", events()))
                return results, spool.dropped_segments
        finally:
            await channel.close()

    results, dropped = asyncio.run(run())
    assert dropped == 1
    assert len(results) == 1 and results[0].error is not None and results[0].error.startswith("DROPPED: ")
    assert "spool is full" in results[0].error
