"""Drift of the edge's own input: the monitoring detector, run on the edge for inputs no recognizer watches.

:class:`EdgeDrift` (one per edge process) keeps a :class:`~voxrelay.monitoring.detector.DriftDetector`
over the edge features (:data:`~voxrelay.monitoring.features.EDGE_FEATURES`): each segment the VAD and
segmenter close (its audio and the VAD's figures), and each ``stream_seconds`` chunk of the input
stream, which keeps coming when no segment closes (a muted microphone, noise the VAD rejects).
Scoring needs numpy alone (PSI, the KS statistic and its p-value bound) and runs every
``score_interval_seconds`` of input audio, on the segmenter thread, between blocks.

The reference is an edge profile (``voxrelay profile --edge``, made for the same VAD) or, without
one, the first ``learn_segments`` segments; the edge says which when it starts, and says each alarm
as it goes on and off. :meth:`EdgeDrift.session` gives the observer one session reports through.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.edge.agent import VadSettings
from voxrelay.edge.capture.files import WavSource
from voxrelay.edge.events import AudioBlock, SegmentAudio, SegmentClosed, SegmentEvent, SegmentOpened, VadSummary
from voxrelay.edge.metrics import EdgeMetrics
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.vad.speech import SegmenterStats, SpeechSegmenter
from voxrelay.errors import AudioError, InvalidArgument
from voxrelay.monitoring.detector import DriftDetector, bound_scorer
from voxrelay.monitoring.features import EDGE_BY_NAME, FRAME, SILENCE_DBFS, audio_features
from voxrelay.monitoring.profile import MIN_SEGMENTS, ModelRef, ReferenceProfile, load_profile
from voxrelay.monitoring.thresholds import EdgeDriftSettings

# A chunk's bandwidth counts only when the VAD called at least this share of its frames speech: the
# high band of pauses is the room's, not the line's.
BANDWIDTH_SPEECH_RATIO = 0.5
LOUD_PERCENTILE = 90.0
EDGE_BACKEND = "edge VAD"


def segment_values(samples: np.ndarray, stats: VadSummary, duration: float) -> dict[str, float | str]:
    """The input features of one closed segment (int16 samples and the VAD's summary of it)."""
    values: dict[str, float | str] = {
        "duration_seconds": duration,
        "speech_ratio": stats.speech_ratio,
        "vad_probability": stats.mean_speech_probability,
        "level_dbfs": max(stats.level_dbfs, SILENCE_DBFS),
        "clipping_ratio": stats.clipping_ratio,
    }
    measured = audio_features(samples.astype(np.float32) / 32768.0)
    for name in ("snr_db", "bandwidth_db"):
        if name in measured:
            values[name] = measured[name]
    return values


def chunk_values(samples: np.ndarray, speech_ratio: float) -> dict[str, float | str]:
    """The stream features of one chunk of input (int16 samples; the VAD's share of speech frames in it).

    Its level is that of its loud frames (the 90th percentile of its 20 ms frames): the RMS of a chunk
    swings with how much of it is pause, which the short window then mistakes for a gain change.
    """
    x = samples.astype(np.float32) / 32768.0
    measured = audio_features(x, bandwidth=speech_ratio >= BANDWIDTH_SPEECH_RATIO)
    values: dict[str, float | str] = {"stream_speech_ratio": speech_ratio}
    values.update({f"stream_{name}": value for name, value in measured.items()})
    frames = x[: x.size - x.size % FRAME].reshape(-1, FRAME)
    if frames.shape[0]:
        energy = np.einsum("ij,ij->i", frames, frames) / FRAME
        loud = float(np.percentile(energy, LOUD_PERCENTILE))
        values["stream_level_dbfs"] = max(10.0 * math.log10(loud), SILENCE_DBFS) if loud > 0 else SILENCE_DBFS
    return values


def edge_model(vad: str) -> ModelRef:
    return ModelRef(vad, "", EDGE_BACKEND)


def load_edge_profile(path: str, vad: str) -> ReferenceProfile:
    """An edge profile for the ``vad`` this edge runs (another scope or VAD is refused, saying which)."""
    profile = load_profile(path, scope="edge")
    if profile.model.name != vad:
        raise InvalidArgument(
            f"--drift-profile {path}: made for the {profile.model.name} VAD, but this edge runs {vad}; make one "
            f"with `voxrelay profile --edge --vad {vad}` or run the edge with --vad {profile.model.name}"
        )
    return profile


class EdgeDrift:
    """The edge's input drift detector, its metrics, and what it says (``say``: one line to the user)."""

    def __init__(
        self,
        vad: str,
        settings: EdgeDriftSettings,
        profile: ReferenceProfile | None = None,
        metrics: EdgeMetrics | None = None,
        say: Callable[[str], None] | None = None,
        collect: bool = False,
    ) -> None:
        """``collect``: only gather every segment's and chunk's features (for ``voxrelay profile --edge``)."""
        self.settings = settings
        self.metrics = metrics
        self.say = say or (lambda _: None)
        self.collect = collect
        self.detector = DriftDetector(
            edge_model(vad),
            settings,
            profile,
            learn_forever=True,
            table=EDGE_BY_NAME,
            scorer=bound_scorer,
            scope="edge",
        )
        self.audio_seconds = 0.0
        self.cpu_seconds = 0.0  # the detector's own time (features, windows, scoring), on any thread
        self.scorings = 0
        self._next_score = settings.score_interval_seconds
        self._on: set[str] = set()
        self._lock = threading.Lock()
        if metrics is not None:
            for feature in self.detector.features:
                metrics.drift_alarm.labels(feature=feature).set(0)
        if not collect:
            if profile is not None:
                self.say(
                    f"edge drift: reference {profile.source} profile of {profile.segments} segments "
                    f"({profile.origin or 'no origin given'}, {profile.created})"
                )
            else:
                self.say(
                    f"edge drift: no --drift-profile; learning the reference from the first "
                    f"{settings.learn_segments} segments"
                )
        self._publish_reference()

    def session(self) -> EdgeDriftSession:
        return EdgeDriftSession(self)

    # -- the segmenter thread --------------------------------------------------------------------

    def add_segment(self, values: dict[str, float | str]) -> None:
        with self._lock:
            self.detector.add(values)
            d = self.detector
            if self.collect or d.learning is None:
                return
            if d.learned_segments >= self.settings.learn_segments:
                d.finish_learning(f"the first {d.learned_segments} segments ({self.audio_seconds:.0f} s of input)")
                self.say(f"edge drift: reference learned from {d.profile.origin if d.profile else ''}")
            self._publish_reference()

    def add_chunk(self, values: dict[str, float | str], seconds: float) -> None:
        """One chunk of the input stream, ``seconds`` long: the audio clock scoring follows."""
        with self._lock:
            self.detector.add(values, segment=False)
            self.audio_seconds += seconds
            if self.collect or self.audio_seconds < self._next_score:
                return
            self._next_score = self.audio_seconds + self.settings.score_interval_seconds
            self.score()

    def score(self) -> None:
        """Score every window now, publish, and say the alarms that went on or off."""
        d = self.detector
        d.score()
        self.scorings += 1
        now_on = set(d.firing())
        for feature in sorted(now_on - self._on):
            self.say(f"edge drift: {self._describe(feature)}")
        for feature in sorted(self._on - now_on):
            self.say(f"edge drift: {feature} is back within its reference")
        self._on = now_on
        self._publish()

    def _describe(self, feature: str) -> str:
        d = self.detector
        scores = d.scores.get(feature, {})
        ref = d.profile.features.get(feature) if d.profile is not None else None
        window, worst = max(scores.items(), key=lambda kv: kv[1].psi)
        return (
            f"{feature} drifts from the reference ({window} window: PSI {worst.psi:.2f}, p <= {worst.p_value:.1e}; "
            f"median {worst.current:.3g}, reference {ref.median if ref is not None else math.nan:.3g})"
        )

    def _publish(self) -> None:
        m = self.metrics
        if m is None:
            return
        for feature, scores in self.detector.scores.items():
            for window, score in scores.items():
                m.drift_score.labels(feature=feature, window=window).set(score.psi)
        for feature, on in self.detector.alarms.items():
            m.drift_alarm.labels(feature=feature).set(1 if on else 0)

    def _publish_reference(self) -> None:
        m = self.metrics
        if m is None:
            return
        d = self.detector
        if d.profile is None:
            m.drift_reference.labels(source="learning").set(d.learned_segments)
            return
        with contextlib.suppress(KeyError):
            m.drift_reference.remove("learning")
        m.drift_reference.labels(source=d.profile.source).set(d.profile.segments)

    # -- state ---------------------------------------------------------------------------------

    def firing(self) -> list[str]:
        with self._lock:
            return self.detector.firing()

    def collected_profile(self, source: str, origin: str) -> ReferenceProfile:
        """The profile of everything gathered so far (an EdgeDrift made with ``collect=True``)."""
        with self._lock:
            return self.detector.learned_profile(source, origin)


class EdgeDriftSession:
    """One session's feed into :class:`EdgeDrift` (a :class:`~voxrelay.edge.observe.SessionObserver`)."""

    def __init__(self, drift: EdgeDrift) -> None:
        self.drift = drift
        self.chunk_samples = round(drift.settings.stream_seconds * SAMPLE_RATE)
        self._chunk: list[np.ndarray] = []
        self._held = 0
        self._chunk_stats = (0, 0)  # the segmenter's (frames, speech frames) at the chunk's start
        self._segment: list[np.ndarray] = []
        self._offset = 0.0

    def _timed(self, began: float) -> None:
        self.drift.cpu_seconds += time.thread_time() - began

    def block(self, block: AudioBlock) -> None:
        self._chunk.append(block.samples)
        self._held += int(block.samples.shape[0])

    def segmented(self, stats: SegmenterStats, seconds: float) -> None:
        """After each block the segmenter took: a full chunk (the VAD has classified it) is measured."""
        if self._held < self.chunk_samples:
            return
        began = time.thread_time()
        audio = np.concatenate(self._chunk)
        frames, speech = stats.frames - self._chunk_stats[0], stats.speech_frames - self._chunk_stats[1]
        self._chunk_stats = (stats.frames, stats.speech_frames)
        self._chunk, self._held = [], 0
        self.drift.add_chunk(chunk_values(audio, speech / frames if frames > 0 else 0.0), audio.size / SAMPLE_RATE)
        self._timed(began)

    def produced(self, event: SegmentEvent) -> None:
        if isinstance(event, SegmentOpened):
            self._segment, self._offset = [], event.offset
        elif isinstance(event, SegmentAudio):
            self._segment.append(event.samples)
        elif isinstance(event, SegmentClosed):
            began = time.thread_time()
            samples = np.concatenate(self._segment) if self._segment else np.zeros(0, dtype=np.int16)
            self._segment = []
            self.drift.add_segment(segment_values(samples, event.stats, max(0.0, event.end - self._offset)))
            self._timed(began)

    def sent(self, event: SegmentEvent) -> None:
        pass

    def result(self, result: SegmentResult) -> None:
        pass


def measure_blocks(session: EdgeDriftSession, segmenter: SpeechSegmenter, blocks: Iterable[AudioBlock]) -> int:
    """Run ``blocks`` through ``segmenter`` with ``session`` observing, as a running edge does (no uplink);
    returns the segments closed."""
    closed = 0
    for block in blocks:
        session.block(block)
        events = segmenter.feed(block)
        session.segmented(segmenter.stats(), 0.0)
        for event in events:
            session.produced(event)
            closed += isinstance(event, SegmentClosed)
    for event in segmenter.flush():
        session.produced(event)
        closed += isinstance(event, SegmentClosed)
    return closed


def profile_edge_files(
    files: Sequence[Path], vad: VadSettings, settings: EdgeDriftSettings, kind: str, origin: str
) -> ReferenceProfile:
    """An edge profile: ``files`` through the edge's VAD and segmenter, measured as a running edge measures
    them (``voxrelay profile --edge``; no recognizer needed). An unreadable file is said and left out."""
    drift = EdgeDrift(vad.vad, settings, collect=True)
    for path in files:
        try:
            measure_blocks(drift.session(), vad.make_segmenter(), WavSource(str(path)).blocks())
        except AudioError as err:
            print(f"voxrelay profile: {path}: {err.message} (left out)", file=sys.stderr, flush=True)
    profile = drift.collected_profile(kind, origin)
    if profile.segments < MIN_SEGMENTS:
        raise InvalidArgument(
            f"{origin}: only {profile.segments} speech segments; an edge reference needs at least {MIN_SEGMENTS} "
            "(give more audio)"
        )
    return profile
