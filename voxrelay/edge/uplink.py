"""The uplink: streams segments to the recognizer while they are spoken and matches results by id.

One ``Stream`` call per session. Each segment is sent as start → audio chunks → end as soon as the
segmenter produces them; the server acknowledges a segment once it has it all and answers with the
final result, which is matched to the segment by its id (``<device>/<session>/<sequence>``, the
idempotency key the server deduplicates on).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import numpy as np

from voxrelay import __version__
from voxrelay.edge.events import SegmentAudio, SegmentClosed, SegmentEvent, SegmentOpened
from voxrelay.edge.results import SegmentResult, Word
from voxrelay.errors import InvalidArgument, Unavailable, VoxrelayError
from voxrelay.protos import pb, pb_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UplinkSettings:
    """Where and how to send segments."""

    server: str
    device_id: str
    language: str | None = None
    model: str | None = None
    beam_size: int = 0
    word_timestamps: bool = False
    initial_prompt: str | None = None
    hotwords: str | None = None
    # Audio is sent in chunks of at most this many seconds (smaller at a segment's end).
    chunk_seconds: float = 0.1
    connect_timeout: float = 10.0
    # A segment whose result has not arrived this long after its end fails the session.
    result_timeout: float = 300.0
    keepalive_seconds: float = 30.0
    extra_options: tuple[tuple[str, int | str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.server or ":" not in self.server:
            raise InvalidArgument(f"server: {self.server!r} is not HOST:PORT")
        if not self.device_id:
            raise InvalidArgument("device_id: must not be empty")
        if not 0.01 <= self.chunk_seconds <= 2.0:
            raise InvalidArgument(f"chunk_seconds: {self.chunk_seconds} is out of range (0.01..2)")
        if self.connect_timeout <= 0 or self.result_timeout <= 0:
            raise InvalidArgument("timeouts must be positive")


class UplinkError(VoxrelayError):
    """The session with the recognizer failed; the message says how."""


def describe_rpc_error(server: str, err: grpc.aio.AioRpcError) -> str:
    code = err.code()
    details = err.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"the recognizer at {server} is unavailable ({details}); is `voxrelay serve` running there?"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the recognizer at {server} did not answer in time ({details})"
    return f"the recognizer at {server} refused the session: {code.name}: {details}"


def channel_options(settings: UplinkSettings) -> list[tuple[str, int | str]]:
    return [
        ("grpc.keepalive_time_ms", int(settings.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.primary_user_agent", f"voxrelay-edge/{__version__}"),
        *settings.extra_options,
    ]


async def connect(settings: UplinkSettings) -> grpc.aio.Channel:
    """Open a channel and wait until it is ready (a clear error when the server is not there)."""
    channel = grpc.aio.insecure_channel(settings.server, options=channel_options(settings))
    try:
        await asyncio.wait_for(channel.channel_ready(), settings.connect_timeout)
    except asyncio.TimeoutError:
        await channel.close()
        raise Unavailable(
            f"cannot reach the recognizer at {settings.server} within {settings.connect_timeout:g} s; "
            "is `voxrelay serve` running there?"
        ) from None
    return channel


def _session_config(settings: UplinkSettings, session_id: str) -> pb.SessionConfig:
    return pb.SessionConfig(
        device_id=settings.device_id,
        session_id=session_id,
        format=pb.AudioFormat(encoding=pb.LINEAR16, sample_rate_hz=16000, channels=1),
        options=pb.RecognitionOptions(
            language=settings.language or "",
            model=settings.model or "",
            beam_size=settings.beam_size,
            word_timestamps=settings.word_timestamps,
            initial_prompt=settings.initial_prompt or "",
            hotwords=settings.hotwords or "",
        ),
        client=f"voxrelay-edge/{__version__}",
    )


def _vad_stats(event: SegmentClosed) -> pb.VadStats:
    s = event.stats
    return pb.VadStats(
        vad=s.vad,
        speech_ratio=s.speech_ratio,
        mean_speech_probability=s.mean_speech_probability,
        level_dbfs=s.level_dbfs,
        clipping_ratio=s.clipping_ratio,
        forced_split=s.forced_split,
        pre_roll_seconds=s.pre_roll_seconds,
        hangover_seconds=s.hangover_seconds,
    )


def to_result(msg: pb.RecognitionResult, sequence: int, latency: float, duplicate: bool) -> SegmentResult:
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
        model=msg.model.name,
        model_version=msg.model.version,
        backend=msg.model.backend,
        slot=msg.slot,
        audio_seconds=msg.timings.audio_seconds,
        queue_wait_seconds=msg.timings.queue_wait_seconds,
        inference_seconds=msg.timings.inference_seconds,
        latency_seconds=latency,
        words=tuple(Word(w.word, w.start_seconds, w.end_seconds, w.probability) for w in msg.words),
        duplicate=duplicate,
    )


@dataclass
class _Pending:
    sequence: int
    offset: float
    speech_end: float
    closed_at: float | None = None
    acked: bool = False
    duplicate: bool = False


class Uplink:
    """Streams one session's segments and yields their results in order."""

    def __init__(self, settings: UplinkSettings, channel: grpc.aio.Channel) -> None:
        self.settings = settings
        self._stub = pb_grpc.RecognizerStub(channel)
        self.model: pb.ModelInfo | None = None
        self.sent_segments = 0
        self.sent_bytes = 0

    def segment_id(self, session_id: str, sequence: int) -> str:
        return f"{self.settings.device_id}/{session_id}/{sequence}"

    async def session(
        self, session_id: str, events: AsyncIterator[SegmentEvent]
    ) -> AsyncIterator[SegmentResult]:
        """Send ``events`` as one session; yield each segment's result as it arrives."""
        settings = self.settings
        pending: dict[str, _Pending] = {}
        call = self._stub.Stream(wait_for_ready=True)
        sender = asyncio.create_task(
            self._send(call, session_id, events, pending), name=f"uplink {session_id}"
        )
        try:
            while True:
                response = await self._next(call, pending)
                if response is None:
                    break
                kind = response.WhichOneof("message")
                if kind == "accepted":
                    self.model = response.accepted.model
                elif kind == "ack":
                    entry = pending.get(response.ack.segment_id)
                    if entry is not None:
                        entry.acked = True
                        entry.duplicate = response.ack.duplicate
                elif kind == "result":
                    entry = pending.pop(response.result.segment_id, None)
                    if entry is None:
                        log.warning("result for an unknown segment %s ignored", response.result.segment_id)
                        continue
                    latency = time.perf_counter() - (entry.closed_at or time.perf_counter())
                    yield to_result(response.result, entry.sequence, latency, entry.duplicate)
                elif kind == "error":
                    entry = pending.pop(response.error.segment_id, None)
                    if entry is None:
                        continue
                    yield SegmentResult(
                        segment_id=response.error.segment_id,
                        sequence=entry.sequence,
                        text="",
                        start=entry.offset,
                        end=entry.speech_end,
                        error=f"{response.error.code}: {response.error.message}",
                    )
            await sender  # surfaces an error raised while reading the events
        except grpc.aio.AioRpcError as err:
            if sender.done() and not sender.cancelled() and sender.exception() is not None:
                raise sender.exception() from None  # type: ignore[misc]
            raise UplinkError(describe_rpc_error(settings.server, err)) from None
        finally:
            if not sender.done():
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            call.cancel()

    async def _send(
        self,
        call: grpc.aio.StreamStreamCall,
        session_id: str,
        events: AsyncIterator[SegmentEvent],
        pending: dict[str, _Pending],
    ) -> None:
        try:
            await call.write(pb.StreamRequest(config=_session_config(self.settings, session_id)))
            chunk_bytes = int(self.settings.chunk_seconds * 16000) * 2
            open_id: str | None = None
            buffered = bytearray()
            async for event in events:
                if isinstance(event, SegmentOpened):
                    open_id = self.segment_id(session_id, event.sequence)
                    pending[open_id] = _Pending(event.sequence, event.offset, event.offset)
                    start = pb.SegmentStart(
                        segment_id=open_id, sequence=event.sequence, offset_seconds=event.offset
                    )
                    await call.write(pb.StreamRequest(start=start))
                elif isinstance(event, SegmentAudio):
                    buffered += np.ascontiguousarray(event.samples, dtype="<i2").tobytes()
                    while len(buffered) >= chunk_bytes:
                        await self._write_audio(call, bytes(buffered[:chunk_bytes]))
                        del buffered[:chunk_bytes]
                elif isinstance(event, SegmentClosed):
                    if open_id is None:
                        raise RuntimeError("SegmentClosed without SegmentOpened")
                    if buffered:
                        await self._write_audio(call, bytes(buffered))
                        buffered.clear()
                    entry = pending[open_id]
                    entry.speech_end = event.speech_end
                    entry.closed_at = time.perf_counter()
                    end = pb.SegmentEnd(segment_id=open_id, vad=_vad_stats(event))
                    await call.write(pb.StreamRequest(end=end))
                    self.sent_segments += 1
                    open_id = None
            await call.done_writing()
        except BaseException:
            call.cancel()  # unblocks the reader; the error surfaces from this task
            raise

    async def _write_audio(self, call: grpc.aio.StreamStreamCall, data: bytes) -> None:
        await call.write(pb.StreamRequest(audio=pb.AudioChunk(audio=data)))
        self.sent_bytes += len(data)

    async def _next(
        self, call: grpc.aio.StreamStreamCall, pending: dict[str, _Pending]
    ) -> pb.StreamResponse | None:
        """The next response, failing if a closed segment waits longer than result_timeout."""
        timeout = self.settings.result_timeout
        while True:
            closed = [p.closed_at for p in pending.values() if p.closed_at is not None]
            wait = None if not closed else max(0.0, min(closed) + timeout - time.perf_counter())
            try:
                response = await asyncio.wait_for(call.read(), wait)
            except asyncio.TimeoutError:
                raise UplinkError(
                    f"no result from {self.settings.server} within {timeout:g} s of a segment's end"
                ) from None
            if response is grpc.aio.EOF:
                if pending and any(p.closed_at is not None for p in pending.values()):
                    raise UplinkError(f"the recognizer at {self.settings.server} closed the stream early")
                return None
            return response
