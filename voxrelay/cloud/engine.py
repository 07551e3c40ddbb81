"""Runs a backend off the event loop, fairly between clients, and remembers recent results.

One ``InferenceEngine`` owns one loaded model and serves every stream: ``workers`` threads take jobs
from a :class:`~voxrelay.cloud.scheduler.FairScheduler` (per-client queues served in turn), so at
most that many segments are inside the model at once and one client's flood cannot starve another.
Every job's cost is estimated beforehand and its measured inference time teaches the engine's
:class:`~voxrelay.cloud.cost.CostModel`. ``ResultCache`` maps a segment's idempotency key to its
result so that a resent segment is answered without being recognised twice.
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
from voxrelay.cloud.cost import CostModel
from voxrelay.cloud.scheduler import FairScheduler, Job, Priority
from voxrelay.errors import BackendError, Unavailable, VoxrelayError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Recognition:
    """A transcript with the server-side timings of producing it (seconds)."""

    transcript: Transcript
    queue_wait: float
    inference: float


@dataclass(frozen=True)
class _Work:
    """What a worker runs for a job, and where its outcome goes."""

    audio: np.ndarray
    options: DecodeOptions
    prompt_tokens: int
    submitted: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Recognition]


def _settle(future: asyncio.Future[Recognition], outcome: Recognition | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class InferenceEngine:
    """Shares one backend between clients through a fair scheduler and ``workers`` threads."""

    def __init__(self, backend: Backend, workers: int = 1, cost: CostModel | None = None) -> None:
        self.backend = backend
        self.workers = workers
        self.cost = cost or CostModel()
        self.scheduler = FairScheduler()
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
    ) -> Recognition:
        """Recognise ``audio`` (float32 mono 16 kHz) when the scheduler gives ``client`` its turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Recognition] = loop.create_future()
        tokens = self.prompt_tokens(options)
        work = _Work(audio, options, tokens, time.perf_counter(), loop, future)
        job = Job(client, self.cost.estimate(audio.size / SAMPLE_RATE, tokens), work, priority, batch_key=options)
        try:
            self.scheduler.submit(job)
        except RuntimeError:
            raise Unavailable("the recognizer is shutting down; retry on another replica") from None
        try:
            return await future
        finally:
            if not future.done():  # the caller went away: a job no worker has started is dropped
                self.scheduler.withdraw(job)

    def _work(self) -> None:
        while True:
            jobs = self.scheduler.take(1)
            if not jobs:
                return
            for job in jobs:
                self._run(job)

    def _run(self, job: Job) -> None:
        work: _Work = job.payload
        begin = time.perf_counter()
        outcome: Recognition | BaseException
        try:
            if work.future.cancelled():
                return
            transcript = self.backend.transcribe(work.audio, work.options)
            inference = time.perf_counter() - begin
            self.cost.observe(work.audio.size / SAMPLE_RATE, work.prompt_tokens, inference)
            outcome = Recognition(transcript, begin - work.submitted, inference)
        except VoxrelayError as err:
            outcome = err
        except Exception as err:  # a backend bug must not take the server down
            outcome = BackendError(f"{self.backend.model.backend} failed: {type(err).__name__}: {err}")
        finally:
            self.scheduler.done(job)
        with contextlib.suppress(RuntimeError):  # the caller's event loop has closed: nobody is waiting
            work.loop.call_soon_threadsafe(_settle, work.future, outcome)

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

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, key: K) -> tuple[asyncio.Future[V], bool]:
        """Return the entry for ``key`` and whether the caller is the one who must fill it."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry, False
        entry = asyncio.get_running_loop().create_future()
        self._entries[key] = entry
        self._evict()
        return entry, True

    def peek(self, key: K) -> asyncio.Future[V] | None:
        """The entry for ``key`` if there is one (finished or in progress), without claiming it."""
        return self._entries.get(key)

    def forget(self, key: K) -> None:
        """Drop an entry (its computation failed or was abandoned): the next claim recomputes."""
        entry = self._entries.pop(key, None)
        if entry is not None and not entry.done():
            entry.cancel()

    def _evict(self) -> None:
        if len(self._entries) <= self.capacity:
            return
        for key in [k for k, f in self._entries.items() if f.done()]:
            if len(self._entries) <= self.capacity:
                break
            del self._entries[key]
