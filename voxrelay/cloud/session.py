"""One ``Stream`` call: the message-order state machine, segment assembly, in-order results."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace

import numpy as np

from voxrelay.cloud.context import previous_text, with_context
from voxrelay.cloud.core import ServiceCore
from voxrelay.cloud.engine import Recognition, Ticket
from voxrelay.cloud.interim import InterimRecognizer, interim_interval
from voxrelay.cloud.scheduler import Priority
from voxrelay.cloud.segments import OpenSegment, SessionState
from voxrelay.cloud.speculate import Decoded, Speculation, Speculator
from voxrelay.cloud.streamguard import IdleStream, OpenSegmentClock, SlowSegment, stream_deadline
from voxrelay.cloud.watch import vad_features
from voxrelay.cloud.wire import decode_options, limits, model_info, recognition_result, wire_format
from voxrelay.errors import FailedPrecondition, InvalidArgument, LimitExceeded, Unavailable, VoxrelayError, shown
from voxrelay.protos import pb

log = logging.getLogger(__name__)

MAX_ID_LENGTH = {"device_id": 128, "session_id": 128, "segment_id": 256}


def check_id(field: str, value: str) -> str:
    limit = MAX_ID_LENGTH[field.rsplit(".", 1)[-1]]
    if not value:
        raise InvalidArgument(f"{field}: must not be empty")
    if len(value) > limit:
        raise InvalidArgument(f"{field}: {len(value)} characters is over the limit of {limit}")
    if not value.isprintable():
        raise InvalidArgument(f"{field}: must be printable characters only")
    return value


_DONE = object()


class StreamSession:
    """Reads one client's requests, answers acks at once and results in the order segments ended."""

    def __init__(
        self, core: ServiceCore, peer: str, principal: str = "", client: str | None = None, provisional: str = ""
    ) -> None:
        self.core = core
        self.peer = peer
        # Who is calling (a token digest or TLS identity): cached results are kept apart per principal.
        self.principal = principal
        # Who fair share counts: a trustworthy identity, or (None) the device id the config names;
        # until then the stream counts against ``provisional`` (the peer address).
        self.client = client
        self._counted_as: str | None = client if client is not None else provisional
        core.streams_by_client[self._counted_as] += 1
        # Segments ended on this stream whose response has not gone out yet.
        self._pending = 0
        self._last_activity = self._opened = time.monotonic()
        self._out: asyncio.Queue[object] = asyncio.Queue()
        self._results: asyncio.Queue[object] = asyncio.Queue()
        self._state: SessionState | None = None
        self._segment: OpenSegment | None = None
        # Interim recognitions of the open segment, when the config asks for them.
        self._interim: InterimRecognizer | None = None
        # Speculative recognition of the open segment during a pause the edge reports.
        self._speculator = Speculator(core.metrics, self._speculation_moot)
        # The last segment ended on this stream: its end in the session's audio and its result.
        self._previous: tuple[float, asyncio.Future[pb.RecognitionResult]] | None = None

    async def responses(self, requests: AsyncIterator[pb.StreamRequest]) -> AsyncIterator[pb.StreamResponse]:
        """Yield responses; raises a VoxrelayError for a request that ends the stream."""
        reader = asyncio.create_task(self._read(requests), name=f"stream-read {self.peer}")
        deliverer = asyncio.create_task(self._deliver(), name=f"stream-deliver {self.peer}")
        try:
            while True:
                item = await self._out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, pb.StreamResponse)
                yield item
        finally:
            reader.cancel()
            deliverer.cancel()
            await asyncio.gather(reader, deliverer, return_exceptions=True)
            self._release()

    def _release(self) -> None:
        """Drop what the ended stream holds (the open segment's audio, queued responses and errors, whose
        tracebacks point back here), so its memory is freed now rather than by a later cycle collection."""
        if self._interim is not None:
            self._interim.close()
        self._speculator.close()
        if self._segment is not None:
            self._segment.chunks.clear()
            self._segment = None
            self.core.open_segments -= 1
        if self._counted_as is not None:
            self.core.streams_by_client[self._counted_as] -= 1
            if self.core.streams_by_client[self._counted_as] <= 0:
                del self.core.streams_by_client[self._counted_as]
            self._counted_as = None
        for queue in (self._out, self._results):
            while not queue.empty():
                item = queue.get_nowait()
                if isinstance(item, asyncio.Future) and not item.done():
                    item.cancel()

    async def _read(self, requests: AsyncIterator[pb.StreamRequest]) -> None:
        error: BaseException | None = None
        try:
            async for request in self._within_idle_limit(requests):
                await self._handle(request)
            if self._segment is not None:
                raise InvalidArgument(
                    f"end: the stream closed while segment {shown(self._segment.segment_id)} was open; "
                    "send its end before closing"
                )
            if self._state is None:
                raise InvalidArgument("config: the stream closed before a config was sent")
        except VoxrelayError as err:
            error = err.with_traceback(None)  # its frames would keep this session (and its audio) alive
        # Results of every segment that ended go out first, then the stream ends (with the error).
        await self._results.put(error if error is not None else _DONE)

    def _deadline(self) -> tuple[float, VoxrelayError]:
        """When this stream is to be closed if nothing changes, and with what error."""
        segment = self._segment
        opened = None
        if segment is not None and self._state is not None:
            opened = OpenSegmentClock(segment.segment_id, segment.opened_at, self._state.fmt.seconds(segment.n_bytes))
        return stream_deadline(
            self.core.settings, self._state is not None, self._opened, self._last_activity, bool(self._pending), opened
        )

    async def _within_idle_limit(self, requests: AsyncIterator[pb.StreamRequest]) -> AsyncIterator[pb.StreamRequest]:
        """The requests; a stream that sends no config, nothing at all with nothing pending, or an open
        segment's audio far slower than real time, is closed when its deadline passes."""
        iterator = aiter(requests)
        waiting: asyncio.Task[pb.StreamRequest] | None = None
        try:
            while True:
                if waiting is None:
                    waiting = asyncio.ensure_future(anext(iterator))
                deadline, error = self._deadline()
                done, _ = await asyncio.wait({waiting}, timeout=max(deadline - time.monotonic(), 0.0))
                if not done:
                    if isinstance(error, IdleStream) and self._state is not None and self._pending:
                        self._last_activity = time.monotonic()  # waiting for results is not idleness
                    elif time.monotonic() >= deadline:
                        raise error
                    continue
                try:
                    request = waiting.result()
                except StopAsyncIteration:
                    return
                waiting = None
                self._last_activity = time.monotonic()
                yield request
                deadline, error = self._deadline()
                if isinstance(error, SlowSegment) and time.monotonic() >= deadline:
                    raise error  # a trickle of audio keeps a stream busy, never fast enough
        finally:
            if waiting is not None and not waiting.done():
                waiting.cancel()
            elif waiting is not None and not waiting.cancelled():
                waiting.exception()  # retrieved: the stream is ending anyway

    async def _deliver(self) -> None:
        while True:
            item = await self._results.get()
            if item is _DONE or isinstance(item, BaseException):
                await self._out.put(item)
                return
            assert isinstance(item, asyncio.Future)
            response = await item
            self._pending -= 1
            self._last_activity = time.monotonic()
            await self._out.put(response)

    async def _handle(self, request: pb.StreamRequest) -> None:
        kind = request.WhichOneof("message")
        if kind is None:
            raise InvalidArgument("StreamRequest: no message set (expected config, start, audio, pause or end)")
        if self._state is None and kind != "config":
            raise InvalidArgument(f"{kind}: the first message of a stream must be config, not {kind}")
        if kind == "config":
            await self._configure(request.config)
        elif kind == "start":
            await self._start(request.start)
        elif kind == "audio":
            self._audio(request.audio)
        elif kind == "pause":
            self._pause(request.pause)
        else:
            self._end(request.end)

    async def _configure(self, config: pb.SessionConfig) -> None:
        if self._state is not None:
            raise InvalidArgument("config: sent twice; a stream has exactly one config, first")
        device_id = check_id("config.device_id", config.device_id)
        session_id = check_id("config.session_id", config.session_id)
        fmt = wire_format("config.format", config.format, self.core.settings)
        engine = self.core.engine_for("config.options.model", config.options.model, device_id)
        options = decode_options(
            "config.options", config.options, self.core.settings, engine.model, engine.count_tokens
        )
        interval = interim_interval("config", config)
        if self.client is None:  # no token or certificate: the device id names the client
            self.client = f"device:{device_id}"
            self.core.check_client_streams(self.client)
            self._recount(self.client)
        self._state = SessionState(device_id, session_id, fmt, options, engine)
        if interval is not None:
            self._interim = InterimRecognizer(
                interval, self._out.put_nowait, self.core.metrics, lambda: self.client or ""
            )
        log.info(
            "stream %s: session %s/%s, %s, deployment %s (%s, model %s)",
            self.peer,
            device_id,
            session_id,
            fmt.describe(),
            engine.name,
            engine.role,
            engine.model.name,
        )
        accepted = pb.SessionAccepted(
            session_id=session_id, model=model_info(engine.model), limits=limits(self.core.settings)
        )
        await self._out.put(pb.StreamResponse(accepted=accepted))

    def _recount(self, client: str) -> None:
        counts = self.core.streams_by_client
        if self._counted_as is not None:
            counts[self._counted_as] -= 1
            if counts[self._counted_as] <= 0:
                del counts[self._counted_as]
        counts[client] += 1
        self._counted_as = client

    async def _start(self, start: pb.SegmentStart) -> None:
        if self._segment is not None:
            raise InvalidArgument(f"start: segment {shown(self._segment.segment_id)} is still open; send its end first")
        segment_id = check_id("start.segment_id", start.segment_id)
        if start.offset_seconds < 0 or start.offset_seconds != start.offset_seconds:
            raise InvalidArgument(f"start.offset_seconds: {start.offset_seconds} must be a time ≥ 0")
        if self.core.draining:
            raise Unavailable("the server is draining; reconnect (to another replica) to send more segments")
        if self._pending >= self.core.settings.max_pending_segments:
            raise self.core.overloaded(
                f"{self._pending} segments of this stream await their results "
                f"(limit {self.core.settings.max_pending_segments}); read results before sending more"
            )
        if self.core.results.peek(self._cache_key(segment_id)) is None:  # a resent segment needs no room
            self.core.admit(client=self.client)
        state = self._state
        assert state is not None
        engine = self.core.reroute(state.engine, state.device_id)  # between segments the rollout may move it
        if engine is not state.engine:
            self._state = replace(state, engine=engine)
        self._segment = OpenSegment(segment_id, start.sequence, start.offset_seconds, engine=engine)
        self.core.open_segments += 1
        if self._interim is not None:
            self._interim.opened(self._segment)

    def _audio(self, chunk: pb.AudioChunk) -> None:
        assert self._state is not None
        if self._segment is None:
            raise InvalidArgument("audio: no segment is open; send start before audio")
        segment = self._segment
        if not chunk.audio:
            raise InvalidArgument("audio: empty chunk; send at least one frame")
        settings = self.core.settings
        self._state.fmt.check_chunk("audio", chunk.audio, settings.max_chunk_bytes)
        segment.n_bytes += len(chunk.audio)
        seconds = self._state.fmt.seconds(segment.n_bytes)
        if seconds > settings.max_segment_seconds:
            raise LimitExceeded(
                f"segment {shown(segment.segment_id)}: {seconds:.1f} s of audio is over the limit of "
                f"{settings.max_segment_seconds:g} s per segment; split long speech into shorter segments"
            )
        segment.chunks.append(chunk.audio)
        segment.digest.update(chunk.audio)
        self.core.metrics_audio(self._state.fmt.seconds(len(chunk.audio)))
        if self._interim is not None:
            self._interim.grew(self._state, segment)
        self._speculator.grew(segment)

    def _pause(self, pause: pb.SegmentPause) -> None:
        state, segment = self._state, self._segment
        assert state is not None
        if segment is None:
            raise InvalidArgument("pause: no segment is open; send start (and audio) before pause")
        if pause.segment_id and pause.segment_id != segment.segment_id:
            raise InvalidArgument(
                f"pause.segment_id: {shown(pause.segment_id)} does not match the open segment "
                f"{shown(segment.segment_id)}"
            )
        if not self.core.settings.speculate:
            return
        context = self._context_for(segment)

        def decode(audio: np.ndarray, priority: Priority, ticket: Ticket) -> Coroutine[object, object, Decoded]:
            return self._decode(state, segment, audio, context, priority, ticket)

        self._speculator.paused(state, segment, decode)

    def _speculation_moot(self, speculation: Speculation, recognition: Recognition) -> None:
        """Speech resumed after a speculation ran: with interim results on, its text is one."""
        if self._interim is not None and self._state is not None:
            audio_seconds = self._state.fmt.seconds(speculation.n_bytes)
            self._interim.offer(self._state, speculation.segment, recognition, audio_seconds)

    def _context_for(self, segment: OpenSegment) -> asyncio.Future[pb.RecognitionResult] | None:
        """The previous segment's result, when ``segment`` is decoded with its text as the prompt."""
        previous = self._previous
        context_seconds = self.core.settings.context_seconds
        if previous is None or not (context_seconds and segment.offset - previous[0] <= context_seconds):
            return None
        return previous[1]

    def _end(self, end: pb.SegmentEnd) -> None:
        if self._interim is not None:  # from here on none of the open segment's interims goes out
            self._interim.ended()
        state = self._state
        assert state is not None
        segment = self._segment
        if segment is None:
            raise InvalidArgument("end: no segment is open; send start first")
        if end.segment_id and end.segment_id != segment.segment_id:
            raise InvalidArgument(
                f"end.segment_id: {shown(end.segment_id)} does not match the open segment {shown(segment.segment_id)}"
            )
        speculation = self._speculator.take(segment)
        if not segment.n_bytes:
            raise InvalidArgument(f"end: segment {shown(segment.segment_id)} has no audio")
        self._segment = None
        self.core.open_segments -= 1
        segment.vad = vad_features(end.vad if end.HasField("vad") else None)
        ended = time.perf_counter()
        audio_seconds = state.fmt.seconds(segment.n_bytes)
        key = self._cache_key(segment.segment_id)
        digest = self._digest(segment)
        if not self.core.results.matches(key, digest):
            segment.chunks.clear()
            if speculation is not None:
                self._speculator.discard(speculation)
            raise FailedPrecondition(
                f"segment {shown(segment.segment_id)}: this id was already sent in session "
                f"{shown(state.session_id)} with different audio; give each segment a new id"
            )
        if self.core.results.peek(key) is None:
            try:
                # A segment open when a drain began may still end: only new segments are refused.
                engine = segment.engine or state.engine
                self.core.admit(
                    audio_seconds, self.client, engine.estimate(audio_seconds, state.options), draining_ok=True
                )
            except VoxrelayError:
                segment.chunks.clear()
                if speculation is not None:
                    self._speculator.discard(speculation)
                raise
        future, owner = self.core.results.claim(key, digest)
        ack = pb.SegmentAck(segment_id=segment.segment_id, audio_seconds=audio_seconds, duplicate=not owner)
        self._out.put_nowait(pb.StreamResponse(ack=ack))
        context = self._context_for(segment)
        self._previous = (segment.offset + audio_seconds, future)
        if owner:
            self.core.queued_audio_seconds += audio_seconds
            self.core.spawn(self._recognize(state, segment, audio_seconds, ended, future, context, speculation))
        elif speculation is not None:  # answered from the cache
            self._speculator.discard(speculation)
        self._pending += 1
        self._results.put_nowait(asyncio.ensure_future(self._respond(segment.segment_id, future)))

    def _cache_key(self, segment_id: str) -> tuple[str, str, str, str]:
        """Everything that names a segment: who is calling, the device, the session and the segment id."""
        assert self._state is not None
        return (self.principal, self._state.device_id, self._state.session_id, segment_id)

    def _digest(self, segment: OpenSegment) -> bytes:
        assert self._state is not None
        digest = segment.digest.copy()
        digest.update(self._state.fmt.describe().encode())
        return bytes(digest.digest())

    async def _recognize(
        self,
        state: SessionState,
        segment: OpenSegment,
        audio_seconds: float,
        ended: float,
        future: asyncio.Future[pb.RecognitionResult],
        context: asyncio.Future[pb.RecognitionResult] | None = None,
        speculation: Speculation | None = None,
    ) -> None:
        key = self._cache_key(segment.segment_id)
        engine = segment.engine or state.engine
        try:
            decoded = await self._speculated(speculation) if speculation is not None else None
            if decoded is not None and speculation is not None:
                audio = speculation.audio
                options, recognition = decoded
            else:
                audio = state.fmt.decode("audio", b"".join(segment.chunks))
                options, recognition = await self._decode(state, segment, audio, context)
            segment.chunks.clear()
        except VoxrelayError as err:
            if not future.done():
                future.set_exception(err)
            self.core.results.forget(key)
            return
        except asyncio.CancelledError:
            self.core.results.forget(key)
            raise
        finally:
            self.core.queued_audio_seconds -= audio_seconds
        self._speculator.finished(recognition)
        result = recognition_result(
            recognition,
            segment_id=segment.segment_id,
            offset=segment.offset,
            audio_seconds=audio_seconds,
            model=engine.model,
            slot=engine.role,
            deployment=engine.name,
        )
        # Queue wait counts from the segment's end: decoding and waiting for a worker.
        result.timings.queue_wait_seconds = max(0.0, time.perf_counter() - ended - recognition.inference)
        result.timings.speculative = decoded is not None
        if decoded is not None:
            result.timings.queue_wait_seconds = 0.0
        self.core.observe_result(
            engine.model,
            result,
            audio,
            segment.vad,
            f"{state.device_id}/{state.session_id}",
            engine=engine,
            options=options,
        )
        if not future.done():
            future.set_result(result)

    async def _decode(
        self,
        state: SessionState,
        segment: OpenSegment,
        audio: np.ndarray,
        context: asyncio.Future[pb.RecognitionResult] | None,
        priority: Priority = Priority.FINAL,
        ticket: Ticket | None = None,
    ) -> Decoded:
        """Recognise ``audio`` of ``segment`` with the session's options (and the previous text)."""
        engine = segment.engine or state.engine
        options = state.options
        if context is not None:
            options = with_context(options, await previous_text(context))
        try:
            recognition = await engine.recognize(audio, options, self.client or "", priority, ticket=ticket)
        except VoxrelayError as err:
            if priority == Priority.FINAL:  # a speculation that fails is decoded again as usual
                self.core.observe_error(engine, err)
            raise
        return options, recognition

    async def _speculated(self, speculation: Speculation) -> Decoded | None:
        """The result of a speculation taken at the segment's end (None: it failed)."""
        try:
            decoded = await speculation.task
        except VoxrelayError:
            self._speculator.failed(speculation)
            return None
        self._speculator.used(speculation)
        return decoded

    async def _respond(self, segment_id: str, future: asyncio.Future[pb.RecognitionResult]) -> pb.StreamResponse:
        try:
            result = await asyncio.shield(future)
        except VoxrelayError as err:
            log.warning("segment %s failed: %s", segment_id, err.message)
            error = pb.SegmentError(segment_id=segment_id, code=err.code.name, message=err.message)
            return pb.StreamResponse(error=error)
        except asyncio.CancelledError:
            if not future.cancelled():
                raise  # this stream is being torn down (the client left): not the recognition's fault
            error = pb.SegmentError(
                segment_id=segment_id,
                code="UNAVAILABLE",
                message="the server stopped before the segment was recognised; resend it",
            )
            return pb.StreamResponse(error=error)
        return pb.StreamResponse(result=result)
