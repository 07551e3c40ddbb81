"""Runs a backend off the event loop with bounded concurrency, and remembers recent results.

One ``InferenceEngine`` owns one loaded model and serves every stream: inference runs on a small
thread pool (``workers`` threads), so at most that many segments are inside the model at once and
the rest wait in the pool's queue. ``ResultCache`` maps a segment's idempotency key to its result
so that a resent segment is answered without being recognised twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from voxrelay.cloud.backends.base import Backend, DecodeOptions, ModelDescriptor, Transcript
from voxrelay.errors import BackendError, VoxrelayError


@dataclass(frozen=True)
class Recognition:
    """A transcript with the server-side timings of producing it (seconds)."""

    transcript: Transcript
    queue_wait: float
    inference: float


class InferenceEngine:
    """Serialises access to one backend through a bounded thread pool."""

    def __init__(self, backend: Backend, workers: int = 1) -> None:
        self.backend = backend
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voxrelay-inference")
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0

    @property
    def model(self) -> ModelDescriptor:
        return self.backend.model

    @property
    def queued(self) -> int:
        """Segments waiting for a worker."""
        return self._waiting

    @property
    def running(self) -> int:
        """Segments inside the model now."""
        return self._running

    async def recognize(self, audio: np.ndarray, options: DecodeOptions) -> Recognition:
        submitted = time.perf_counter()

        def run() -> Recognition:
            begin = time.perf_counter()
            with self._lock:
                self._waiting -= 1
                self._running += 1
            try:
                transcript = self.backend.transcribe(audio, options)
            except VoxrelayError:
                raise
            except Exception as err:  # a backend bug must not take the server down
                raise BackendError(f"{self.backend.model.backend} failed: {type(err).__name__}: {err}") from err
            finally:
                with self._lock:
                    self._running -= 1
            return Recognition(transcript, begin - submitted, time.perf_counter() - begin)

        with self._lock:
            self._waiting += 1
        job = self._executor.submit(run)
        try:
            return await asyncio.wrap_future(job)
        finally:
            if job.cancelled():  # cancelled before a worker picked it up: run() never counted it out
                with self._lock:
                    self._waiting -= 1

    def close(self) -> None:
        """Wait for running inferences, then release the model."""
        self._executor.shutdown(wait=True, cancel_futures=True)
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
