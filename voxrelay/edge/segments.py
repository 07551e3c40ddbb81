"""VAD + segmenter + audio buffers: source blocks in, segment events out.

:class:`SpeechSegmenter` re-frames incoming :class:`AudioBlock` s to its VAD's frame size (any block size
works), asks the VAD about each frame, drives the pure :class:`Segmenter` and turns its actions into
:class:`SegmentOpened` / :class:`SegmentAudio` / :class:`SegmentClosed` events. While no segment is open it
keeps only the few frames a later onset may claim as pre-roll, so memory stays bounded on any input.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.edge.events import (
    AudioBlock,
    SegmentAudio,
    SegmentClosed,
    SegmentEvent,
    SegmentOpened,
    VadSummary,
)
from voxrelay.edge.segmenter import Close, Emit, Open, Segmenter, SegmenterSettings
from voxrelay.edge.vad import Vad
from voxrelay.errors import InvalidArgument

_SILENCE_DBFS = -120.0
"""The level reported for digital silence."""


@dataclass(frozen=True)
class SegmenterStats:
    """Running counters of a :class:`SpeechSegmenter` (a snapshot; totals since it was made)."""

    frames: int = 0
    speech_frames: int = 0
    segments: int = 0
    forced_splits: int = 0
    audio_seconds: float = 0.0
    speech_seconds: float = 0.0
    segment_seconds: float = 0.0


@dataclass
class _Counters:
    """The mutable tallies behind :class:`SegmenterStats`."""

    frames: int = 0
    speech_frames: int = 0
    segments: int = 0
    forced_splits: int = 0
    audio_samples: int = 0
    segment_seconds: float = 0.0


@dataclass
class _Frame:
    samples: np.ndarray
    probability: float
    is_speech: bool
    square_sum: float  # of the samples as fractions of full scale
    clipped: int  # samples at full scale


@dataclass
class _Accumulator:
    """What the VAD saw in the open segment so far."""

    frames: int = 0
    speech_frames: int = 0
    probability_sum: float = 0.0
    square_sum: float = 0.0
    clipped: int = 0
    samples: int = 0

    def add(self, frame: _Frame) -> None:
        self.frames += 1
        self.speech_frames += frame.is_speech
        self.probability_sum += frame.probability
        self.square_sum += frame.square_sum
        self.clipped += frame.clipped
        self.samples += frame.samples.shape[0]


class SpeechSegmenter:
    """Cuts a 16 kHz int16 audio stream into speech segments with ``vad``.

    ``settings.frame_seconds`` is replaced by the VAD's frame duration. Feed blocks in source order with
    :meth:`feed`; call :meth:`flush` at the end of the stream to close an open segment. After a flush the
    next block starts a new stream (new time origin, VAD reset); sequence numbers keep counting.
    """

    def __init__(self, vad: Vad, settings: SegmenterSettings | None = None) -> None:
        self.vad = vad
        self._frame_samples = int(vad.frame_samples)
        if self._frame_samples <= 0:
            raise InvalidArgument(f"{vad.name} VAD: frame_samples must be positive, got {vad.frame_samples}")
        self.settings = dataclasses.replace(
            settings or SegmenterSettings(), frame_seconds=self._frame_samples / SAMPLE_RATE
        )
        self._frame_seconds = self.settings.frame_seconds
        self._next_sequence = 0
        self._counters = _Counters()
        self._stats = SegmenterStats()
        self._start_stream()

    def _start_stream(self) -> None:
        self._segmenter = Segmenter(self.settings)
        self._origin: float | None = None  # source time of the stream's first sample
        self._pending = np.zeros(0, dtype=np.int16)  # samples short of a whole frame
        self._frames: deque[_Frame] = deque()  # audio kept for the segmenter, frame self._first onwards
        self._first = 0
        self._sequence = -1  # of the open segment
        self._onset = 0
        self._acc = _Accumulator()
        self._segment_start = 0  # first frame of the open segment
        self._emitted = 0  # frames of the open segment before this one have been sent
        self._last_samples = self._frame_samples  # length of the newest frame (shorter after a flush)

    def stats(self) -> SegmenterStats:
        """The running counters as of the last :meth:`feed` or :meth:`flush` (a frozen snapshot).

        Safe to call from another thread (e.g. a metrics collector): the snapshot is replaced whole.
        """
        return self._stats

    @property
    def buffered_seconds(self) -> float:
        """Audio held in memory: the pre-roll while idle, the held-back window while a segment is open."""
        return (len(self._frames) * self._frame_samples + self._pending.shape[0]) / SAMPLE_RATE

    def feed(self, block: AudioBlock) -> list[SegmentEvent]:
        """Take the next block of the stream; returns the events it completes."""
        samples = block.samples
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
            raise InvalidArgument("an AudioBlock must hold a 1-D numpy int16 array of 16 kHz mono samples")
        if self._origin is None:
            self._origin = float(block.start) - self._pending.shape[0] / SAMPLE_RATE
        self._counters.audio_samples += samples.shape[0]
        data = np.concatenate([self._pending, samples]) if self._pending.shape[0] else samples
        whole = data.shape[0] // self._frame_samples * self._frame_samples
        events: list[SegmentEvent] = []
        for i in range(0, whole, self._frame_samples):
            events += self._process(data[i : i + self._frame_samples].copy(), self._frame_samples)
        self._pending = data[whole:].copy()
        self._publish()
        return events

    def flush(self) -> list[SegmentEvent]:
        """End of the stream: classify the last partial frame and close an open segment."""
        events: list[SegmentEvent] = []
        if self._pending.shape[0]:
            length = self._pending.shape[0]
            frame = np.zeros(self._frame_samples, dtype=np.int16)
            frame[:length] = self._pending
            events += self._process(frame, length)
        events += self._apply(self._segmenter.flush())
        self.vad.reset()
        self._start_stream()
        self._publish()
        return events

    # -- internals ---------------------------------------------------------------------------

    def _process(self, frame: np.ndarray, length: int) -> list[SegmentEvent]:
        probability = float(self.vad.speech_probability(frame))
        is_speech = probability >= self.vad.threshold
        samples = frame[:length]
        x = samples.astype(np.float64)
        square_sum = float(np.dot(x, x)) / 32768.0**2
        clipped = 0
        if samples.max() >= 32767 or samples.min() <= -32767:
            clipped = int(np.count_nonzero((samples >= 32767) | (samples <= -32767)))
        self._frames.append(_Frame(samples, probability, is_speech, square_sum, clipped))
        energy = square_sum / length
        self._last_samples = length
        self._counters.frames += 1
        self._counters.speech_frames += is_speech
        events = self._apply(self._segmenter.process(is_speech, energy))
        retain = self._segmenter.retain_from
        while self._first < retain and self._frames:
            self._frames.popleft()
            self._first += 1
        return events

    def _time(self, frame_index: int) -> float:
        assert self._origin is not None
        samples = frame_index * self._frame_samples
        if frame_index == self._segmenter.frame and self._last_samples != self._frame_samples:
            samples -= self._frame_samples - self._last_samples
        return self._origin + samples / SAMPLE_RATE

    def _apply(self, actions: list[Open | Emit | Close]) -> list[SegmentEvent]:
        events: list[SegmentEvent] = []
        for action in actions:
            if isinstance(action, Open):
                self._sequence = self._next_sequence
                self._next_sequence += 1
                self._onset = action.onset_frame
                self._acc = _Accumulator()
                self._emitted = action.start_frame
                self._segment_start = action.start_frame
                events.append(SegmentOpened(self._sequence, self._time(action.start_frame)))
            elif isinstance(action, Emit):
                chunk = self._take(self._emitted, action.up_to_frame)
                self._emitted = action.up_to_frame
                if chunk.shape[0]:
                    events.append(SegmentAudio(self._sequence, chunk))
            else:
                events.append(self._closed(action))
        return events

    def _take(self, start: int, stop: int) -> np.ndarray:
        """The samples of frames ``start .. stop``; adds them to the open segment's summary."""
        if start < self._first:
            raise AssertionError(f"frame {start} was dropped before it was emitted (kept from {self._first})")
        parts = []
        for i in range(start - self._first, stop - self._first):
            frame = self._frames[i]
            self._acc.add(frame)
            parts.append(frame.samples)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def _closed(self, action: Close) -> SegmentClosed:
        acc = self._acc
        frames = max(acc.frames, 1)
        level = 10.0 * math.log10(acc.square_sum / acc.samples) if acc.samples and acc.square_sum > 0 else _SILENCE_DBFS
        end = self._time(action.end_frame)
        speech_end = self._time(action.speech_end_frame)
        start = self._time(self._segment_start)
        summary = VadSummary(
            vad=self.vad.name,
            speech_ratio=acc.speech_frames / frames,
            mean_speech_probability=acc.probability_sum / frames,
            level_dbfs=max(level, _SILENCE_DBFS),
            clipping_ratio=acc.clipped / acc.samples if acc.samples else 0.0,
            forced_split=action.forced,
            pre_roll_seconds=max(0.0, self._time(self._onset) - start),
            hangover_seconds=max(0.0, end - speech_end),
        )
        self._counters.segments += 1
        self._counters.forced_splits += action.forced
        self._counters.segment_seconds += end - start
        return SegmentClosed(self._sequence, end, speech_end, summary)

    def _publish(self) -> None:
        c = self._counters
        self._stats = SegmenterStats(
            frames=c.frames,
            speech_frames=c.speech_frames,
            segments=c.segments,
            forced_splits=c.forced_splits,
            audio_seconds=c.audio_samples / SAMPLE_RATE,
            speech_seconds=c.speech_frames * self._frame_seconds,
            segment_seconds=c.segment_seconds,
        )
