"""The shadow: segments the stable has answered, recognised again by the candidate, only to compare.

The client's result has already gone out when a segment is offered here, so nothing the shadow does
can change or delay it. Work waits in a bounded backlog and is run one segment at a time, and a shadow
decode starts only while the stable is idle: no segment waiting for its workers, inside its model, or
still being received on a stream (it is recognised the moment it ends). The two models then share the
CPU only when a segment both starts and ends during one shadow decode; under steady traffic the shadow
compares fewer segments (the others are counted as dropped) rather than slow the stable. In the
candidate's own scheduler it is ``Priority.SHADOW`` (after any final work), and its model's threads run
at background CPU priority (see :mod:`voxrelay.cloud.rollout.engines`). Under load it is the first work
dropped: an offer is refused while the server's queued audio is past half its bound, the oldest waiting
segment goes when the backlog is full, and a segment that waited too long is dropped rather than run
late. Each outcome is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voxrelay.cloud.backends.base import DecodeOptions
from voxrelay.cloud.rollout.analysis import Comparison, Sample
from voxrelay.cloud.rollout.deployment import Assignment
from voxrelay.cloud.rollout.engines import thread_cpu_seconds
from voxrelay.cloud.scheduler import Priority
from voxrelay.errors import VoxrelayError

log = logging.getLogger(__name__)

CLIENT = "shadow"


def own_time(wall: float, before: dict[int, float], after: dict[int, float]) -> float:
    """A shadow decode's latency sample: the time it would have taken with the cores to itself.

    A shadow waits on purpose (it starts only while the stable is idle and yields the CPU to it), so its
    wall time measures the stable's traffic, not the candidate. The longest CPU time any of its model's
    threads spent on the decode is the decode's own critical path; never more than the wall time. Without
    the threads' figures (not Linux, threads not found), the wall time.
    """
    spent = [after[t] - before[t] for t in after if t in before]
    if not spent or max(spent) <= 0:
        return wall
    return min(wall, max(spent))


@dataclass(frozen=True)
class ShadowJob:
    candidate: Assignment
    audio: np.ndarray
    options: DecodeOptions
    stable_text: str
    language: str
    offered: float  # monotonic

    @property
    def seconds(self) -> float:
        return self.audio.size / 16000


@dataclass(frozen=True)
class ShadowLimits:
    max_backlog_seconds: float = 120.0
    max_wait_seconds: float = 30.0


class ShadowRunner:
    """Owns the task that runs shadow work; ``close`` stops it and drops what waits."""

    def __init__(
        self,
        stable_busy: Callable[[], bool],
        server_loaded: Callable[[], bool],
        record: Callable[[str, str], None],
        estimate: Callable[[float, float, float], float] | None = None,
        limits: ShadowLimits | None = None,
    ) -> None:
        self.stable_busy = stable_busy
        self.server_loaded = server_loaded
        self.record = record  # (deployment, outcome) → counted
        self.estimate = estimate
        self.estimate_model = ""  # the model the estimate was fitted for ("" = any)
        self.limits = limits or ShadowLimits()
        self._backlog: deque[ShadowJob] = deque()
        self._backlog_seconds = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.running: ShadowJob | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="voxrelay-shadow")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.clear()

    def clear(self) -> None:
        """Drop the backlog (the shadow ended)."""
        self._backlog.clear()
        self._backlog_seconds = 0.0

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def offer(self, job: ShadowJob) -> bool:
        """Queue ``job`` unless the server is loaded; the oldest waiting job makes room if needed."""
        name = job.candidate.name
        if self.server_loaded():
            self.record(name, "dropped_load")
            return False
        while self._backlog and self._backlog_seconds + job.seconds > self.limits.max_backlog_seconds:
            old = self._backlog.popleft()
            self._backlog_seconds -= old.seconds
            self.record(old.candidate.name, "dropped_backlog")
        self._backlog.append(job)
        self._backlog_seconds += job.seconds
        self._wake.set()
        return True

    async def _run(self) -> None:
        while True:
            if not self._backlog:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.stable_busy():
                await asyncio.sleep(0.02)  # the stable has segments waiting: they go first
                self._drop_stale()
                continue
            job = self._backlog.popleft()
            self._backlog_seconds -= job.seconds
            if time.monotonic() - job.offered > self.limits.max_wait_seconds:
                self.record(job.candidate.name, "dropped_stale")
                continue
            self.running = job
            try:
                await self._compare(job)
            finally:
                self.running = None

    def _drop_stale(self) -> None:
        now = time.monotonic()
        while self._backlog and now - self._backlog[0].offered > self.limits.max_wait_seconds:
            old = self._backlog.popleft()
            self._backlog_seconds -= old.seconds
            self.record(old.candidate.name, "dropped_stale")

    async def _compare(self, job: ShadowJob) -> None:
        from voxrelay.quality.wer import word_errors

        candidate = job.candidate.deployment
        threads = candidate.holder.threads
        before = thread_cpu_seconds(threads)
        try:
            recognition = await job.candidate.recognize(job.audio, job.options, CLIENT, Priority.SHADOW)
        except VoxrelayError as err:
            log.info("shadow %s failed on a segment: %s", candidate.name, err.message)
            candidate.window.add(Sample(at=time.monotonic(), ok=False))
            candidate.counters.errors += 1
            self.record(candidate.name, "failed")
            return
        t = recognition.transcript
        now = time.monotonic()
        text = t.text.strip()
        estimated = (
            self.estimate(t.avg_logprob, t.no_speech_prob, t.compression_ratio)
            if self.estimate and text and self.estimate_model in ("", candidate.spec.model)
            else None
        )
        candidate.window.add(
            Sample(
                at=now,
                ok=True,
                latency=own_time(recognition.inference, before, thread_cpu_seconds(threads)),
                inference=recognition.inference,
                empty=not text,
                avg_logprob=t.avg_logprob,
                estimated_wer=estimated,
                words=len(text.split()),
            )
        )
        counted = word_errors(job.stable_text, t.text, job.language or "en")
        candidate.window.compare(Comparison(at=now, errors=counted.errors, words=counted.reference_words))
        candidate.counters.shadow_compared += 1
        self.record(candidate.name, "compared")
