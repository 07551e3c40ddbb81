"""The edge's side of the wire: plain edge data to protobuf requests, protobuf results to plain data."""

from __future__ import annotations

from collections.abc import Iterator

from voxrelay import SAMPLE_RATE, __version__
from voxrelay.edge.events import VadSummary
from voxrelay.edge.results import SegmentResult, Word
from voxrelay.protos import pb

BYTES_PER_SECOND = SAMPLE_RATE * 2
"""16 kHz mono int16, what the edge always sends."""


def session_config(
    *,
    device_id: str,
    session_id: str,
    language: str | None,
    model: str | None,
    beam_size: int,
    word_timestamps: bool,
    initial_prompt: str | None,
    hotwords: str | None,
    task: str = "transcribe",
    interim_results: bool = False,
    interim_interval: float = 0.0,
) -> pb.StreamRequest:
    return pb.StreamRequest(
        config=pb.SessionConfig(
            device_id=device_id,
            session_id=session_id,
            format=pb.AudioFormat(encoding=pb.LINEAR16, sample_rate_hz=SAMPLE_RATE, channels=1),
            options=pb.RecognitionOptions(
                language=language or "",
                model=model or "",
                beam_size=beam_size,
                word_timestamps=word_timestamps,
                initial_prompt=initial_prompt or "",
                hotwords=hotwords or "",
                task=wire_task(task),
            ),
            client=f"voxrelay-edge/{__version__}",
            interim_results=interim_results,
            interim_interval_seconds=interim_interval if interim_results else 0.0,
        )
    )


def wire_task(task: str) -> pb.Task:
    """The contract's Task for "translate"; "transcribe" is the default (unset)."""
    return pb.TRANSLATE if task == "translate" else pb.TASK_UNSPECIFIED


def start(segment_id: str, sequence: int, offset: float) -> pb.StreamRequest:
    return pb.StreamRequest(start=pb.SegmentStart(segment_id=segment_id, sequence=sequence, offset_seconds=offset))


def audio_chunks(audio: bytes | bytearray | memoryview, chunk_bytes: int) -> Iterator[pb.StreamRequest]:
    for i in range(0, len(audio), chunk_bytes):
        yield pb.StreamRequest(audio=pb.AudioChunk(audio=bytes(audio[i : i + chunk_bytes])))


def pause(segment_id: str) -> pb.StreamRequest:
    return pb.StreamRequest(pause=pb.SegmentPause(segment_id=segment_id))


def end(segment_id: str, vad: VadSummary | None) -> pb.StreamRequest:
    stats = None
    if vad is not None:
        stats = pb.VadStats(
            vad=vad.vad,
            speech_ratio=vad.speech_ratio,
            mean_speech_probability=vad.mean_speech_probability,
            level_dbfs=vad.level_dbfs,
            clipping_ratio=vad.clipping_ratio,
            forced_split=vad.forced_split,
            pre_roll_seconds=vad.pre_roll_seconds,
            hangover_seconds=vad.hangover_seconds,
        )
    return pb.StreamRequest(end=pb.SegmentEnd(segment_id=segment_id, vad=stats))


def to_result(
    msg: pb.RecognitionResult, sequence: int, latency: float, duplicate: bool, close_to_result: float | None = None
) -> SegmentResult:
    """The edge's result of ``msg``: ``latency`` from the end of speech, ``close_to_result`` from the segment's
    close at the segmenter (the same as ``latency`` when not given)."""
    return SegmentResult(
        segment_id=msg.segment_id,
        sequence=sequence,
        text=msg.text.strip(),
        start=msg.start_seconds,
        end=msg.end_seconds,
        language=msg.language,
        language_probability=msg.language_probability,
        avg_logprob=msg.avg_logprob,
        no_speech_prob=msg.no_speech_prob,
        compression_ratio=msg.compression_ratio,
        temperature=msg.temperature,
        model=msg.model.name,
        model_version=msg.model.version,
        backend=msg.model.backend,
        slot=msg.slot,
        deployment=msg.deployment,
        needs_review=msg.needs_review,
        review_id=msg.review_id,
        audio_seconds=msg.timings.audio_seconds,
        queue_wait_seconds=msg.timings.queue_wait_seconds,
        inference_seconds=msg.timings.inference_seconds,
        latency_seconds=latency,
        close_to_result_seconds=latency if close_to_result is None else close_to_result,
        speculative=msg.timings.speculative,
        words=tuple(Word(w.word, w.start_seconds, w.end_seconds, w.probability) for w in msg.words),
        duplicate=duplicate,
        final=not msg.interim,
    )
