"""State shared by every call of one recognizer service: engines, result cache, drain flag, tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from voxrelay.cloud.backends.base import ModelDescriptor
from voxrelay.cloud.engine import InferenceEngine, ResultCache
from voxrelay.cloud.metrics import CloudMetrics
from voxrelay.cloud.settings import ServerSettings
from voxrelay.errors import ModelNotFound, Overloaded, Unavailable
from voxrelay.protos import pb

log = logging.getLogger(__name__)


class ServiceCore:
    """Owns the engines and every background task the service starts."""

    def __init__(
        self,
        settings: ServerSettings,
        engines: Mapping[str, InferenceEngine],
        metrics: CloudMetrics | None = None,
    ) -> None:
        if not engines:
            raise ValueError("at least one engine is needed")
        self.settings = settings
        self.engines = dict(engines)
        self.default_model = next(iter(self.engines))
        self.results: ResultCache[tuple[str, str], pb.RecognitionResult] = ResultCache(settings.result_cache_size)
        self.draining = False
        self.active_streams = 0
        # Audio of segments waiting for or in recognition, all streams (admission control).
        self.queued_audio_seconds = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        # Without a registry from the caller, a fresh one per service (never the global default).
        self.metrics = metrics if metrics is not None else CloudMetrics(CollectorRegistry())
        self.metrics.track(self.engines, lambda: self.active_streams)

    def engine_for(self, field: str, name: str) -> InferenceEngine:
        """The engine serving model ``name`` ("" = the default)."""
        if not name:
            return self.engines[self.default_model]
        engine = self.engines.get(name)
        if engine is None:
            for candidate in self.engines.values():
                if name in (candidate.model.name, candidate.model.version):
                    return candidate
            served = ", ".join(self.engines)
            raise ModelNotFound(f"{field}: model {name!r} is not served here (served: {served})")
        return engine

    def admit(self, seconds: float = 0.0) -> None:
        """Refuse new work while draining, or when ``seconds`` more audio would overfill the queue.

        The first segment is always let in, however long, so that a queue limit below a segment's
        length cannot block the server for good.
        """
        if self.draining:
            raise Unavailable("the server is draining; connect to another replica or retry later")
        limit = self.settings.max_queued_audio_seconds
        queued = self.queued_audio_seconds
        if queued > 0 and (queued + seconds > limit or queued >= limit):
            raise self.overloaded(f"{queued:.1f} s of audio is queued for recognition (limit {limit:g} s)")

    def overloaded(self, why: str) -> Overloaded:
        retry = self.settings.retry_after_seconds
        return Overloaded(f"the server is busy: {why}; retry in {retry:g} s", retry)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task that outlives the call that started it; drain() waits for it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float) -> bool:
        """Refuse new work and wait up to ``grace`` seconds for in-flight segments; True if all finished."""
        self.draining = True
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("drain: %d segment(s) still running after %.1f s were cancelled", len(pending), grace)
        return not pending

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    # Observation hooks (metrics attach here).
    def metrics_audio(self, seconds: float) -> None:
        self.metrics.audio_received(seconds)

    def observe_result(self, model: ModelDescriptor, result: pb.RecognitionResult) -> None:
        self.metrics.observe_result(model, result)
