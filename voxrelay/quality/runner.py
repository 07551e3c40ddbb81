"""Running the manifest's files through the recognizer twice: alone, and through the whole edge pipeline.

- **Recognizer alone**: each reference utterance (the whole file, or its labelled extent) in one
  ``Recognize`` call with word timings: the reference segmentation.
- **End to end**: the file through the edge's VAD, segmenter and uplink (``run_session``), as
  ``voxrelay transcribe`` runs it; an observer records the segments sent and each segment's latency
  from its close at the edge to its result, with its breakdown by stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.edge.agent import VadSettings, run_session
from voxrelay.edge.capture.files import WavSource
from voxrelay.edge.events import AudioBlock, SegmentClosed, SegmentEvent, SegmentOpened
from voxrelay.edge.link.messages import wire_task
from voxrelay.edge.link.uplink import Uplink, UplinkError, UplinkSettings
from voxrelay.edge.metrics import stage_breakdown
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.transcribe import new_session_id
from voxrelay.edge.vad.speech import SegmenterStats
from voxrelay.errors import AudioError, InvalidArgument
from voxrelay.protos import pb, pb_grpc
from voxrelay.quality.attribution import TimedWord
from voxrelay.quality.manifest import Entry, Utterance


@dataclass(frozen=True)
class EvalSettings:
    """How to run an evaluation (the recognizer options come with the uplink settings)."""

    vad: VadSettings = field(default_factory=VadSettings)
    # Read files at this many times real time (None: as fast as possible; 1.0: live).
    pace: float | None = None
    collar: float = 0.0
    recognize_timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.pace is not None and not self.pace > 0:
            raise InvalidArgument(f"--pace: {self.pace} must be positive (1.0 = real time)")
        if not 0 <= self.collar <= 1.0:
            raise InvalidArgument(f"--collar: {self.collar} must lie between 0 and 1 s")


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    forced: bool = False


@dataclass(frozen=True)
class Latency:
    """Seconds from a segment's close at the edge to its result at the edge, and by stage."""

    total: float
    stages: dict[str, float]


@dataclass(frozen=True)
class Recognized:
    """The recognizer alone on one utterance: its text and timed words (file time), or an error."""

    text: str = ""
    words: tuple[TimedWord, ...] = ()
    error: str | None = None
    # Whisper's confidence signals for the utterance (the result's aggregates).
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0


@dataclass(frozen=True)
class FileRun:
    entry: Entry
    duration: float = 0.0
    segments: tuple[Span, ...] = ()
    results: tuple[SegmentResult, ...] = ()
    latencies: tuple[Latency, ...] = ()
    alone: tuple[Recognized, ...] = ()
    error: str | None = None


class SegmentLog:
    """A session observer that keeps the segments sent and each one's latency by stage.

    ``edge_queue``: count the wait between the segmenter and the uplink. Off when files are read faster
    than real time: segments then wait at the edge for the earlier ones, which live audio never does.
    """

    def __init__(self, edge_queue: bool = True) -> None:
        self.count_edge_queue = edge_queue
        self.segments: list[Span] = []
        self.latencies: list[Latency] = []
        self._opened: dict[int, float] = {}
        self._closed_at: dict[int, float] = {}
        self._edge_queue: dict[int, float] = {}

    def block(self, block: AudioBlock) -> None:
        pass

    def segmented(self, stats: SegmenterStats, seconds: float) -> None:
        pass

    def produced(self, event: SegmentEvent) -> None:
        if isinstance(event, SegmentClosed):
            self._closed_at[event.sequence] = time.perf_counter()

    def sent(self, event: SegmentEvent) -> None:
        if isinstance(event, SegmentOpened):
            self._opened[event.sequence] = event.offset
        elif isinstance(event, SegmentClosed):
            start = self._opened.pop(event.sequence, event.end)
            self.segments.append(Span(start, event.end, event.stats.forced_split))
            closed = self._closed_at.pop(event.sequence, None)
            self._edge_queue[event.sequence] = time.perf_counter() - closed if closed is not None else 0.0

    def result(self, result: SegmentResult) -> None:
        queued = self._edge_queue.pop(result.sequence, 0.0)
        if result.error is None and not result.duplicate:
            stages = stage_breakdown(result, queued)
            if not self.count_edge_queue:
                del stages["edge_queue"]
            self.latencies.append(Latency(sum(stages.values()), stages))


def read_audio(entry: Entry) -> np.ndarray:
    """The whole file as 16 kHz mono int16, read the way the edge reads it."""
    blocks = [b.samples for b in WavSource(str(entry.path), block_seconds=1.0).blocks()]
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)


def _options(settings: UplinkSettings) -> pb.RecognitionOptions:
    return pb.RecognitionOptions(
        language=settings.language or "",
        model=settings.model or "",
        beam_size=settings.beam_size,
        word_timestamps=True,
        initial_prompt=settings.initial_prompt or "",
        hotwords=settings.hotwords or "",
        task=wire_task(settings.task),
    )


async def recognize_alone(
    stub: pb_grpc.RecognizerStub,
    audio: np.ndarray,
    utterance: Utterance,
    settings: UplinkSettings,
    timeout: float,
) -> Recognized:
    """One Recognize call on the utterance's audio; word times are moved into the file's timeline."""
    offset = utterance.start or 0.0
    first = round(offset * SAMPLE_RATE)
    last = audio.shape[0] if utterance.end is None else round(utterance.end * SAMPLE_RATE)
    clip = audio[first:last]
    if not clip.shape[0]:
        return Recognized(error=f"utterance {utterance.id}: no audio at {offset:g} s")
    request = pb.RecognizeRequest(
        format=pb.AudioFormat(encoding=pb.LINEAR16, sample_rate_hz=SAMPLE_RATE, channels=1),
        options=_options(settings),
        audio=np.ascontiguousarray(clip, dtype="<i2").tobytes(),
    )
    try:
        result = await stub.Recognize(request, timeout=timeout)
    except grpc.aio.AioRpcError as err:
        return Recognized(error=f"{err.code().name}: {err.details()}")
    words = tuple(TimedWord(w.word, offset + w.start_seconds, offset + w.end_seconds) for w in result.words)
    return Recognized(
        result.text.strip(),
        words,
        avg_logprob=float(result.avg_logprob),
        no_speech_prob=float(result.no_speech_prob),
        compression_ratio=float(result.compression_ratio),
    )


async def run_file(entry: Entry, uplink: Uplink, stub: pb_grpc.RecognizerStub, settings: EvalSettings) -> FileRun:
    """Both runs of one file; a file that cannot be read or streamed comes back with ``error`` set."""
    if not entry.path.is_file():
        return FileRun(entry, error="no such audio file")
    try:
        audio = read_audio(entry)
        alone = []
        for utterance in entry.utterances:
            alone.append(await recognize_alone(stub, audio, utterance, uplink.settings, settings.recognize_timeout))
        log = SegmentLog(edge_queue=settings.pace is not None)
        source = WavSource(str(entry.path), pace=settings.pace)
        results = [
            r
            async for r in run_session(
                uplink,
                new_session_id(entry.name),
                source.blocks(),
                settings.vad,
                # Read faster than real time, a file's segments are sent one at a time, so that each
                # one's latency is its own rather than the wait behind the file's earlier segments.
                window=1 if settings.pace is None else None,
                observer=log,
            )
        ]
    except AudioError as err:
        return FileRun(entry, error=err.message)
    except UplinkError as err:
        return FileRun(entry, error=err.message)
    return FileRun(
        entry,
        duration=audio.shape[0] / SAMPLE_RATE,
        segments=tuple(log.segments),
        results=tuple(results),
        latencies=tuple(log.latencies),
        alone=tuple(alone),
    )
