"""Watching one edge session: the hooks that metrics and evaluation subscribe to.

:func:`voxrelay.edge.agent.run_session` calls a :class:`SessionObserver` as audio flows through the
pipeline. ``block``, ``segmented`` and ``produced`` run on the segmenter thread; ``sent`` and ``result``
on the event loop. Observers must be quick and must not raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from voxrelay.edge.events import AudioBlock, SegmentEvent
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.vad.speech import SegmenterStats


class SessionObserver(Protocol):
    def block(self, block: AudioBlock) -> None:
        """A block of source audio, before the VAD sees it."""

    def segmented(self, stats: SegmenterStats, seconds: float) -> None:
        """The VAD and segmenter took ``seconds`` over the last block; ``stats`` are the session's totals."""

    def produced(self, event: SegmentEvent) -> None:
        """The segmenter made ``event`` (it now waits in the queue to the uplink)."""

    def sent(self, event: SegmentEvent) -> None:
        """The uplink took ``event`` from the queue to send it."""

    def result(self, result: SegmentResult) -> None:
        """A segment's final result (or error) reached the edge."""


class Observers:
    """Several observers as one, called in order."""

    def __init__(self, observers: Sequence[SessionObserver]) -> None:
        self.observers = tuple(observers)

    def block(self, block: AudioBlock) -> None:
        for o in self.observers:
            o.block(block)

    def segmented(self, stats: SegmenterStats, seconds: float) -> None:
        for o in self.observers:
            o.segmented(stats, seconds)

    def produced(self, event: SegmentEvent) -> None:
        for o in self.observers:
            o.produced(event)

    def sent(self, event: SegmentEvent) -> None:
        for o in self.observers:
            o.sent(event)

    def result(self, result: SegmentResult) -> None:
        for o in self.observers:
            o.result(result)


def combined(*observers: SessionObserver | None) -> SessionObserver | None:
    """The observers given (None ones left out) as one, or None when there is none."""
    present = [o for o in observers if o is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else Observers(present)
