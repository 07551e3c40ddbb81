"""Runs a backend off the event loop, fairly between clients, in batches, and remembers recent results.

One ``InferenceEngine`` owns one loaded model and serves every stream: ``workers`` threads take jobs
from a :class:`~voxrelay.cloud.scheduler.FairScheduler` (per-client queues served in turn), so one
client's flood cannot starve another. **Dynamic batching**: a worker takes up to ``max_batch`` jobs of
the same priority and batch key at once (the fair next ones) and decodes them in one backend call
(``transcribe_batch``); when fewer are queued and more segments are on their way (``more_coming``),
it waits up to ``max_wait`` seconds for them. Nothing waits when nothing else is coming, so a lone
stream is served as fast as without batching. Every job's cost is estimated beforehand and its share
of the measured batch time teaches the engine's :class:`~voxrelay.cloud.cost.CostModel`.

Interim work (``Priority.INTERIM``) has a deadline after which it is worthless and dropped unrun,
and is shed whenever final work has to wait (see the scheduler); its callers get :class:`Dropped`.

``ResultCache`` maps a segment's idempotency key to its result so that a resent segment is answered
without being recognised twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from voxrelay.cloud.backends.base import Backend, DecodeOptions, ModelDescriptor, Transcript
from voxrelay.cloud.cost import HEAVY_PROMPT_TOKENS, CostModel
from voxrelay.cloud.scheduler import FairScheduler, Job, Priority
from voxrelay.errors import BackendError, Unavailable, VoxrelayError

SAMPLE_RATE = 16000


class Dropped(Unavailable):
    """Interim work dropped unrun: the server was busy with final work, or its deadline passed."""


@dataclass(frozen=True)
class Recognition:
    """A transcript with the server-side timings of producing it (seconds).

    ``inference`` is the time inside the model of the call that decoded it, with ``batch_size``
    segments; ``cost`` is this segment's share of it (by estimated cost).
    """

    transcript: Transcript
    queue_wait: float
    inference: float
    batch_size: int = 1
    cost: float = 0.0

    @property
    def model_seconds(self) -> float:
        """This segment's model time: its share of the batch, or the whole call when not known."""
        return self.cost or self.inference


@dataclass(frozen=True)
class _Work:
    """What a worker runs for a job, and where its outcome goes."""

    audio: np.ndarray
    options: DecodeOptions
    prompt_tokens: int
    submitted: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Recognition]
    deadline: float | None = None  # perf_counter() after which the result is worthless

    @property
    def audio_seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE


BatchObserver = Callable[[int, float, Priority], None]


@dataclass
class Ticket:
    """What :meth:`InferenceEngine.recognize` submitted, for a caller that may withdraw it unrun."""

    job: Job | None = None

    @property
    def started(self) -> bool:
        """Whether a worker has taken the job (its cost is spent, or being spent, whatever follows)."""
        return self.job is not None and self.job.taken_at > 0


def _settle(future: asyncio.Future[Recognition], outcome: Recognition | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class InferenceEngine:
    """Shares one backend between clients through a fair scheduler and ``workers`` threads."""

    def __init__(
        self,
        backend: Backend,
        workers: int = 1,
        cost: CostModel | None = None,
        max_batch: int = 1,
        max_wait: float = 0.0,
        cpu_threads: int = 0,
    ) -> None:
        if workers < 1 or max_batch < 1 or not 0 <= max_wait <= 1:
            raise ValueError("workers and max_batch must be at least 1, max_wait in [0, 1] s")
        self.backend = backend
        self.workers = workers
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.cpu_threads = cpu_threads  # what the backend was loaded with (0: its default), for GetInfo
        self._busy = 0  # workers running a batch
        self._busy_lock = threading.Lock()
        self.cost = cost or CostModel()
        # With several workers, interim work leaves one idle for a final segment that may arrive.
        self.scheduler = FairScheduler(interim_reserve=1 if workers > 1 else 0, workers=workers)
        # Whether more final work is on its way (segments open on streams, calls being read): only
        # then does a worker wait for a batch to fill. The service sets it.
        self.more_coming: Callable[[], bool] = lambda: False
        # Told of each batch run (its size, how long its first job waited for it to fill, priority).
        self.on_batch: BatchObserver | None = None
        # Called when a worker finishes a batch and no other work is queued or running (the server
        # gives memory back then: see memory.IdleTrimmer).
        self.on_idle: Callable[[], None] | None = None
        self._token_counts: OrderedDict[str, int] = OrderedDict()
        self._token_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"voxrelay-inference-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def model(self) -> ModelDescriptor:
        return self.backend.model

    @property
    def queued(self) -> int:
        """Segments waiting for a worker."""
        return self.scheduler.queued

    @property
    def running(self) -> int:
        """Segments inside the model now."""
        return self.scheduler.running

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer (remembered for the prompts seen recently)."""
        if not text:
            return 0
        with self._token_lock:
            known = self._token_counts.get(text)
        if known is not None:
            return known
        counter: Callable[[str], int] | None = getattr(self.backend, "count_tokens", None)
        # A backend without a tokenizer: about one token per 3 bytes of UTF-8, Whisper's rate on English.
        count = counter(text) if counter is not None else len(text.encode("utf-8")) // 3 + 1
        with self._token_lock:
            self._token_counts[text] = count
            while len(self._token_counts) > 256:
                self._token_counts.popitem(last=False)
        return count

    def prompt_tokens(self, options: DecodeOptions) -> int:
        return self.count_tokens(options.initial_prompt or "") + self.count_tokens(options.hotwords or "")

    def estimate(self, audio_seconds: float, options: DecodeOptions) -> float:
        """Estimated inference seconds of a segment of this length with these options."""
        return self.cost.estimate(audio_seconds, self.prompt_tokens(options))

    async def recognize(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        client: str = "",
        priority: Priority = Priority.FINAL,
        deadline: float | None = None,
        ticket: Ticket | None = None,
    ) -> Recognition:
        """Recognise ``audio`` (float32 mono 16 kHz) when the scheduler gives ``client`` its turn.

        ``deadline`` (perf_counter time, interim work): drop the job unrun after it (:class:`Dropped`).
        ``ticket``: told the job, so that the caller can see whether a worker has started it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Recognition] = loop.create_future()
        tokens = self.prompt_tokens(options)
        work = _Work(audio, options, tokens, time.perf_counter(), loop, future, deadline)
        # One key for the whole model: every segment's encoder pass batches, whatever its options; the
        # backend groups the decoder calls by their settings.
        cost = self.cost.estimate(audio.size / SAMPLE_RATE, tokens)
        job = Job(client, cost, work, priority, batch_key=None, heavy=tokens > HEAVY_PROMPT_TOKENS)
        if ticket is not None:
            ticket.job = job
        try:
            self.scheduler.submit(job)
        except RuntimeError:
            raise Unavailable("the recognizer is shutting down; retry on another replica") from None
        if priority != Priority.INTERIM and self._busy >= self.workers:  # final work must wait: shed interim
            for dropped in self.scheduler.shed_interim():
                self._drop(dropped, "the server is busy with final results")
        try:
            return await future
        finally:
            if not future.done():  # the caller went away: a job no worker has started is dropped
                self.scheduler.withdraw(job)

    def _more_coming(self, first: Job) -> bool:
        return first.priority != Priority.INTERIM and self.more_coming()

    def _work(self) -> None:
        while True:
            jobs = self.scheduler.take(self.max_batch, linger=self.max_wait, more_coming=self._more_coming)
            if not jobs:
                return
            with self._busy_lock:
                self._busy += 1
            try:
                self._run(jobs)
            finally:
                with self._busy_lock:
                    self._busy -= 1
                if self.on_idle is not None and self.idle:
                    self.on_idle()

    @property
    def idle(self) -> bool:
        """No segment queued or inside the model."""
        return self._busy == 0 and self.scheduler.queued == 0 and self.scheduler.running == 0

    def _drop(self, job: Job, why: str) -> None:
        work: _Work = job.payload
        with contextlib.suppress(RuntimeError):
            work.loop.call_soon_threadsafe(_settle, work.future, Dropped(f"interim result dropped: {why}"))

    def _run(self, jobs: list[Job]) -> None:
        """Decode ``jobs`` (taken together) and settle each one's future."""
        now = time.perf_counter()
        live: list[Job] = []
        for job in jobs:
            work: _Work = job.payload
            if work.future.cancelled():
                self.scheduler.done(job)
            elif work.deadline is not None and now > work.deadline:
                self.scheduler.done(job)
                self._drop(job, "its deadline passed before a worker was free")
            else:
                live.append(job)
        if not live:
            return
        if self.on_batch is not None:
            self.on_batch(len(live), live[0].taken_at - live[0].payload.submitted, live[0].priority)
        backend = self.backend
        batch = getattr(backend, "transcribe_batch", None)
        try:
            if batch is not None and self.max_batch > 1:
                self._decode_together(live, batch)
            else:
                for job in live:
                    self._decode_together([job], None)
        finally:
            for job in live:
                self.scheduler.done(job)

    def _decode_together(self, jobs: list[Job], batch: Callable[..., list[Transcript | VoxrelayError]] | None) -> None:
        works: list[_Work] = [job.payload for job in jobs]
        begin = time.perf_counter()
        outcomes: list[Transcript | VoxrelayError]
        try:
            if batch is None:
                outcomes = [self.backend.transcribe(works[0].audio, works[0].options)]
            else:
                outcomes = batch([(w.audio, w.options) for w in works])
        except VoxrelayError as err:
            outcomes = [err] * len(works)
        except Exception as err:  # a backend bug must not take the server down
            failure = BackendError(f"{self.backend.model.backend} failed: {type(err).__name__}: {err}")
            outcomes = [failure] * len(works)
        inference = time.perf_counter() - begin
        estimates = [job.cost for job in jobs]
        total = sum(estimates) or 1.0
        for job, work, outcome in zip(jobs, works, outcomes, strict=True):
            share = job.charged = inference * job.cost / total  # what its client is charged
            result: Recognition | BaseException
            if isinstance(outcome, BaseException):
                result = outcome
            else:
                if job.priority != Priority.INTERIM:  # interim decodes are quicker: not what finals cost
                    self.cost.observe(work.audio_seconds, work.prompt_tokens, share)
                result = Recognition(outcome, begin - work.submitted, inference, len(works), share)
            with contextlib.suppress(RuntimeError):  # the caller's event loop has closed: nobody is waiting
                work.loop.call_soon_threadsafe(_settle, work.future, result)

    def close(self) -> None:
        """Refuse queued work, wait for running inferences, then release the model."""
        for job in self.scheduler.close():
            work: _Work = job.payload
            error = Unavailable("the recognizer stopped before this segment's turn; resend it")
            with contextlib.suppress(RuntimeError):
                work.loop.call_soon_threadsafe(_settle, work.future, error)
        for thread in self._threads:
            thread.join()
        self.backend.close()


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ResultCache(Generic[K, V]):
    """A bounded map from idempotency key to a future result (the oldest finished entries go first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[K, asyncio.Future[V]] = OrderedDict()
        # What each entry was computed from (a digest of the audio), where the caller gave one.
        self._tags: dict[K, bytes] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, key: K, tag: bytes | None = None) -> tuple[asyncio.Future[V], bool]:
        """Return the entry for ``key`` and whether the caller is the one who must fill it.

        With ``tag`` (what the result is computed from), an entry made from something else is never
        handed out: :class:`KeyError` is raised instead (the caller refuses the request).
        """
        entry = self._entries.get(key)
        if entry is not None:
            if not self.matches(key, tag):
                raise KeyError(key)
            self._entries.move_to_end(key)
            return entry, False
        entry = asyncio.get_running_loop().create_future()
        self._entries[key] = entry
        if tag is not None:
            self._tags[key] = tag
        self._evict()
        return entry, True

    def peek(self, key: K) -> asyncio.Future[V] | None:
        """The entry for ``key`` if there is one (finished or in progress), without claiming it."""
        return self._entries.get(key)

    def matches(self, key: K, tag: bytes | None) -> bool:
        """Whether the entry for ``key`` (if any) was made from ``tag`` (entries and calls without one match)."""
        known = self._tags.get(key)
        return known is None or tag is None or known == tag

    def forget(self, key: K) -> None:
        """Drop an entry (its computation failed or was abandoned): the next claim recomputes."""
        entry = self._entries.pop(key, None)
        self._tags.pop(key, None)
        if entry is not None and not entry.done():
            entry.cancel()

    def _evict(self) -> None:
        if len(self._entries) <= self.capacity:
            return
        for key in [k for k, f in self._entries.items() if f.done()]:
            if len(self._entries) <= self.capacity:
                break
            del self._entries[key]
            self._tags.pop(key, None)
