"""Ctrl-C (SIGINT) and SIGTERM during ``voxrelay transcribe``: stop without losing what was delivered.

Paced (``--pace``), the first signal stops reading, as ``listen`` stops its microphone: the segment
in flight is closed and its result awaited. Unpaced, the whole file may be queued at the recognizer
already, so the first signal stops at once. A second signal always stops at once. Either way the
results already delivered stay in the output, which the caller writes and names as partial.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from voxrelay.edge.events import AudioBlock
from voxrelay.signals import stop_signals

T = TypeVar("T")


class Interruption:
    """The signal handlers of one run (installed by :meth:`installed`) and what they asked for."""

    def __init__(self, finish_in_flight: bool) -> None:
        self.finish_in_flight = finish_in_flight
        self._requested = threading.Event()  # read by the segmenter's thread through :meth:`blocks`
        self._task: asyncio.Task[Any] | None = None
        self._main: asyncio.Task[Any] | None = None
        self._cut = False  # the current file's blocks stopped before its end

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM meanwhile (in the main thread; elsewhere signals are left as they are).

        Enter it in the task that runs the work: a signal while no :meth:`run` is in progress cancels
        that task, which then sees :attr:`requested`.
        """
        self._main = asyncio.current_task()
        try:
            with stop_signals(self._on_signal):
                yield
        finally:
            self._main = None

    def _on_signal(self) -> None:
        at_once = self._requested.is_set() or not self.finish_in_flight
        self._requested.set()
        # No file in work (connecting, closing): stopping at once cancels the whole run.
        target = self._task if self._task is not None else self._main
        if at_once and target is not None:
            target.cancel()

    def blocks(self, blocks: Iterable[AudioBlock]) -> Iterator[AudioBlock]:
        """``blocks`` until an interruption: the segmenter then closes the segment in flight."""
        for block in blocks:
            if self._requested.is_set():
                self._cut = True
                return
            yield block

    async def run(self, work: Coroutine[Any, Any, T]) -> tuple[T | None, bool]:
        """Run ``work`` as a task that an interruption may cancel: (its result, whether it was interrupted).

        ``work`` ends normally when the first signal only stopped reading (interrupted if that cut the
        file short); it is cancelled (result None) when a signal stops at once. A cancellation of the
        caller itself propagates.
        """
        self._cut = False
        task = asyncio.ensure_future(work)
        self._task = task
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            self._task = None
        if task.cancelled():
            return None, True
        return task.result(), self._cut
