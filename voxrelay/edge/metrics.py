"""The edge agent's Prometheus metrics, defined once against an injected registry.

:class:`EdgeMetrics` holds the metrics; :meth:`EdgeMetrics.session` gives the observer that one session
reports through (see :mod:`voxrelay.edge.observe`). Three kinds:

- **software**: VAD time per frame, the segment queue at the edge, end-to-end latency from the end of
  speech (the arrival of the segment's last speech frame) to its result with its breakdown by stage
  (the endpoint wait until the segment closes, then edge queue, network, server queue, inference),
  segments in flight;
- **input**: input level and clipping, dropped and overflowed capture frames, speech ratio, segment
  durations, forced splits;
- **output** (as the edge sees it): results by status, empty results, and a VAD false-positive proxy:
  segments the recognizer judged to hold no speech;
- **drift** of the edge's own input (:mod:`voxrelay.edge.drift`, when it runs): scores and alarms per
  feature, and the reference behind them.

Labels stay low-cardinality (``vad``, ``stage``, ``status``); never a device, session or segment id.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voxrelay import SAMPLE_RATE
from voxrelay.edge.events import AudioBlock, SegmentAudio, SegmentClosed, SegmentEvent, SegmentOpened
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.vad.speech import SegmenterStats
from voxrelay.exposition import ExportSettings, exported, new_registry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FRAME_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.03)
DURATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 60.0)
LEVEL_BUCKETS = (-70.0, -60.0, -50.0, -45.0, -40.0, -35.0, -30.0, -25.0, -20.0, -15.0, -10.0, -5.0, 0.0)

SILENCE_DBFS = -120.0
LEVEL_WINDOW_SECONDS = 1.0
# Whisper's rule for a segment without speech: no_speech_prob above 0.6 with avg_logprob below -1.
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
STAGES = ("endpoint", "edge_queue", "network", "server_queue", "inference")


def judged_non_speech(result: SegmentResult) -> bool:
    """True when the recognizer found no speech in a segment the VAD sent (a likely VAD false positive)."""
    if result.error:
        return False
    if not result.text:
        return True
    return result.no_speech_prob >= NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD


def stage_breakdown(result: SegmentResult, edge_queue: float) -> dict[str, float]:
    """Seconds per stage from the end of speech to the result; they add up to ``result.latency_seconds``.

    ``endpoint``: from the end of speech to the segment's close (the endpoint pause and the VAD's lag);
    ``edge_queue``: from the close to the uplink taking it (measured by the caller); ``network``: the rest
    of the time from the close to the result that the server did not spend queueing or recognising.
    """
    endpoint = max(0.0, result.latency_seconds - result.close_to_result_seconds)
    edge_queue = min(max(0.0, edge_queue), result.close_to_result_seconds)
    server_queue = max(0.0, result.queue_wait_seconds)
    inference = max(0.0, result.inference_seconds)
    network = result.latency_seconds - endpoint - edge_queue - server_queue - inference
    return {
        "endpoint": endpoint,
        "edge_queue": edge_queue,
        "network": max(0.0, network),
        "server_queue": server_queue,
        "inference": inference,
    }


class EdgeMetrics:
    """Every metric of the edge agent, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        # Software.
        self.vad_frame = Histogram(
            "voxrelay_vad_frame_seconds",
            "Time to classify and segment one VAD frame",
            ["vad"],
            buckets=FRAME_BUCKETS,
            registry=r,
        )
        self.segment_queue = Histogram(
            "voxrelay_edge_segment_queue_seconds",
            "From a segment's close at the segmenter to the uplink taking it (backpressure at the edge)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "voxrelay_e2e_latency_seconds",
            "From the end of speech (the arrival of a segment's last speech frame) to its final result at the edge",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "voxrelay_e2e_stage_seconds",
            "End-to-end latency by stage: endpoint (end of speech to the segment's close), edge_queue, network "
            "(round trip less server time), server_queue, inference",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "voxrelay_edge_segments_in_flight", "Segments sent whose result has not arrived", registry=r
        )
        self.queue_depth = Gauge(
            "voxrelay_edge_queue_depth",
            "Segment events made by the segmenter and not yet taken by the uplink",
            registry=r,
        )
        self.results = Counter(
            "voxrelay_edge_results_total", "Segment results received, by status (ok, error)", ["status"], registry=r
        )
        # Input.
        self.audio = Counter("voxrelay_edge_audio_seconds_total", "Seconds of source audio read", registry=r)
        self.sent_audio = Counter(
            "voxrelay_edge_sent_audio_seconds_total", "Seconds of segment audio sent to the recognizer", registry=r
        )
        self.level = Gauge("voxrelay_edge_input_level_dbfs", "RMS level of the last second of input, dBFS", registry=r)
        self.clipping = Gauge(
            "voxrelay_edge_clipping_ratio", "Fraction of samples at full scale in the last second of input", registry=r
        )
        self.clipped = Counter("voxrelay_edge_clipped_samples_total", "Input samples at full scale", registry=r)
        self.overflows = Counter(
            "voxrelay_edge_input_overflows_total",
            "Capture callbacks in which the audio device reported an overflow (audio lost)",
            registry=r,
        )
        self.dropped = Counter(
            "voxrelay_edge_dropped_frames_total",
            "Captured frames dropped because the pipeline fell behind (missing audio)",
            registry=r,
        )
        self.frames = Counter("voxrelay_vad_frames_total", "Frames classified by the VAD", ["vad"], registry=r)
        self.speech_frames = Counter(
            "voxrelay_vad_speech_frames_total", "Frames the VAD classified as speech", ["vad"], registry=r
        )
        self.speech_ratio = Gauge(
            "voxrelay_vad_speech_ratio",
            "Fraction of the current session's frames classified as speech",
            ["vad"],
            registry=r,
        )
        self.segments = Counter(
            "voxrelay_vad_segments_total", "Speech segments the segmenter closed", ["vad"], registry=r
        )
        self.forced = Counter(
            "voxrelay_vad_forced_splits_total",
            "Segments cut at the maximum segment length rather than at a pause",
            ["vad"],
            registry=r,
        )
        self.duration = Histogram(
            "voxrelay_vad_segment_duration_seconds",
            "Duration of the segments sent",
            ["vad"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.segment_level = Histogram(
            "voxrelay_vad_segment_level_dbfs",
            "RMS level of each segment sent, dBFS",
            ["vad"],
            buckets=LEVEL_BUCKETS,
            registry=r,
        )
        # Output, as seen at the edge.
        self.empty = Counter(
            "voxrelay_edge_empty_results_total", "Results without text (nothing recognised)", registry=r
        )
        self.false_positives = Counter(
            "voxrelay_vad_false_positive_segments_total",
            "Segments the recognizer judged non-speech (empty, or no_speech_prob >= 0.6 with avg_logprob "
            "< -1): a proxy for VAD false positives",
            ["vad"],
            registry=r,
        )
        # Drift of the edge's own input.
        self.drift_score = Gauge(
            "voxrelay_edge_drift_score",
            "Edge input drift score: PSI of the window against the edge reference's fixed bins",
            ["feature", "window"],
            registry=r,
        )
        self.drift_alarm = Gauge(
            "voxrelay_edge_drift_alarm",
            "1 while an edge input feature drifts from its reference",
            ["feature"],
            registry=r,
        )
        self.drift_reference = Gauge(
            "voxrelay_edge_drift_reference_segments",
            "Segments behind the edge's drift reference: source is profile, learned, or learning (the count so far)",
            ["source"],
            registry=r,
        )
        self._capture_lock = threading.Lock()
        self._capture_seen = (0, 0)

    def session(self, vad: str) -> SessionMetrics:
        """The observer for one session run with the ``vad`` detector."""
        return SessionMetrics(self, vad)

    def capture(self, overflows: int, dropped_frames: int) -> None:
        """Report a capture device's running totals (counted once, however often this is called)."""
        with self._capture_lock:
            seen_overflows, seen_dropped = self._capture_seen
            self.overflows.inc(max(0, overflows - seen_overflows))
            self.dropped.inc(max(0, dropped_frames - seen_dropped))
            self._capture_seen = (max(overflows, seen_overflows), max(dropped_frames, seen_dropped))


class SessionMetrics:
    """Records one session into :class:`EdgeMetrics` (a :class:`~voxrelay.edge.observe.SessionObserver`)."""

    def __init__(self, metrics: EdgeMetrics, vad: str) -> None:
        self.m = metrics
        self.vad = vad
        self._last = SegmenterStats()
        self._window: deque[tuple[int, float, int]] = deque()  # (samples, square sum, clipped) per block
        self._window_samples = 0
        self._opened: dict[int, float] = {}  # sequence -> segment offset (source seconds)
        self._closed_at: dict[int, float] = {}  # sequence -> perf_counter at the segmenter's close
        self._edge_queue: dict[int, float] = {}  # sequence -> seconds in the edge queue
        self._lock = threading.Lock()
        # Every series this session can touch starts at zero, so that a scrape shows it before it moves.
        for counter in (
            metrics.frames,
            metrics.speech_frames,
            metrics.segments,
            metrics.forced,
            metrics.false_positives,
        ):
            counter.labels(vad=vad)
        for status in ("ok", "error"):
            metrics.results.labels(status=status)

    # -- segmenter thread ----------------------------------------------------------------------

    def block(self, block: AudioBlock) -> None:
        samples = block.samples
        n = int(samples.shape[0])
        if not n:
            return
        x = samples.astype(np.float64)
        clipped = int(np.count_nonzero((samples >= 32767) | (samples <= -32767)))
        self._window.append((n, float(np.dot(x, x)), clipped))
        self._window_samples += n
        while self._window_samples - self._window[0][0] >= LEVEL_WINDOW_SECONDS * SAMPLE_RATE:
            self._window_samples -= self._window.popleft()[0]
        total = sum(w[1] for w in self._window)
        mean_square = total / self._window_samples / 32768.0**2
        level = 10.0 * math.log10(mean_square) if mean_square > 0 else SILENCE_DBFS
        self.m.level.set(max(level, SILENCE_DBFS))
        self.m.clipping.set(sum(w[2] for w in self._window) / self._window_samples)
        self.m.audio.inc(n / SAMPLE_RATE)
        if clipped:
            self.m.clipped.inc(clipped)

    def segmented(self, stats: SegmenterStats, seconds: float) -> None:
        frames = stats.frames - self._last.frames
        if frames > 0:
            self.m.vad_frame.labels(vad=self.vad).observe(seconds / frames)
            self.m.frames.labels(vad=self.vad).inc(frames)
            self.m.speech_frames.labels(vad=self.vad).inc(stats.speech_frames - self._last.speech_frames)
        if stats.frames:
            self.m.speech_ratio.labels(vad=self.vad).set(stats.speech_frames / stats.frames)
        self._last = stats

    def produced(self, event: SegmentEvent) -> None:
        self.m.queue_depth.inc()
        if isinstance(event, SegmentClosed):
            with self._lock:
                self._closed_at[event.sequence] = time.perf_counter()

    # -- event loop ----------------------------------------------------------------------------

    def sent(self, event: SegmentEvent) -> None:
        self.m.queue_depth.dec()
        if isinstance(event, SegmentOpened):
            self._opened[event.sequence] = event.offset
        elif isinstance(event, SegmentAudio):
            self.m.sent_audio.inc(event.samples.shape[0] / SAMPLE_RATE)
        elif isinstance(event, SegmentClosed):
            with self._lock:
                closed_at = self._closed_at.pop(event.sequence, None)
            queued = time.perf_counter() - closed_at if closed_at is not None else 0.0
            self._edge_queue[event.sequence] = queued
            self.m.segment_queue.observe(queued)
            self.m.in_flight.inc()
            self.m.segments.labels(vad=self.vad).inc()
            if event.stats.forced_split:
                self.m.forced.labels(vad=self.vad).inc()
            offset = self._opened.pop(event.sequence, None)
            if offset is not None:
                self.m.duration.labels(vad=self.vad).observe(max(0.0, event.end - offset))
            self.m.segment_level.labels(vad=self.vad).observe(event.stats.level_dbfs)

    def result(self, result: SegmentResult) -> None:
        edge_queue = self._edge_queue.pop(result.sequence, None)
        if edge_queue is not None:
            self.m.in_flight.dec()
        if result.error:
            self.m.results.labels(status="error").inc()
            return
        self.m.results.labels(status="ok").inc()
        if not result.text:
            self.m.empty.inc()
        if judged_non_speech(result):
            self.m.false_positives.labels(vad=self.vad).inc()
        if result.duplicate:
            return  # a cached answer: its server timings belong to the first delivery
        stages = stage_breakdown(result, edge_queue or 0.0)
        for stage, seconds in stages.items():
            self.m.stage.labels(stage=stage).observe(seconds)
        self.m.e2e.observe(sum(stages.values()))


@contextlib.contextmanager
def exported_edge_metrics(settings: ExportSettings) -> Iterator[EdgeMetrics | None]:
    """Edge metrics on a fresh registry, served and/or written as ``settings`` say (None when neither)."""
    if not settings.enabled:
        yield None
        return
    registry = new_registry()
    with exported(registry, settings) as exporter:
        if exporter is not None and exporter.port is not None:
            print(f"metrics on http://{settings.host}:{exporter.port}/metrics", file=sys.stderr, flush=True)
        yield EdgeMetrics(registry)
