"""The recognizer's monitors: one thread that measures segments and scores drift off the request path.

The request path calls :meth:`Monitor.submit` (a non-blocking put on a bounded queue; a full queue
skips the segment and counts it, never waits). The monitor's thread extracts each segment's features
(the audio ones too), adds them to the model's windows (O(1)), and every ``score_interval_seconds``
scores every window, updates the metrics and the label-free WER estimate. :meth:`Monitor.close`
stops the thread.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from voxrelay.monitoring.binning import Window
from voxrelay.monitoring.calibration import Calibration
from voxrelay.monitoring.detector import DriftDetector, FeatureState
from voxrelay.monitoring.features import BY_NAME, RepeatTracker, SegmentObservation, extract
from voxrelay.monitoring.metrics import MonitorMetrics
from voxrelay.monitoring.profile import ModelRef, ReferenceProfile
from voxrelay.monitoring.thresholds import DriftSettings

log = logging.getLogger(__name__)

QUEUE_SIZE = 256


@dataclass(frozen=True)
class ModelState:
    """A model's monitoring state, for GetInfo and the dashboard."""

    model: str
    version: str
    reference_source: str  # "learning", "learned", "manifest", "folder", "batch"
    reference_origin: str
    reference_segments: int
    learn_segments: int
    profile_created: str
    estimated_wer: float
    features: tuple[FeatureState, ...]

    @property
    def alarms(self) -> list[str]:
        return [f.feature for f in self.features if f.alarm]


class _ModelMonitor:
    def __init__(
        self, model: ModelRef, settings: DriftSettings, profile: ReferenceProfile | None, collect: bool
    ) -> None:
        self.model = model.name
        self.detector = DriftDetector(model, settings, profile, learn_forever=collect)
        self.repeats = RepeatTracker()
        self.wer = Window(settings.long_window)
        self.words = Window(settings.long_window)
        self.estimated_wer = math.nan


class Monitor:
    def __init__(
        self,
        models: Mapping[str, ModelRef],
        settings: DriftSettings,
        registry: CollectorRegistry,
        profiles: Mapping[str, ReferenceProfile] | None = None,
        calibration: Calibration | None = None,
        clock: Callable[[], float] = time.monotonic,
        collect: bool = False,
    ) -> None:
        """``collect``: only gather every segment's features (for ``voxrelay profile``), never score."""
        self.settings = settings
        self.calibration = calibration
        self.metrics = MonitorMetrics(registry)
        self.clock = clock
        profiles = profiles or {}
        self._models = {name: _ModelMonitor(ref, settings, profiles.get(name), collect) for name, ref in models.items()}
        for name, m in self._models.items():
            self.metrics.start(name, m.detector.features)
        self._queue: queue.Queue[tuple[str, SegmentObservation] | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._next_score = clock() + settings.score_interval_seconds
        self._thread: threading.Thread | None = None
        self.scorings_done = 0
        self._update_reference_metrics()

    def add_model(self, name: str, model: ModelRef) -> None:
        """Monitor one more model (a deployment loaded at run time); it learns its reference anew."""
        with self._lock:
            if name in self._models:
                return
            m = _ModelMonitor(model, self.settings, None, False)
            self._models[name] = m
        self.metrics.start(name, m.detector.features)

    # -- request path ------------------------------------------------------------------------

    def submit(self, model: str, obs: SegmentObservation) -> None:
        """Hand a recognised segment to the monitor; never blocks."""
        if model not in self._models:
            return
        try:
            self._queue.put_nowait((model, obs))
        except queue.Full:
            self.metrics.skipped.inc()

    # -- the monitor's thread ----------------------------------------------------------------

    def start(self) -> Monitor:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="voxrelay-monitor", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        while True:
            timeout = max(0.0, self._next_score - self.clock())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = ()  # type: ignore[assignment]
            if item is None:
                return
            began = time.thread_time()
            try:
                if item:
                    self.process(*item)
                if self.clock() >= self._next_score:
                    self.score()
            except Exception:  # the monitor must never take the server down
                log.exception("monitor: a segment could not be measured")
            self.metrics.cpu.inc(time.thread_time() - began)

    def process(self, model: str, obs: SegmentObservation) -> None:
        """Measure one segment (the thread's work; callable directly, e.g. by a benchmark)."""
        m = self._models[model]
        values = extract(obs, m.repeats)
        with self._lock:
            was_learning = m.detector.learning is not None
            m.detector.add(values)
            if was_learning and m.detector.learning is None:
                log.info(
                    "monitor: reference for %s learned from its first %d segments", model, m.detector.learned_segments
                )
            if self.calibration is not None and self.calibration.model in ("", m.model) and obs.text.strip():
                words = len(obs.text.split())
                m.wer.add(self.calibration.predict(obs.avg_logprob, obs.no_speech_prob, obs.compression_ratio) * words)
                m.words.add(words)
        self.metrics.observed.labels(model=model).inc()

    def score(self) -> None:
        """Score every model's windows now and publish the results."""
        self._next_score = self.clock() + self.settings.score_interval_seconds
        with self._lock:
            for name, m in self._models.items():
                m.detector.score()
                if m.words.count:
                    m.estimated_wer = float(m.wer.values().sum() / max(m.words.values().sum(), 1.0))
                self._publish(name, m)
        self.metrics.scorings.inc()
        self.scorings_done += 1
        self._update_reference_metrics()

    def _publish(self, model: str, m: _ModelMonitor) -> None:
        metrics = self.metrics
        for feature, scores in m.detector.scores.items():
            for window, score in scores.items():
                labels = {"model": model, "feature": feature, "window": window}
                metrics.score.labels(**labels).set(score.psi)
                metrics.p_value.labels(**labels).set(score.p_value)
                if score.ks is not None:
                    metrics.ks.labels(**labels).set(score.ks)
                if score.wasserstein is not None:
                    metrics.wasserstein.labels(**labels).set(score.wasserstein)
        for feature, on in m.detector.alarms.items():
            metrics.alarm.labels(model=model, feature=feature, side=BY_NAME[feature].side).set(1 if on else 0)
        if not math.isnan(m.estimated_wer):
            metrics.estimated_wer.labels(model=model).set(m.estimated_wer)

    def _update_reference_metrics(self) -> None:
        with self._lock:
            for name, m in self._models.items():
                d = m.detector
                if d.profile is None:
                    self.metrics.reference.labels(model=name, source="learning").set(d.learned_segments)
                    continue
                if d.profile.source == "learned":
                    with contextlib.suppress(KeyError):
                        self.metrics.reference.remove(name, "learning")
                self.metrics.reference.labels(model=name, source=d.profile.source).set(d.profile.segments)

    # -- state for GetInfo and the dashboard -------------------------------------------------

    def states(self) -> list[ModelState]:
        out = []
        with self._lock:
            for name, m in self._models.items():
                d = m.detector
                p = d.profile
                out.append(
                    ModelState(
                        model=name,
                        version=d.model.version,
                        reference_source=d.reference_source,
                        reference_origin=p.origin if p is not None else "",
                        reference_segments=p.segments if p is not None else d.learned_segments,
                        learn_segments=self.settings.learn_segments,
                        profile_created=p.created if p is not None else "",
                        estimated_wer=m.estimated_wer,
                        features=tuple(d.states()),
                    )
                )
        return out

    def drifting(self, model: str) -> list[str]:
        """The features of ``model`` whose alarm is on."""
        with self._lock:
            return self._models[model].detector.firing()

    def profile(self, model: str) -> ReferenceProfile | None:
        with self._lock:
            return self._models[model].detector.profile

    def collected_profile(self, model: str, source: str, origin: str) -> ReferenceProfile:
        """The profile of every segment gathered so far (a monitor made with ``collect=True``)."""
        with self._lock:
            return self._models[model].detector.learned_profile(source, origin)
