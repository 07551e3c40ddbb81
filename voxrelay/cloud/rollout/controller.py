"""The rollout controller: the deployments a recognizer serves, where traffic goes, and what the
analysis decides.

It owns the deployments (their engines), the :class:`~voxrelay.cloud.rollout.state.RolloutState`, the
shadow runner, the analysis task, the audit log and the review queue. Routing reads ``self.state`` once
per session and per segment start; every change, by a person (the admin service) or by the analysis,
is computed as a whole new state and put in place in one assignment, after what it needs (a model
loaded, a shadow's CPU priority raised) is ready. Changes are serialised by a lock and each one is
appended to the audit log before it is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voxrelay.cloud.backends.base import DecodeOptions
from voxrelay.cloud.engine import InferenceEngine
from voxrelay.cloud.rollout.analysis import AnalysisResult, Sample, analyse, disagreement
from voxrelay.cloud.rollout.audit import AUTOMATIC, AuditEntry, AuditLog
from voxrelay.cloud.rollout.config import DeploymentSpec, RolloutConfig, Strategy
from voxrelay.cloud.rollout.deployment import Assignment, Deployment
from voxrelay.cloud.rollout.engines import DeploymentEngine, EngineOptions, build_engine
from voxrelay.cloud.rollout.metrics import RolloutMetrics
from voxrelay.cloud.rollout.router import mirrored, route
from voxrelay.cloud.rollout.shadow import ShadowJob, ShadowRunner
from voxrelay.cloud.rollout.state import Change, Phase, Role, RolloutState
from voxrelay.errors import FailedPrecondition, ModelNotFound, VoxrelayError, shown
from voxrelay.protos import pb
from voxrelay.review.policy import Confidence, decide
from voxrelay.review.queue import NewItem, ReviewQueue

log = logging.getLogger(__name__)

Estimate = Callable[[float, float, float], float]


@dataclass(frozen=True)
class Analysed:
    at: float  # monotonic
    result: AnalysisResult
    candidate: str
    baseline: str


@dataclass(frozen=True)
class EngineHooks:
    """How the service learns of engines coming and going (its engine map, metrics, monitors)."""

    added: Callable[[str, InferenceEngine], None]
    removed: Callable[[str], None]
    loaded: Callable[[], bool]  # the server's queued audio is past half its bound


class RolloutController:
    def __init__(
        self,
        config: RolloutConfig,
        deployments: Mapping[str, Deployment],
        metrics: RolloutMetrics,
        *,
        engine_options: EngineOptions | None = None,
        data_dir: Path | None = None,
        estimate: Estimate | None = None,
    ) -> None:
        self.config = config
        self.analysis = config.analysis
        self.deployments = dict(deployments)
        self.metrics = metrics
        self.engine_options = engine_options or EngineOptions()
        self.data_dir = data_dir
        self.estimate = estimate
        self.estimate_model = ""
        self.audit = AuditLog(data_dir / "audit.jsonl" if data_dir is not None else None)
        self.review: ReviewQueue | None = None
        self.state = RolloutState(stable=config.stable, deployments=tuple(self.deployments))
        self.hooks: EngineHooks | None = None
        self.last: Analysed | None = None
        self.shadow = ShadowRunner(self._stable_busy, self._server_loaded, self._shadow_outcome, estimate)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._next_purge = 0.0
        if any(d.spec.automation.reviews for d in self.deployments.values()):
            self.open_review()
        self._publish()

    # Building.

    @classmethod
    def load(
        cls,
        config: RolloutConfig,
        metrics: RolloutMetrics,
        provided: Mapping[str, InferenceEngine] | None = None,
        *,
        engine_options: EngineOptions | None = None,
        data_dir: Path | None = None,
        estimate: Estimate | None = None,
    ) -> RolloutController:
        """Load every deployment of ``config`` (blocking). ``provided``: engines already loaded, by
        deployment name (or by model name, for a deployment of that model with no options of its own)."""
        provided = dict(provided or {})
        keep = max(600.0, 3 * config.analysis.window)
        shadow = config.candidate.name if config.candidate and config.candidate.strategy is Strategy.SHADOW else None
        deployments: dict[str, Deployment] = {}
        try:
            for spec in config.deployments:
                engine = provided.pop(spec.name, None)
                if engine is None and spec.model in provided and spec.backend == provided[spec.model].model.backend:
                    engine = provided.pop(spec.model)
                if engine is not None:
                    from voxrelay.cloud.rollout.engines import check_loaded

                    check_loaded(spec, engine.backend)
                    holder = DeploymentEngine(spec, engine, frozenset(), background=False, owned=False)
                else:
                    holder = build_engine(spec, engine_options or EngineOptions(), background=spec.name == shadow)
                deployments[spec.name] = Deployment(spec, holder, keep)
        except BaseException:
            for d in deployments.values():
                if d.holder.owned:
                    d.engine.close()
            raise
        controller = cls(
            config, deployments, metrics, engine_options=engine_options, data_dir=data_dir, estimate=estimate
        )
        if config.candidate is not None:
            c = config.candidate
            now = time.monotonic()
            if c.strategy is Strategy.SHADOW:
                controller.state = controller.state.shadow(c.name, c.mirror_percent, now).state
            elif c.strategy is Strategy.CANARY:
                controller.state = controller.state.canary(c.name, now, config.analysis).state
            controller._publish()
        return controller

    def set_estimate(self, estimate: Estimate | None, model: str = "") -> None:
        """The per-segment WER estimate, fitted for ``model`` (any model when empty): deployments of other
        models get no estimate, and the analysis leaves the check out when either side has none."""
        self.estimate = estimate
        self.estimate_model = model
        self.shadow.estimate = estimate
        self.shadow.estimate_model = model

    def estimates(self, deployment: Deployment) -> bool:
        """Whether ``deployment``'s results get a WER estimate (the calibration was fitted for its model)."""
        return self.estimate is not None and self.estimate_model in ("", deployment.spec.model)

    def attach(self, hooks: EngineHooks) -> None:
        self.hooks = hooks

    def engines(self) -> dict[str, InferenceEngine]:
        return {name: d.engine for name, d in self.deployments.items()}

    def open_review(self) -> ReviewQueue | None:
        """The review queue (opened on first need, in the data directory)."""
        if self.review is None and self.data_dir is not None:
            self.review = ReviewQueue(self.data_dir / "review.sqlite3", self.config.review_retention_days)
        return self.review

    def review_queue(self) -> ReviewQueue:
        """The review queue for people to work through: the open one, or one an earlier run left."""
        if self.review is None and self.data_dir is not None and (self.data_dir / "review.sqlite3").exists():
            self.open_review()
        if self.review is None:
            raise FailedPrecondition(
                "review is off on this server: no deployment has an automation level other than full "
                "(set automation: partial, assistance, shadow or human on a deployment)"
            )
        return self.review

    # Running.

    def start(self) -> None:
        self.shadow.start()
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="voxrelay-analysis")

    async def close(self) -> None:
        for task in (self._loop_task, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._loop_task, *self._tasks):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._loop_task = None
        await self.shadow.close()
        if self.review is not None:
            await asyncio.to_thread(self.review.close)
            self.review = None

    def close_engines(self) -> None:
        """Close every deployment's engine, lent ones too (the service is stopping)."""
        closed: set[int] = set()
        for d in self.deployments.values():
            if id(d.engine) not in closed:
                closed.add(id(d.engine))
                d.engine.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.analysis.interval_seconds)
            try:
                await self.tick()
            except Exception:  # the analysis must never stop the service
                log.exception("rollout analysis failed")

    async def tick(self) -> Analysed | None:
        """One analysis interval: release an old stable past its grace, judge the candidate, act."""
        async with self._lock:
            now = time.monotonic()
            released = self.state.expire(now)
            if released is not None:
                await self._apply(released, AUTOMATIC, "grace period over")
            if now >= self._next_purge and self.review is not None:
                self._next_purge = now + 3600.0
                purged = await asyncio.to_thread(self.review.purge)
                if purged:
                    log.info("review queue: %d item(s) past the retention limit deleted", purged)
            if not self.state.analysing:
                return None
            analysed = self.judge(now)
            if analysed is None:
                return None
            self.last = analysed
            result = analysed.result
            shadow = self.state.candidate if self.state.phase is Phase.SHADOW else None
            value = next((c.candidate for c in result.checks if c.check == "disagreement_wer"), None)
            self.metrics.analysed(result, shadow, value)
            log.info(
                "analysis of %s against %s: %s (%s)",
                analysed.candidate,
                analysed.baseline,
                result.verdict.value,
                result.describe(),
            )
            change = self.state.judged(result.verdict, self.analysis, now, self.config.grace_seconds)
            if change is not None:
                figures: dict[str, object] = {
                    "verdict": result.verdict.value,
                    "checks": [
                        {
                            "check": c.check,
                            "result": c.verdict.value,
                            "candidate": c.candidate,
                            "baseline": c.baseline,
                            "limit": c.limit,
                            "samples": list(c.samples),
                        }
                        for c in result.checks
                    ],
                }
                failed = ", ".join(c.describe() for c in result.failed)
                why = f"failed: {failed}" if failed else f"analysis {result.verdict.value}"
                if change.action in ("pass", "fail"):
                    self.state = change.state  # counted only: no routing change, no audit entry
                else:
                    await self._apply(change, AUTOMATIC, why, figures)
            return analysed

    def judge(self, now: float) -> Analysed | None:
        """Analyse the current candidate (or the new stable after a switch) on the last window."""
        st = self.state
        window = self.analysis.window
        comparisons = None
        if st.verifying and st.previous in self.deployments and st.switched_at is not None:
            cand, base = self.deployments[st.stable], self.deployments[st.previous]
            cs = cand.window.samples(max(now - window, st.switched_at), now)
            bs = base.window.samples(st.switched_at - window, st.switched_at)
        elif st.candidate is not None:
            cand, base = self.deployments[st.candidate], self.deployments[st.stable]
            start = max(now - window, st.started_at or 0.0)
            cs = cand.window.samples(start, now)
            bs = base.window.samples(start, now)
            if st.phase is Phase.SHADOW:
                comparisons = cand.window.comparisons(start, now)
                bs = [replace(s, latency=s.inference) for s in bs]  # a shadow's latency is its inference
        else:
            return None
        result = analyse(
            cs,
            bs,
            self.analysis.thresholds,
            self.analysis.min_samples,
            comparisons=comparisons,
            estimated=self.estimates(cand) and self.estimates(base),
        )
        return Analysed(now, result, cand.name, base.name)

    # Routing.

    def assign(self, field: str, requested: str, key: str) -> Assignment:
        """The deployment serving ``key`` (a device id or client identity) now; a ``requested`` name (a
        deployment, or a model or weights version a deployment serves) pins it."""
        st = self.state
        if requested:
            found = self._find(field, requested)
            return Assignment(found, st.role(found.name).value, st.generation, pinned=True)
        name, role = route(st, key)
        return Assignment(self.deployments[name], role.value, st.generation)

    def reroute(self, current: Assignment, key: str) -> Assignment:
        """``current`` if the rollout has not changed since it was made; else the route now."""
        if current.pinned:
            if current.name not in self.deployments:
                raise ModelNotFound(f"deployment {current.name!r} was removed from this server; reconnect")
            return current
        if current.generation == self.state.generation:
            return current
        return self.assign("", "", key)

    def _find(self, field: str, requested: str) -> Deployment:
        found = self.deployments.get(requested)
        if found is not None:
            return found
        st = self.state
        order = sorted(self.deployments.values(), key=lambda d: (st.role(d.name) is not Role.STABLE, d.name))
        for d in order:
            if requested in (d.model.name, d.model.version, d.spec.model):
                return d
        served = ", ".join(self.deployments)
        raise ModelNotFound(f"{field}: model {shown(requested)} is not served here (served: {served})")

    @property
    def stable(self) -> Deployment:
        return self.deployments[self.state.stable]

    def _stable_busy(self) -> bool:
        """A shadow decode started now could compete with the stable's: a segment waits for it, is inside
        its model, or is still being received (it is recognised as soon as it ends)."""
        engine = self.stable.engine
        return engine.queued > 0 or engine.running > 0 or engine.more_coming()

    def _server_loaded(self) -> bool:
        return self.hooks.loaded() if self.hooks is not None else False

    def _shadow_outcome(self, name: str, outcome: str) -> None:
        self.metrics.shadow.labels(deployment=name, outcome=outcome).inc()
        if outcome.startswith("dropped") and name in self.deployments:
            self.deployments[name].counters.shadow_dropped += 1

    # Observing results (the request path: cheap, never blocking).

    def observe(
        self,
        assignment: Assignment,
        result: pb.RecognitionResult,
        audio: np.ndarray | None,
        options: DecodeOptions | None,
        session: str = "",
    ) -> None:
        """A result about to go out: a sample for the analysis, a shadow job, a review item."""
        d = assignment.deployment
        text = result.text.strip()
        estimated = None
        if self.estimate is not None and text and self.estimates(d):
            estimated = self.estimate(result.avg_logprob, result.no_speech_prob, result.compression_ratio)
        timings = result.timings
        d.window.add(
            Sample(
                at=time.monotonic(),
                ok=True,
                latency=timings.queue_wait_seconds + timings.inference_seconds,
                inference=timings.inference_seconds,
                empty=not text,
                avg_logprob=result.avg_logprob,
                estimated_wer=estimated,
                words=len(text.split()),
            )
        )
        d.counters.results += 1
        self.metrics.results.labels(deployment=d.name, role=assignment.role, outcome="ok").inc()
        st = self.state
        if (
            audio is not None
            and options is not None
            and st.phase is Phase.SHADOW
            and st.candidate is not None
            and d.name == st.stable
            and mirrored(st, f"{session}/{result.segment_id}" if result.segment_id else secrets.token_hex(8))
        ):
            candidate = self.deployments[st.candidate]
            job = ShadowJob(
                Assignment(candidate, Role.SHADOW.value, st.generation),
                audio,
                options,
                result.text,
                result.language,
                time.monotonic(),
            )
            self.shadow.offer(job)
        if d.spec.automation.reviews:
            self._review(assignment, result, audio, estimated, session)

    def observe_error(self, assignment: Assignment, err: VoxrelayError) -> None:
        d = assignment.deployment
        d.window.add(Sample(at=time.monotonic(), ok=False))
        d.counters.errors += 1
        self.metrics.results.labels(deployment=d.name, role=assignment.role, outcome="error").inc()

    def _review(
        self,
        assignment: Assignment,
        result: pb.RecognitionResult,
        audio: np.ndarray | None,
        estimated: float | None,
        session: str,
    ) -> None:
        spec = assignment.deployment.spec
        confidence = Confidence(
            result.text, result.avg_logprob, result.no_speech_prob, result.compression_ratio, estimated
        )
        decision = decide(spec.automation, spec.review, confidence)
        queue = self.open_review()
        if decision is None or audio is None or queue is None:
            return
        signals = {
            "avg_logprob": float(result.avg_logprob),
            "no_speech_prob": float(result.no_speech_prob),
            "compression_ratio": float(result.compression_ratio),
        }
        if estimated is not None:
            signals["estimated_wer"] = float(estimated)
        item = NewItem(
            deployment=spec.name,
            model=result.model.name,
            model_version=result.model.version,
            segment_id=result.segment_id,
            session=session,
            reason=decision.reason,
            why=decision.why,
            signals={k: v for k, v in signals.items() if math.isfinite(v)},
            language=result.language,
            model_text=result.text,
            show_text=decision.shows_text,
            audio=audio,
            audio_seconds=result.timings.audio_seconds,
        )
        if not queue.enqueue(item):
            log.warning("review queue: 1000 items waiting to be stored; one was not queued")
            return
        result.needs_review = True
        result.review_id = item.id
        if spec.automation.withholds_text:
            del result.words[:]
            del result.phrases[:]
            result.text = ""

    # Changes.

    async def change(
        self, compute: Callable[[RolloutState, float], Change], who: str, why: str, target: str = ""
    ) -> Change:
        """Apply the change ``compute`` makes of the current state (it raises for a bad request, and
        then nothing changes)."""
        async with self._lock:
            change = compute(self.state, time.monotonic())
            await self._apply(change, who, why, target=target)
            return change

    async def add(self, spec: DeploymentSpec, who: str, why: str) -> Change:
        async with self._lock:
            self.state.add(spec.name)  # refused before anything is loaded
            holder = await asyncio.to_thread(build_engine, spec, self.engine_options, False)
            deployment = Deployment(spec, holder, max(600.0, 3 * self.analysis.window))
            self.deployments[spec.name] = deployment
            change = self.state.add(spec.name)
            if self.hooks is not None:
                self.hooks.added(spec.name, holder.engine)
            if spec.automation.reviews:
                self.open_review()
            lines = (
                f"{spec.name}: loaded {spec.model} ({holder.engine.model.backend}, version "
                f"{holder.engine.model.version}, options: {spec.options.describe()}, automation "
                f"{spec.automation.value}), idle",
            )
            change = Change(change.state, lines, "add")
            await self._apply(change, who, why, target=spec.name)
            return change

    async def _apply(
        self, change: Change, who: str, why: str, figures: dict[str, object] | None = None, target: str = ""
    ) -> None:
        old, new = self.state, change.state
        await self._priorities(new)
        self.state = new  # the switch: routing reads this one reference
        if new.phase is not Phase.SHADOW:
            self.shadow.clear()
        for name in set(old.deployments) - set(new.deployments):
            self._retire(name)
        self._publish()
        self.metrics.decisions.labels(action=change.action).inc()
        entry = AuditEntry(
            who=who,
            action=change.action,
            why=why,
            changes=change.lines,
            target=target or (new.candidate or new.stable),
            figures=dict(figures or {}),
        )
        log.info("rollout %s by %s: %s", change.action, who, "; ".join(change.lines))
        await asyncio.to_thread(self.audit.append, entry)

    async def _priorities(self, new: RolloutState) -> None:
        """A shadow's model at background CPU priority, every other at normal priority (loading it again
        when the priority cannot be raised), before the new state routes anything to it."""
        for name, d in list(self.deployments.items()):
            if name not in new.deployments:
                continue
            if new.role(name) is Role.SHADOW:
                d.holder.demote()
            elif d.holder.background and not d.holder.promote():
                log.info("deployment %s: loading it again at normal CPU priority (no CAP_SYS_NICE)", name)
                fresh = await asyncio.to_thread(build_engine, d.spec, self.engine_options, False)
                old = d.holder
                d.holder = fresh
                if self.hooks is not None:
                    self.hooks.added(name, fresh.engine)
                if old.owned:
                    self._spawn(self._close_when_idle(old.engine))

    def _retire(self, name: str) -> None:
        d = self.deployments.pop(name, None)
        if d is None:
            return
        if self.hooks is not None:
            self.hooks.removed(name)
        if d.holder.owned and all(other.engine is not d.engine for other in self.deployments.values()):
            self._spawn(self._close_when_idle(d.engine))

    async def _close_when_idle(self, engine: InferenceEngine, patience: float = 120.0) -> None:
        """Close an engine once the segments it started are done (they finish where they began)."""
        deadline = time.monotonic() + patience
        while (engine.queued or engine.running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(engine.close)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _publish(self) -> None:
        st = self.state
        self.metrics.deployments(
            (
                name,
                d.model.name,
                d.model.version,
                d.model.backend,
                st.role(name).value,
                d.spec.automation.value,
            )
            for name, d in self.deployments.items()
        )
        self.metrics.rollout(self.deployments, st.candidate, st.weight, st.mirror_percent)

    # Figures for the status.

    def shadow_disagreement(self, now: float | None = None) -> float | None:
        st = self.state
        if st.phase is not Phase.SHADOW or st.candidate is None:
            return None
        now = time.monotonic() if now is None else now
        return disagreement(self.deployments[st.candidate].window.comparisons(now - self.analysis.window, now))

    def figures_json(self, entry: AuditEntry) -> str:
        return json.dumps(entry.figures, allow_nan=False, default=str) if entry.figures else ""
