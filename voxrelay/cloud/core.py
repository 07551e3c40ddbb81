"""State shared by every call of one recognizer service: engines, result cache, admission, drain.

Admission is per client identity (see :func:`voxrelay.cloud.security.client_identity`): each client
may hold ``max_client_streams`` streams and ``max_client_queued_work_seconds`` of estimated inference
queued or running; the whole server ``max_concurrent_streams`` and ``max_queued_work_seconds``. A
client still within its fair share of the server's work (the limit divided by the clients with work)
is admitted even when the others have filled the server, so a flood only ever refuses the flooder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from voxrelay.cloud.backends.base import DecodeOptions, ModelDescriptor
from voxrelay.cloud.engine import InferenceEngine, ResultCache
from voxrelay.cloud.metrics import CloudMetrics
from voxrelay.cloud.rollout.controller import EngineHooks, RolloutController
from voxrelay.cloud.rollout.deployment import Assignment
from voxrelay.cloud.security import TokenSet
from voxrelay.cloud.settings import ServerSettings
from voxrelay.cloud.watch import build_monitor, model_ref, observation
from voxrelay.errors import Overloaded, Unavailable, VoxrelayError
from voxrelay.monitoring.calibration import load_calibration
from voxrelay.monitoring.features import VadFeatures
from voxrelay.monitoring.monitor import Monitor
from voxrelay.protos import pb

log = logging.getLogger(__name__)


class ServiceCore:
    """Owns the engines and every background task the service starts."""

    def __init__(
        self,
        settings: ServerSettings,
        rollout: RolloutController,
        metrics: CloudMetrics | None = None,
        tokens: TokenSet | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.settings = settings
        # The deployments and where traffic goes (see voxrelay.cloud.rollout); the engines by deployment.
        self.rollout = rollout
        self.engines: dict[str, InferenceEngine] = rollout.engines()
        if not self.engines:
            raise ValueError("at least one engine is needed")
        # Keyed by (principal, device id, session id, segment id), each entry tagged with its audio's digest.
        self.results: ResultCache[tuple[str, str, str, str], pb.RecognitionResult] = ResultCache(
            settings.result_cache_size
        )
        self.tokens = tokens
        self.draining = False
        self.active_streams = 0
        self.streams_by_client: Counter[str] = Counter()
        # Audio of segments waiting for or in recognition, all streams (a memory bound).
        self.queued_audio_seconds = 0.0
        # Work a drain lets finish: segments open on a stream, Recognize calls being served.
        self.open_segments = 0
        self.calls_in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Without a registry from the caller, a fresh one per service (never the global default).
        self.metrics = metrics if metrics is not None else CloudMetrics(CollectorRegistry())
        self.metrics.track(self.engines, lambda: self.active_streams)
        # Drift monitors (their own thread; started here, stopped by close()).
        models = {name: engine.model for name, engine in self.engines.items()}
        self.monitor = monitor if monitor is not None else build_monitor(settings, models, self.metrics.registry)
        if self.monitor is not None:
            self.monitor.start()
        # The label-free per-segment WER estimate the analysis and the review policy use.
        calibration = self.monitor.calibration if self.monitor is not None else None
        if calibration is None:
            calibration = load_calibration(settings.calibration_file)
        rollout.set_estimate(calibration.predict, calibration.model)
        rollout.attach(EngineHooks(self._engine_added, self._engine_removed, self._loaded))
        for engine in self.engines.values():
            engine.more_coming = self.more_coming

    def more_coming(self) -> bool:
        """Whether more final work may arrive soon: a segment open on some stream, or several
        single-utterance calls being served (a worker then waits briefly for its batch to fill)."""
        return self.open_segments > 0 or self.calls_in_flight > 1

    @property
    def default_model(self) -> str:
        """The stable deployment."""
        return self.rollout.state.stable

    def engine_for(self, field: str, name: str, key: str = "") -> Assignment:
        """The deployment serving a call: ``name`` if the client named one (a deployment, model or weights
        version), else the one the rollout routes ``key`` (a device id or client identity) to."""
        return self.rollout.assign(field, name, key)

    def reroute(self, current: Assignment, key: str) -> Assignment:
        """The deployment a session's next segment goes to (the same unless the rollout changed)."""
        return self.rollout.reroute(current, key)

    def _engine_added(self, name: str, engine: InferenceEngine) -> None:
        self.engines[name] = engine
        engine.more_coming = self.more_coming
        self.metrics.track_engine(name, engine)
        if self.monitor is not None:
            self.monitor.add_model(name, model_ref(engine.model))

    def _engine_removed(self, name: str) -> None:
        self.engines.pop(name, None)
        self.metrics.untrack_engine(name)

    def _loaded(self) -> bool:
        return self.queued_audio_seconds > self.settings.max_queued_audio_seconds / 2

    def refuse_if_draining(self) -> None:
        if self.draining:
            raise Unavailable("the server is draining; connect to another replica or retry later")

    def admit_stream(self, client: str) -> None:
        """Refuse a new stream while draining, at the server's stream limit, or at ``client``'s."""
        self.refuse_if_draining()
        limit = self.settings.max_concurrent_streams
        if self.active_streams >= limit:
            raise self.overloaded(f"{self.active_streams} concurrent streams (limit {limit})")
        self.check_client_streams(client)
        self.admit(client=client)  # a full queue refuses new streams before they send any audio

    def check_client_streams(self, client: str) -> None:
        held, limit = self.streams_by_client[client], self.settings.max_client_streams
        if held >= limit:
            raise self.overloaded(f"this client holds {held} streams (limit {limit} per client)")

    def load(self, client: str) -> float:
        """Estimated seconds of ``client``'s inference queued or running, all models."""
        return sum(engine.scheduler.load(client) for engine in self.engines.values())

    def admit(
        self, seconds: float = 0.0, client: str | None = None, cost: float = 0.0, *, draining_ok: bool = False
    ) -> None:
        """Refuse new work while draining, when ``seconds`` more audio would overfill the audio bound, or
        when ``cost`` more estimated inference seconds would pass ``client``'s limit or, beyond its fair
        share, the server's.

        The first piece of work is always let in, however long, so that a limit below one segment's
        cost cannot block the server (or a client) for good. ``draining_ok``: work already under way (the
        end of a segment that was open when the drain began) is let in during a drain.
        """
        if not draining_ok:
            self.refuse_if_draining()
        limit = self.settings.max_queued_audio_seconds
        queued = self.queued_audio_seconds
        if queued > 0 and (queued + seconds > limit or queued >= limit):
            raise self.overloaded(f"{queued:.1f} s of audio is queued for recognition (limit {limit:g} s)")
        if client is None:
            return
        mine = self.load(client)
        own_limit = self.settings.max_client_queued_work_seconds
        if mine > 0 and mine + cost > own_limit:
            raise self.overloaded(
                f"this client has {mine:.1f} s of estimated inference queued (limit {own_limit:g} s per client)"
            )
        total = sum(engine.scheduler.total_load for engine in self.engines.values())
        server_limit = self.settings.max_queued_work_seconds
        if total > 0 and total + cost > server_limit:
            busy = max(engine.scheduler.busy_clients for engine in self.engines.values())
            fair_share = server_limit / (busy + (0 if mine > 0 else 1))
            if mine + cost > fair_share:
                raise self.overloaded(
                    f"{total:.1f} s of estimated inference is queued (limit {server_limit:g} s) and this client "
                    f"is past its fair share ({fair_share:.1f} s)"
                )

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

    @property
    def work_in_flight(self) -> int:
        """Open segments, recognitions and Recognize calls that a drain waits for."""
        return self.open_segments + len(self._tasks) + self.calls_in_flight

    async def drain(self, grace: float) -> bool:
        """Refuse new segments and calls; let open segments end and every recognition and Recognize
        call finish, for up to ``grace`` seconds. True if all finished."""
        self.draining = True
        deadline = time.monotonic() + grace
        while self.open_segments or self.calls_in_flight:  # their end (or result) is still to come
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        left = self.open_segments + self.calls_in_flight + len(pending)
        if left:
            log.warning("drain: %d segment(s) or call(s) still running after %.1f s were cancelled", left, grace)
        return not left

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.rollout.close_engines()

    # Observation hooks (metrics attach here).
    def metrics_audio(self, seconds: float) -> None:
        self.metrics.audio_received(seconds)

    def observe_result(
        self,
        model: ModelDescriptor,
        result: pb.RecognitionResult,
        audio: np.ndarray | None = None,
        vad: VadFeatures | None = None,
        session: str = "",
        engine: Assignment | None = None,
        options: DecodeOptions | None = None,
    ) -> None:
        """A recognised segment: counted in the metrics, handed to the monitor (which never blocks), and
        to the rollout (analysis samples, the shadow, the review queue: it may mark the result for review).
        ``engine``: the deployment that produced it; ``options``: the client's decode options."""
        self.metrics.observe_result(model, result)
        if self.monitor is not None:
            self.monitor.submit(self.model_key(model), observation(result, audio, vad, session))
        if engine is not None:
            self.rollout.observe(engine, result, audio, options, session)

    def observe_error(self, engine: Assignment, err: VoxrelayError) -> None:
        """A segment the deployment failed on (counted against it by the analysis)."""
        self.rollout.observe_error(engine, err)

    def model_key(self, model: ModelDescriptor) -> str:
        for name, engine in self.engines.items():
            if engine.model is model:
                return name
        return model.name
