"""Speculative recognition: a stream's open segment recognised during a pause, before its end.

An edge whose segmenter sees speech pause says so (``SegmentPause``): if the segment ended now it
would hold exactly the audio sent so far. The server may then start on that audio at once. If the
next message is the segment's end, the speculation is the final result, and it is ready sooner (the
endpoint pause that the edge still waits out overlaps the inference); if more audio comes instead,
the speculation is moot.

It must never cost a final result anything, and its waste is bounded:

- It runs at :attr:`~voxrelay.cloud.scheduler.Priority.SPECULATIVE`, after every final result in the
  queue, with the segment's own options and prompt (so its text is the final's, word for word).
- A worker takes it only while another stays idle for final work (on a server with several workers;
  see the scheduler's ``interim_reserve``). None starts while final work waits for a worker, for a
  deployment that runs no model, or for a segment whose audio came much faster than it is spoken (a
  file sent unpaced: the pause is over before the model could start).
- At most one per stream: audio after the pause withdraws one that no worker has started (nothing
  spent) and leaves a started one to finish as waste. At the end, one still queued is withdrawn and
  the final goes in as usual; one started or done is awaited and used.
- A stream's waste is capped: a speculation starts only while the model time its wasted ones took is
  at most ``WASTE_SHARE`` of the model time of its final results, its costliest wasted one aside (so a
  session's first pauses are tried before any final result has come, and after more waste the next
  waits until the finals have made up for it). A talker whose pauses mostly end in
  more speech (fast speech, a list read out) soon gets speculations only now and then; one whose
  pauses end segments gets them at every pause.

Every outcome is counted (``voxrelay_asr_speculative_total``), and the model time of the used and
the wasted ones (``voxrelay_asr_speculative_inference_seconds_total``): wasted over final inference
time is the extra work speculation costs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from voxrelay.cloud.backends.base import DecodeOptions, ModelDescriptor
from voxrelay.cloud.engine import Recognition, Ticket
from voxrelay.cloud.metrics import CloudMetrics
from voxrelay.cloud.rollout.config import Automation
from voxrelay.cloud.scheduler import Priority
from voxrelay.errors import VoxrelayError

if TYPE_CHECKING:
    from voxrelay.cloud.segments import OpenSegment, SessionState

# A segment whose audio came more than this many times faster than wall time since it opened (plus
# the pre-roll and a network burst, LEAD_SECONDS) is not being spoken now: no speculation.
PACE_FACTOR = 1.5
LEAD_SECONDS = 2.0
# A stream speculates only while its wasted speculative model time is at most this share of its final
# results' model time.
WASTE_SHARE = 0.25

Decoded = tuple[DecodeOptions, Recognition]
Decode = Callable[[np.ndarray, Priority, Ticket], Coroutine[object, object, Decoded]]


@dataclass(eq=False)
class Speculation:
    """One speculative recognition: of ``segment`` holding ``n_bytes``, decoded from ``audio`` by ``model``."""

    segment: OpenSegment
    n_bytes: int
    audio: np.ndarray
    task: asyncio.Task[Decoded]
    ticket: Ticket
    model: ModelDescriptor


def _inference(task: asyncio.Task[Decoded]) -> float:
    """Model seconds a finished speculation took (its share of its batch); 0 if it did not run."""
    if task.cancelled() or task.exception() is not None:
        return 0.0
    recognition = task.result()[1]
    return recognition.model_seconds


Moot = Callable[[Speculation, Recognition], None]


class Speculator:
    """The speculative recognitions of one stream (one at a time, of the segment open now).

    ``moot`` is told of each speculation that was decoded but not used (speech resumed), with its
    recognition: the text of the segment so far, which a stream that asked for interim results gets.
    """

    def __init__(self, metrics: CloudMetrics, moot: Moot | None = None) -> None:
        self._metrics = metrics
        self._moot = moot
        self._current: Speculation | None = None
        # Model seconds of this stream's final results, and of its wasted speculations.
        self._final_seconds = 0.0
        self._wasted_seconds = 0.0
        self._costliest_waste = 0.0

    def finished(self, recognition: Recognition) -> None:
        """A final result of this stream came out of the model (speculatively or not)."""
        self._final_seconds += recognition.model_seconds

    def paused(self, state: SessionState, segment: OpenSegment, decode: Decode) -> None:
        """The edge reports a pause in ``segment``: start on its audio so far, unless that is no use."""
        current = self._current
        if current is not None and current.segment is segment and current.n_bytes == segment.n_bytes:
            return  # the same pause again: already on it
        self.drop()
        engine = segment.engine or state.engine
        if not segment.n_bytes or engine.automation is Automation.HUMAN:
            return
        model = engine.model
        audio_seconds = state.fmt.seconds(segment.n_bytes)
        spoken = time.monotonic() - segment.opened_at
        over_budget = self._wasted_seconds - self._costliest_waste > WASTE_SHARE * self._final_seconds
        if over_budget or engine.engine.scheduler.queued_final or audio_seconds > PACE_FACTOR * spoken + LEAD_SECONDS:
            self._metrics.speculation_done(model, "skipped")
            return
        try:
            audio = state.fmt.decode("audio", b"".join(segment.chunks))
        except VoxrelayError:
            return  # the segment's end reports it
        ticket = Ticket()
        task = asyncio.get_running_loop().create_task(decode(audio, Priority.SPECULATIVE, ticket))
        self._current = Speculation(segment, segment.n_bytes, audio, task, ticket, model)

    def grew(self, segment: OpenSegment) -> None:
        """More audio of ``segment`` came: a speculation of it is moot."""
        if self._current is not None and self._current.segment is segment:
            self.drop()

    def take(self, segment: OpenSegment) -> Speculation | None:
        """At ``segment``'s end: the speculation to use as its result (None: recognise it as usual)."""
        current, self._current = self._current, None
        if current is None:
            return None
        if current.segment is not segment or current.n_bytes != segment.n_bytes:
            self.discard(current)
            return None
        if not current.ticket.started and not current.task.done():
            # Still queued: the final goes in at its own priority instead.
            self.discard(current)
            return None
        return current

    def used(self, speculation: Speculation) -> None:
        """``speculation`` (taken, and awaited without error) became the final result."""
        self._metrics.speculation_done(speculation.model, "used", _inference(speculation.task))

    def failed(self, speculation: Speculation) -> None:
        """``speculation`` (taken) failed: the segment is recognised as usual."""
        self._metrics.speculation_done(speculation.model, "failed")

    def drop(self) -> None:
        """Forget the current speculation (its segment grew, ended or went away)."""
        current, self._current = self._current, None
        if current is not None:
            self.discard(current)

    close = drop

    def discard(self, speculation: Speculation) -> None:
        """``speculation`` will not be used: withdraw it if unstarted, else count it as waste."""
        task, model = speculation.task, speculation.model
        if not speculation.ticket.started and not task.done():
            task.cancel()  # a job no worker has taken is withdrawn: nothing was spent
            self._metrics.speculation_done(model, "withdrawn")
            return

        def wasted(done: asyncio.Task[Decoded]) -> None:
            failed = done.cancelled() or done.exception() is not None
            seconds = _inference(done)
            self._wasted_seconds += seconds
            self._costliest_waste = max(self._costliest_waste, seconds)
            self._metrics.speculation_done(model, "failed" if failed else "wasted", seconds)
            if not failed and self._moot is not None:
                self._moot(speculation, done.result()[1])

        if task.done():
            wasted(task)
        else:
            task.add_done_callback(wasted)
