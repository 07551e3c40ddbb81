"""Interim results: the open segment of a stream recognised again while its audio grows.

A session that asks for them (``SessionConfig.interim_results``) gets, after every ``interval``
seconds of new audio of its open segment, one interim recognition of all that segment's audio so
far. At most one runs per stream at a time and none is asked for while final work waits for a
worker, so a busy server skips updates rather than queueing them; after one that took t seconds in
the model the next waits at least ``REST_FACTOR`` × t, so that a slow machine spends at most a
third of its time per stream on them. They run at :attr:`~voxrelay.cloud.scheduler.Priority.INTERIM`
with the cheapest options
(:meth:`~voxrelay.cloud.backends.base.DecodeOptions.for_interim`; faster-whisper decodes them in a
short window, see :mod:`voxrelay.cloud.backends.quick`): they never hold back a final result in the
queue, are shed first when final work waits, and are dropped unrun two intervals after they were
asked for (older text is worthless by then). Their results are never cached, monitored or reviewed.

An interim's text goes out only while its segment is still open and only when it differs from the
last one sent; once the segment's end has been received nothing of it is sent, so no interim ever
follows its segment's final result. Every outcome is counted (``voxrelay_asr_interim_total``) and
the model time they take too (``voxrelay_asr_interim_inference_seconds_total``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from voxrelay.cloud.engine import Dropped, Recognition
from voxrelay.cloud.metrics import CloudMetrics
from voxrelay.cloud.rollout.config import Automation
from voxrelay.cloud.scheduler import Priority
from voxrelay.cloud.wire import model_info
from voxrelay.errors import InvalidArgument, VoxrelayError
from voxrelay.protos import pb

if TYPE_CHECKING:
    from voxrelay.cloud.segments import OpenSegment, SessionState

DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.5
MAX_INTERVAL = 10.0
# An interim not started within this many intervals of being asked for is dropped unrun.
DEADLINE_INTERVALS = 2.0
# After an interim that took t seconds in the model, the next waits at least this many times t: one
# stream's interims keep the model busy at most a third of the time, however slow the machine.
REST_FACTOR = 2.0


def interim_interval(field: str, config: pb.SessionConfig) -> float | None:
    """Seconds of new audio between interim recognitions that ``config`` asks for; None: no interims."""
    seconds = config.interim_interval_seconds
    if not config.interim_results:
        if seconds:
            raise InvalidArgument(
                f"{field}.interim_interval_seconds: {seconds:g} is set but interim_results is not; "
                "set interim_results to get interim results (or leave the interval 0)"
            )
        return None
    if seconds == 0:
        return DEFAULT_INTERVAL
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:  # NaN fails too
        raise InvalidArgument(
            f"{field}.interim_interval_seconds: {seconds:g} is out of range "
            f"({MIN_INTERVAL:g}..{MAX_INTERVAL:g} s; 0 = {DEFAULT_INTERVAL:g} s)"
        )
    return float(seconds)


def interim_result(
    segment: OpenSegment, state: SessionState, recognition: Recognition, audio_seconds: float
) -> pb.RecognitionResult:
    """The message of one interim: its text over the segment's audio so far, marked interim."""
    engine = segment.engine or state.engine
    transcript = recognition.transcript
    return pb.RecognitionResult(
        segment_id=segment.segment_id,
        text=transcript.text,
        start_seconds=segment.offset,
        end_seconds=segment.offset + audio_seconds,
        language=transcript.language,
        language_probability=transcript.language_probability,
        model=model_info(engine.model),
        slot=engine.role,
        deployment=engine.name,
        timings=pb.Timings(
            queue_wait_seconds=recognition.queue_wait,
            inference_seconds=recognition.inference,
            audio_seconds=audio_seconds,
            batch_size=recognition.batch_size,
        ),
        interim=True,
    )


class InterimRecognizer:
    """The interim recognitions of one stream: at most one in flight, only for the segment open now.

    ``send`` puts a response on the stream (in order with its acks and results); ``client`` is who
    the scheduler counts the work for.
    """

    def __init__(
        self,
        interval: float,
        send: Callable[[pb.StreamResponse], None],
        metrics: CloudMetrics,
        client: Callable[[], str],
    ) -> None:
        self.interval = interval
        self._send = send
        self._metrics = metrics
        self._client = client
        self._segment: OpenSegment | None = None
        # The segment's audio bytes, and the time, when the last interim was asked for (or it opened).
        self._asked_at_bytes = 0
        self._asked_at = 0.0
        self._rested_at = 0.0  # monotonic time before which no interim starts (see REST_FACTOR)
        self._last_text = ""
        self._task: asyncio.Task[None] | None = None

    def opened(self, segment: OpenSegment) -> None:
        self.ended()
        self._segment = segment
        self._asked_at_bytes, self._asked_at = 0, segment.opened_at
        self._last_text = ""

    def grew(self, state: SessionState, segment: OpenSegment) -> None:
        """The open segment got more audio: ask for an interim once ``interval`` more seconds came."""
        if segment is not self._segment or self._task is not None:
            return
        # An interval of new audio, and of time: audio sent faster than it is spoken (a segment resent
        # after a reconnect, a file read unpaced) gets at most one interim per interval.
        now = time.monotonic()
        if state.fmt.seconds(segment.n_bytes - self._asked_at_bytes) < self.interval:
            return
        if now - self._asked_at < self.interval or now < self._rested_at:
            return
        engine = segment.engine or state.engine
        if engine.automation is Automation.HUMAN:  # no model runs for this deployment
            return
        self._asked_at_bytes, self._asked_at = segment.n_bytes, now
        if engine.engine.scheduler.queued_final:  # final work waits for a worker: none is asked for
            self._metrics.interim_done(engine.model, "dropped")
            return
        audio_seconds = state.fmt.seconds(segment.n_bytes)
        try:
            audio = state.fmt.decode("audio", b"".join(segment.chunks))
        except VoxrelayError:
            return  # the segment's end reports it
        self._task = asyncio.get_running_loop().create_task(self._recognize(state, segment, audio, audio_seconds))

    def offer(self, state: SessionState, segment: OpenSegment, recognition: Recognition, audio_seconds: float) -> None:
        """A speculation of ``segment`` (its first ``audio_seconds``) was decoded, and then speech resumed:
        its text is the segment's text so far, read with the final options, and costs nothing more. It
        goes out as an interim (``timings.speculative`` set) if the segment is still open and the text
        is new; it is not counted as interim model time (the speculation's counters have it)."""
        text = recognition.transcript.text.strip()
        if segment is not self._segment or not text or text == self._last_text:
            return
        self._last_text = text
        result = interim_result(segment, state, recognition, audio_seconds)
        result.timings.speculative = True
        self._send(pb.StreamResponse(interim=result))
        self._metrics.interim_done((segment.engine or state.engine).model, "sent")

    def ended(self) -> None:
        """The open segment ended (or the stream did): none of its interims may go out any more."""
        self._segment = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    close = ended

    async def _recognize(
        self, state: SessionState, segment: OpenSegment, audio: np.ndarray, audio_seconds: float
    ) -> None:
        engine = segment.engine or state.engine
        model = engine.model
        outcome, inference = "failed", 0.0
        try:
            deadline = time.perf_counter() + DEADLINE_INTERVALS * self.interval
            recognition = await engine.recognize(
                audio,
                state.options,
                self._client(),
                priority=Priority.INTERIM,
                deadline=deadline,
            )
            inference = recognition.model_seconds
            self._rested_at = time.monotonic() + REST_FACTOR * recognition.inference
            text = recognition.transcript.text.strip()
            if segment is not self._segment:
                outcome = "stale"
            elif not text or text == self._last_text:
                outcome = "unchanged"
            else:
                outcome = "sent"
                self._last_text = text
                self._send(pb.StreamResponse(interim=interim_result(segment, state, recognition, audio_seconds)))
        except Dropped:
            outcome = "dropped"
        except VoxrelayError:
            outcome = "failed"
        except asyncio.CancelledError:
            outcome = "stale"
            raise
        finally:
            self._metrics.interim_done(model, outcome, inference)
            if self._segment is segment and self._task is asyncio.current_task():
                self._task = None
