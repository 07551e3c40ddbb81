"""One ``Stream`` call of an uplink session: writes what has no result yet, reads acks and results.

The session's state (:class:`SessionState`) outlives the calls: a broken call raises :class:`Retry`
and the uplink opens a new one, which starts from that state again (resending what is unanswered).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from voxrelay.edge.link import messages
from voxrelay.edge.link.channel import Metadata, UplinkError, describe_rpc_error, retry_hint
from voxrelay.edge.link.records import Dropped
from voxrelay.edge.link.settings import UplinkSettings
from voxrelay.edge.link.spool import SpooledSegment
from voxrelay.edge.results import SegmentResult
from voxrelay.protos import pb, pb_grpc

RESEND_CHUNK_BYTES = 32_000  # one second per message when resending a whole segment
# Segments resent ahead of the server's ack: a busy server refuses one, not a whole backlog sent at once.
RESEND_WINDOW = 2


@dataclass
class UplinkStats:
    """Counters since the uplink was made (read by metrics and tests)."""

    reconnects: int = 0
    sent_bytes: int = 0
    resent_segments: int = 0
    pauses: int = 0  # SegmentPause messages sent (each lets the server start on the segment early)
    duplicate_results: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


class Retry(Exception):
    def __init__(self, why: str, pushback: float | None = None, code: str = "UNAVAILABLE") -> None:
        super().__init__(why)
        self.why = why
        self.pushback = pushback
        self.code = code


@dataclass
class Outstanding:
    segment: SpooledSegment
    closed_at: float | None  # perf_counter() when the uplink took it in this process (None: replayed)
    closed_clock: float | None = None  # perf_counter() when the segmenter closed it
    speech_end_clock: float | None = None  # perf_counter() when the audio of its last speech frame arrived
    duplicate: bool = False
    sends: int = 0


@dataclass
class OpenSegment:
    segment_id: str
    sequence: int
    offset: float
    audio: bytearray = field(default_factory=bytearray)
    # len(audio) when the segmenter last reported a pause (SegmentPaused); -1: none since it opened.
    paused_bytes: int = -1


@dataclass
class _Connection:
    """What has been sent on the current Stream call."""

    sent: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    sent_at: dict[str, float] = field(default_factory=dict)
    open_id: str | None = None  # a segment started on this call but not ended
    open_bytes: int = 0
    paused_bytes: int = -1  # the open segment's length at the last pause sent on this call
    # Set when the server has accepted the session: no audio goes out before (a busy server refuses
    # a new stream at once, and nothing is sent in vain).
    accepted: asyncio.Event = field(default_factory=asyncio.Event)


FINISHED = object()


async def _read(call: grpc.aio.StreamStreamCall, writer: asyncio.Task[None], wait: float | None) -> object:
    """The next response (or EOF); None after ``wait`` seconds. A failed writer's error is raised."""
    reading = asyncio.ensure_future(call.read())
    try:
        while True:
            watched = {reading} if writer.done() else {reading, writer}
            done, _ = await asyncio.wait(watched, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if reading in done:
                return reading.result()
            if not done:
                return None
            if not writer.cancelled() and writer.exception() is not None:
                raise writer.exception()  # type: ignore[misc]
    finally:
        if not reading.done():
            reading.cancel()


class SessionState:
    def __init__(self, session_id: str, skip_below: int) -> None:
        self.session_id = session_id
        self.skip_below = skip_below
        self.outstanding: dict[str, Outstanding] = {}  # closed, spooled, no result yet; in order
        self.delivered: set[int] = set()  # sequences whose result the sinks already have
        self.damaged: dict[int, Dropped] = {}  # spooled segments whose audio failed its checksum
        self.open: OpenSegment | None = None
        self.events_done = False
        self.changed = asyncio.Event()
        self.results: asyncio.Queue[object] = asyncio.Queue()

    @property
    def complete(self) -> bool:
        return self.events_done and self.open is None and not self.outstanding


class StreamCall:
    """Runs one Stream call with the uplink's settings, stub, token metadata and counters.

    ``on_accepted`` is told the model the server accepted the session with.
    """

    def __init__(
        self,
        settings: UplinkSettings,
        stub: pb_grpc.RecognizerStub,
        metadata: Metadata,
        stats: UplinkStats,
        on_accepted: Callable[[pb.ModelInfo], None],
    ) -> None:
        self.settings = settings
        self.stats = stats
        self._stub = stub
        self._metadata = metadata
        self._on_accepted = on_accepted

    async def run(self, state: SessionState, made_progress: Callable[[], None]) -> bool:
        """One Stream call; True once the session is complete, else raises Retry (or UplinkError)."""
        settings = self.settings
        call = self._stub.Stream(metadata=self._metadata, wait_for_ready=True)
        conn = _Connection()
        writer = asyncio.create_task(self._write(call, state, conn), name=f"uplink-write {state.session_id}")
        try:
            accepted = False
            while True:
                if not accepted:
                    wait: float | None = settings.connect_timeout
                elif conn.sent_at:
                    wait = max(0.0, min(conn.sent_at.values()) + settings.result_timeout - time.perf_counter())
                else:
                    wait = None
                response = await _read(call, writer, wait)
                if response is None:
                    what = "no answer to the session config" if not accepted else "a result is overdue"
                    raise Retry(f"{what} after {wait:g} s", code="TIMEOUT")
                if response is grpc.aio.EOF:
                    return state.complete
                assert isinstance(response, pb.StreamResponse)
                if response.HasField("accepted"):
                    accepted = True
                    conn.accepted.set()
                    self._on_accepted(response.accepted.model)
                    if not state.outstanding:
                        made_progress()
                else:
                    self._handle(state, conn, response, made_progress)
        except grpc.aio.AioRpcError as err:
            retryable, pushback = retry_hint(err)
            if not retryable:
                raise UplinkError(describe_rpc_error(settings.server, err)) from None
            # A retryable INTERNAL is the transport's (see retry_hint), counted apart from the server's refusals.
            code = "INTERNAL_TRANSPORT" if err.code() == grpc.StatusCode.INTERNAL else err.code().name
            raise Retry(f"{err.code().name}: {err.details()}", pushback, code) from None
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            call.cancel()

    def _handle(
        self, state: SessionState, conn: _Connection, response: pb.StreamResponse, made_progress: Callable[[], None]
    ) -> None:
        kind = response.WhichOneof("message")
        if kind == "ack":
            conn.acked.add(response.ack.segment_id)
            state.changed.set()  # the writer may resend the next segment
            entry = state.outstanding.get(response.ack.segment_id)
            if entry is not None:
                entry.duplicate = response.ack.duplicate
                made_progress()  # the server has taken it: a slow result is no outage
        elif kind == "result":
            segment_id = response.result.segment_id
            entry = state.outstanding.pop(segment_id, None)
            conn.sent_at.pop(segment_id, None)
            if entry is None:  # already delivered (or dropped): never hand it to the sinks twice
                self.stats.duplicate_results += 1
                return
            now = time.perf_counter()
            closed = entry.closed_clock if entry.closed_clock is not None else entry.closed_at
            speech_end = entry.speech_end_clock if entry.speech_end_clock is not None else closed
            latency = now - speech_end if speech_end is not None else 0.0
            from_close = now - closed if closed is not None else 0.0
            state.results.put_nowait(
                messages.to_result(response.result, entry.segment.sequence, latency, entry.duplicate, from_close)
            )
            made_progress()
            state.changed.set()
        elif kind == "interim":
            self._interim(state, response.interim)
        elif kind == "error":
            error = response.error
            conn.sent_at.pop(error.segment_id, None)
            if error.code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED"):
                conn.sent.discard(error.segment_id)  # send it again
                self.stats.refusals[error.code] += 1
                state.changed.set()
                return
            entry = state.outstanding.pop(error.segment_id, None)
            if entry is None:
                return
            segment = entry.segment
            state.results.put_nowait(
                SegmentResult(
                    segment_id=error.segment_id,
                    sequence=segment.sequence,
                    text="",
                    start=segment.offset,
                    end=segment.speech_end,
                    error=f"{error.code}: {error.message}",
                )
            )
            state.changed.set()

    @staticmethod
    def _interim(state: SessionState, result: pb.RecognitionResult) -> None:
        """Interim text of a segment still without its final result (asked for: never spooled)."""
        if state.open is not None and state.open.segment_id == result.segment_id:
            sequence = state.open.sequence
        elif result.segment_id in state.outstanding:
            sequence = state.outstanding[result.segment_id].segment.sequence
        else:
            return  # its final result is already in: an interim must not follow it
        state.results.put_nowait(messages.to_result(result, sequence, 0.0, False))

    # Writing one Stream call.

    async def _write(self, call: grpc.aio.StreamStreamCall, state: SessionState, conn: _Connection) -> None:
        s = self.settings
        config = messages.session_config(
            device_id=s.device_id,
            session_id=state.session_id,
            language=s.language,
            model=s.model,
            beam_size=s.beam_size,
            word_timestamps=s.word_timestamps,
            initial_prompt=s.initial_prompt,
            hotwords=s.hotwords,
            task=s.task,
            interim_results=s.interim_results,
            interim_interval=s.interim_interval,
        )
        try:
            await call.write(config)
            await conn.accepted.wait()
            while True:
                state.changed.clear()
                await self._write_pending(call, state, conn)
                everything_sent = all(segment_id in conn.sent for segment_id in state.outstanding)
                if state.events_done and state.open is None and conn.open_id is None and everything_sent:
                    await call.done_writing()
                    return
                await state.changed.wait()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            return  # the call failed: the reader sees why

    async def _write_pending(self, call: grpc.aio.StreamStreamCall, state: SessionState, conn: _Connection) -> None:
        live_chunk = int(self.settings.chunk_seconds * 16000) * 2
        if conn.open_id is not None:
            entry = state.outstanding.get(conn.open_id)
            if entry is not None:  # the segment streamed live has closed: the rest of its audio, its end
                entry.sends += 1
                await self._send(call, entry.segment.audio[conn.open_bytes :], live_chunk)
                await self._end(call, conn, entry.segment)
            elif state.open is not None and state.open.segment_id == conn.open_id:
                await self._stream_open(call, state.open, conn, live_chunk)
                return  # nothing else may start while a segment is open on the call
            else:  # dropped by the spool as it closed: end it validly; its result will be ignored
                if not conn.open_bytes:
                    await call.write(pb.StreamRequest(audio=pb.AudioChunk(audio=bytes(2))))
                await call.write(messages.end(conn.open_id, None))
                conn.open_id = None
        for segment_id, entry in list(state.outstanding.items()):
            if segment_id in conn.sent or segment_id not in state.outstanding:
                continue
            if len(conn.sent - conn.acked) >= RESEND_WINDOW:
                return  # resend more once the server has taken these (and start nothing new before)
            if entry.sends or entry.closed_at is None:
                self.stats.resent_segments += 1
            entry.sends += 1
            segment = entry.segment
            await call.write(messages.start(segment.segment_id, segment.sequence, segment.offset))
            await self._send(call, segment.audio, RESEND_CHUNK_BYTES)
            await self._end(call, conn, segment)
        if state.open is not None:
            opened = state.open
            await call.write(messages.start(opened.segment_id, opened.sequence, opened.offset))
            conn.open_id, conn.open_bytes, conn.paused_bytes = opened.segment_id, 0, -1
            await self._stream_open(call, opened, conn, live_chunk)

    async def _stream_open(
        self, call: grpc.aio.StreamStreamCall, opened: OpenSegment, conn: _Connection, chunk_bytes: int
    ) -> None:
        """Send the open segment's whole chunks that have not gone out on this call yet; at a pause
        (nothing new since the segmenter reported it), the rest too, and the pause."""
        while len(opened.audio) - conn.open_bytes >= chunk_bytes:
            await self._send(call, opened.audio[conn.open_bytes : conn.open_bytes + chunk_bytes], chunk_bytes)
            conn.open_bytes += chunk_bytes
        paused = opened.paused_bytes
        if paused > 0 and paused == len(opened.audio) and conn.paused_bytes != paused:
            await self._send(call, opened.audio[conn.open_bytes : paused], chunk_bytes)
            conn.open_bytes = conn.paused_bytes = paused
            await call.write(messages.pause(opened.segment_id))
            self.stats.pauses += 1

    async def _send(self, call: grpc.aio.StreamStreamCall, audio: bytes | bytearray, chunk_bytes: int) -> None:
        for request in messages.audio_chunks(audio, chunk_bytes):
            await call.write(request)
            self.stats.sent_bytes += len(request.audio.audio)

    async def _end(self, call: grpc.aio.StreamStreamCall, conn: _Connection, segment: SpooledSegment) -> None:
        await call.write(messages.end(segment.segment_id, segment.vad))
        conn.sent.add(segment.segment_id)
        conn.sent_at[segment.segment_id] = time.perf_counter()
        conn.open_id, conn.open_bytes, conn.paused_bytes = None, 0, -1
