"""The uplink: streams a session's segments to the recognizer, through the spool, across reconnects.

A session is one ``Stream`` call at a time. Audio of the open segment is streamed while it is spoken;
when the segment closes it is written to the spool (:mod:`voxrelay.edge.link.spool`) *before* its end is
sent, and it leaves the spool only once its result has been handed to the sinks. When the stream
breaks (server gone, network cut, server draining or busy), the uplink reconnects with exponential
backoff and jitter (honouring the server's retry hint) and opens a new stream with the same session
id, on which it resends every segment that has no result yet, in order, then the open segment's audio
so far. The server answers a segment id it already recognised from its cache, so nothing is
recognised twice; the edge drops results it has already delivered, so nothing reaches a sink twice.

Segment ids are ``<device>/<session>/<sequence>``; the sequence comes from the segmenter, which is
deterministic on a file, so a restarted edge that re-reads a file produces the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np

from voxrelay.edge.events import SegmentAudio, SegmentClosed, SegmentEvent, SegmentOpened, SegmentPaused
from voxrelay.edge.link import messages
from voxrelay.edge.link.channel import (
    Backoff,
    UplinkError,
    auth_metadata,
    channel_options,
    connect,
    describe_rpc_error,
    open_channel,
)
from voxrelay.edge.link.records import Dropped, SpooledSegment, SpoolSettings
from voxrelay.edge.link.settings import UplinkSettings
from voxrelay.edge.link.spool import Spool
from voxrelay.edge.link.streamcall import (
    FINISHED,
    OpenSegment,
    Outstanding,
    Retry,
    SessionState,
    StreamCall,
    UplinkStats,
)
from voxrelay.edge.results import SegmentResult
from voxrelay.errors import Unavailable
from voxrelay.protos import pb, pb_grpc

log = logging.getLogger(__name__)

__all__ = [
    "Uplink",
    "UplinkError",
    "UplinkSettings",
    "channel_options",
    "connect",
    "describe_rpc_error",
    "open_uplink",
    "to_result",
]

to_result = messages.to_result

# Seconds an edge with a spool waits for the server at start before it spools what it hears.
SPOOLED_FIRST_LOOK = 2.0


class Uplink:
    """Streams sessions of segments through a spool; yields each segment's result exactly once."""

    def __init__(self, settings: UplinkSettings, channel: grpc.aio.Channel, spool: Spool | None = None) -> None:
        self.settings = settings
        self.stub = pb_grpc.RecognizerStub(channel)
        self.metadata = auth_metadata(settings)
        self._owns_spool = spool is None
        self.spool = spool if spool is not None else Spool(SpoolSettings(None, settings.spool_max_bytes))
        self.model: pb.ModelInfo | None = None
        self.sent_segments = 0
        self.stats = UplinkStats()
        self._call = StreamCall(settings, self.stub, self.metadata, self.stats, self._accepted)

    def _accepted(self, model: pb.ModelInfo) -> None:
        self.model = model

    @property
    def sent_bytes(self) -> int:
        """Audio bytes written to the server, resends included."""
        return self.stats.sent_bytes

    def close(self) -> None:
        if self._owns_spool:
            self.spool.close()

    def segment_id(self, session_id: str, sequence: int) -> str:
        return f"{self.settings.device_id}/{session_id}/{sequence}"

    async def session(self, session_id: str, events: AsyncIterator[SegmentEvent]) -> AsyncIterator[SegmentResult]:
        """Send ``events`` as session ``session_id``; yield each segment's result once, as it arrives
        (and, when the settings ask for them, its interim results before it: ``final`` False).

        Segments of the session already in the spool (an interrupted run) are resent first; events of
        segments the spool has seen before (sequence below its ``next_sequence``) are skipped.
        """
        spool = self.spool
        spool.open_session(session_id)
        record = spool.session(session_id)
        state = SessionState(session_id, record.next_sequence if record else 0)
        state.delivered = spool.delivered_sequences(session_id)
        for segment in spool.pending(session_id):
            state.outstanding[segment.segment_id] = Outstanding(segment, None)
        for damaged in spool.take_damaged(session_id):
            # Its audio is unusable: read it from the source again where the session can (a file),
            # else it is reported when the events end.
            state.damaged[damaged.sequence] = damaged
            state.skip_below = min(state.skip_below, damaged.sequence)
        consumer = asyncio.create_task(self._consume(state, events), name=f"uplink-events {session_id}")
        runner = asyncio.create_task(self._run(state), name=f"uplink {session_id}")
        try:
            while True:
                item = await state.results.get()
                if item is FINISHED:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, SegmentResult)
                yield item
                if not item.final:  # interim text: not kept, not counted as delivered
                    continue
                # The sinks have it now: only then does it leave the spool.
                await asyncio.to_thread(spool.delivered, session_id, item)
            await asyncio.to_thread(spool.finish_session, session_id)
        finally:
            for task in (consumer, runner):
                task.cancel()
            await asyncio.gather(consumer, runner, return_exceptions=True)

    # Events → open segment → spool.

    async def _consume(self, state: SessionState, events: AsyncIterator[SegmentEvent]) -> None:
        try:
            async for event in events:
                if isinstance(event, SegmentOpened):
                    segment_id = self.segment_id(state.session_id, event.sequence)
                    seen = segment_id in state.outstanding or event.sequence in state.delivered
                    if event.sequence >= state.skip_below and not seen:
                        state.damaged.pop(event.sequence, None)
                        state.open = OpenSegment(segment_id, event.sequence, event.offset)
                elif state.open is None or state.open.sequence != event.sequence:
                    pass  # a segment skipped because the spool has seen it before
                elif isinstance(event, SegmentAudio):
                    state.open.audio += np.ascontiguousarray(event.samples, dtype="<i2").tobytes()
                elif isinstance(event, SegmentPaused):
                    state.open.paused_bytes = len(state.open.audio)
                elif isinstance(event, SegmentClosed):
                    await self._close(state, event)
                state.changed.set()
            for victim in state.damaged.values():  # not read again: the source cannot give it back
                state.results.put_nowait(
                    SegmentResult(
                        segment_id=victim.segment_id,
                        sequence=victim.sequence,
                        text="",
                        start=victim.offset,
                        end=victim.speech_end,
                        error=f"DAMAGED: {victim.reason}",
                    )
                )
            state.damaged.clear()
            state.events_done = True
            state.changed.set()
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # handed to the consumer of the results, which raises it
            state.results.put_nowait(err)

    async def _close(self, state: SessionState, event: SegmentClosed) -> None:
        opened = state.open
        assert opened is not None
        if not opened.audio:  # nothing to recognise
            state.open = None
            return
        segment = SpooledSegment(
            segment_id=opened.segment_id,
            session_id=state.session_id,
            sequence=opened.sequence,
            offset=opened.offset,
            end=event.end,
            speech_end=event.speech_end,
            vad=event.stats,
            audio=bytes(opened.audio),
            created=time.time(),  # wall clock: the spool's age bound must survive restarts
        )
        dropped = await asyncio.to_thread(self.spool.put, segment)
        now = time.perf_counter()
        closed = event.closed_clock if event.closed_clock is not None else now
        speech_end = event.speech_end_clock if event.speech_end_clock is not None else closed
        state.outstanding[segment.segment_id] = Outstanding(segment, now, closed, speech_end)
        state.open = None
        self.sent_segments += 1
        for victim in dropped:
            self._dropped(state, victim)

    def _dropped(self, state: SessionState, victim: Dropped) -> None:
        log.warning("segment %s dropped from the spool: %s", victim.segment_id, victim.reason)
        if state.outstanding.pop(victim.segment_id, None) is None:
            return
        state.results.put_nowait(
            SegmentResult(
                segment_id=victim.segment_id,
                sequence=victim.sequence,
                text="",
                start=victim.offset,
                end=victim.speech_end,
                error=f"DROPPED: {victim.reason}",
            )
        )

    # Connections: reconnect with backoff until every segment has its result.

    async def _run(self, state: SessionState) -> None:
        settings = self.settings
        backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        progress = [time.monotonic()]

        def made_progress() -> None:
            backoff.reset()
            progress[0] = time.monotonic()

        try:
            while True:
                try:
                    if await self._call.run(state, made_progress):
                        state.results.put_nowait(FINISHED)
                        return
                    retry = Retry("the stream ended before every segment had its result")
                except Retry as err:
                    retry = err
                self.stats.reconnects += 1
                self.stats.refusals[retry.code] += 1
                if retry.code == "DEADLINE_EXCEEDED" and self._idle(state):
                    # Closed by the server as idle: there is nothing to send, so reconnect when there is.
                    log.info("stream to %s closed as idle; reconnecting when there is speech to send", settings.server)
                    while self._idle(state):
                        state.changed.clear()
                        await state.changed.wait()
                    made_progress()
                    continue
                stalled = time.monotonic() - progress[0]
                if stalled > settings.max_outage_seconds:
                    kept = " (they stay in the spool for the next run)" if self.spool.persistent else ""
                    raise UplinkError(
                        f"gave up on the recognizer at {settings.server} after {stalled:.0f} s without progress: "
                        f"{retry.why}; {len(state.outstanding)} segment(s) have no result{kept}"
                    )
                delay = backoff.next(retry.pushback)
                log.warning(
                    "stream to %s: %s; reconnecting in %.1f s (%d segment(s) to resend)",
                    settings.server,
                    retry.why,
                    delay,
                    len(state.outstanding),
                )
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            state.results.put_nowait(err)

    @staticmethod
    def _idle(state: SessionState) -> bool:
        return not state.outstanding and state.open is None and not state.events_done


@contextlib.asynccontextmanager
async def open_uplink(settings: UplinkSettings) -> AsyncIterator[Uplink]:
    """Connect to the recognizer and yield an :class:`Uplink` over the spool of ``settings`` (its directory,
    or memory); the channel and the spool are closed on exit, also when the connection fails."""
    spool = Spool(settings.spool)
    try:
        try:
            # With a spool nothing waits for the server: a first look, then segments are spooled.
            first_look = None if settings.spool_dir is None else min(settings.connect_timeout, SPOOLED_FIRST_LOOK)
            channel = await connect(settings, first_look)
        except Unavailable as err:
            if settings.spool_dir is None:
                raise
            # With a spool, a recognizer that is not up yet is an outage like any other: segments are
            # spooled and sent when it comes up, within --retry-for.
            log.warning(
                "%s; spooling segments in %s and retrying for up to %.0f s",
                err.message,
                settings.spool_dir,
                settings.max_outage_seconds,
            )
            channel = open_channel(settings)
        try:
            yield Uplink(settings, channel, spool)
        finally:
            await channel.close()
    finally:
        spool.close()
