"""VAD + segmenter + audio buffers: source blocks in, segment events out.

:class:`SpeechSegmenter` re-frames incoming :class:`AudioBlock` s to its VAD's frame size (any block size
works), asks the VAD about each frame, drives the pure :class:`Segmenter` and turns its actions into
:class:`SegmentOpened` / :class:`SegmentAudio` / :class:`SegmentClosed` events. While no segment is open it
keeps only the few frames a later onset may claim as pre-roll, so memory stays bounded on any input.

It works a block at a time: the block's whole frames go to the VAD in one call, their energies are
computed together and the segmenter runs over them in one pass, so the cost per frame falls with the
block size (1 s blocks from a file are several times cheaper per frame than 20 ms live blocks). The
events do not depend on the block size.
"""

from __future__ import annotations

import dataclasses
import math
import time
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
    SegmentPaused,
    VadSummary,
)
from voxrelay.edge.vad.detectors import Vad, frame_probabilities, release_threshold, speech_verdicts
from voxrelay.edge.vad.segmenter import Action, Close, Emit, Open, Pause, Segmenter, SegmenterSettings
from voxrelay.errors import InvalidArgument

_SILENCE_DBFS = -120.0
"""The level reported for digital silence."""

_LIVE_PACE = 1.5
_LIVE_LEAD_SECONDS = 1.0
"""A segment whose audio came more than ``_LIVE_PACE`` times faster than real time (beyond what the
first block can hold) is read from a file at full speed: its pauses are not reported."""

_CLIPPED = 32767
"""A sample at or beyond this magnitude counts as clipped."""


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
class _Accumulator:
    """What the VAD saw in the open segment so far."""

    frames: int = 0
    speech_frames: int = 0
    probability_sum: float = 0.0
    square_sum: float = 0.0  # of the int16 samples (an exact integer)
    clipped: int = 0
    samples: int = 0


class _Retained:
    """Frames ``first .. end`` of the stream: their audio and VAD figures, in contiguous arrays.

    Rows are appended a block at a time and dropped from the front; the arrays are compacted or grown
    when the end reaches their capacity (amortised: each row is copied a bounded number of times).
    """

    def __init__(self, frame_samples: int, capacity: int = 64) -> None:
        self.frame_samples = frame_samples
        self.first = 0  # stream index of the oldest retained frame
        self.count = 0
        self._row = 0  # array row of frame ``first``
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self.audio = np.zeros((capacity, self.frame_samples), dtype=np.int16)
        self.probability = np.zeros(capacity, dtype=np.float64)
        self.speech = np.zeros(capacity, dtype=bool)
        self.square = np.zeros(capacity, dtype=np.float64)  # sums of squared int16 samples (exact integers)
        self.clipped = np.zeros(capacity, dtype=np.int64)

    def _columns(self) -> tuple[np.ndarray, ...]:
        return self.audio, self.probability, self.speech, self.square, self.clipped

    @property
    def end(self) -> int:
        return self.first + self.count

    def append(
        self, audio: np.ndarray, probability: np.ndarray, speech: np.ndarray, square: np.ndarray, clipped: np.ndarray
    ) -> None:
        n = audio.shape[0]
        rows = self._reserve(n)
        self.audio[rows] = audio
        self.probability[rows] = probability
        self.speech[rows] = speech
        self.square[rows] = square
        self.clipped[rows] = clipped
        self.count += n

    def append_one(self, audio: np.ndarray, probability: float, speech: bool, square: float, clipped: int) -> None:
        """:meth:`append` for a single frame (``audio`` one row)."""
        row = self._reserve(1).start
        self.audio[row] = audio
        self.probability[row] = probability
        self.speech[row] = speech
        self.square[row] = square
        self.clipped[row] = clipped
        self.count += 1

    def _reserve(self, n: int) -> slice:
        """Room for ``n`` more frames: the array rows they go to."""
        capacity = self.audio.shape[0]
        if self._row + self.count + n > capacity:
            live = self._rows(self.first, self.end)
            kept = [column[live].copy() for column in self._columns()]
            if self.count + n > capacity // 2:
                self._allocate(max(2 * capacity, self.count + n))
            for column, values in zip(self._columns(), kept, strict=True):
                column[: self.count] = values
            self._row = 0
        return slice(self._row + self.count, self._row + self.count + n)

    def drop_before(self, frame: int) -> None:
        k = min(max(0, frame - self.first), self.count)
        self._row += k
        self.first += k
        self.count -= k

    def _rows(self, start: int, stop: int) -> slice:
        """The array rows of frames ``start .. stop`` (which must be retained)."""
        if start < self.first or stop > self.end:
            raise AssertionError(f"frames {start}..{stop} are not retained (kept: {self.first}..{self.end})")
        return slice(self._row + start - self.first, self._row + stop - self.first)

    def take(self, start: int, stop: int, acc: _Accumulator, short: int) -> np.ndarray:
        """A copy of the samples of frames ``start .. stop`` (the last one ``short`` samples shorter);
        adds their figures to ``acc``."""
        rows = self._rows(start, stop)
        if stop - start == 1:  # one frame (live blocks): scalars
            row = rows.start
            one = self.audio[row, : self.frame_samples - short].copy()
            acc.frames += 1
            acc.speech_frames += bool(self.speech[row])
            acc.probability_sum += float(self.probability[row])
            acc.square_sum += float(self.square[row])
            acc.clipped += int(self.clipped[row])
            acc.samples += one.shape[0]
            return one
        samples = self.audio[rows].reshape(-1)
        if short:
            samples = samples[: samples.shape[0] - short]
        acc.frames += stop - start
        acc.speech_frames += int(np.count_nonzero(self.speech[rows]))
        total = acc.probability_sum
        for p in self.probability[rows].tolist():  # in frame order: the sum does not depend on the blocks
            total += p
        acc.probability_sum = total
        acc.square_sum += float(self.square[rows].sum())
        acc.clipped += int(self.clipped[rows].sum())
        acc.samples += samples.shape[0]
        return samples.copy()


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
        self._scratch = np.empty((0, self._frame_samples), dtype=np.float64)  # the frames as float64, reused
        self._counters = _Counters()
        self._stats = SegmenterStats()
        self._start_stream()

    def _start_stream(self) -> None:
        self._segmenter = Segmenter(self.settings)
        self._speaking = False  # the last frame was speech (the VAD's hysteresis)
        self._origin: float | None = None  # source time of the stream's first sample
        self._pending = np.zeros(0, dtype=np.int16)  # samples short of a whole frame
        self._frames = _Retained(self._frame_samples)  # audio kept for the segmenter
        self._sequence = -1  # of the open segment
        self._onset = 0
        self._acc = _Accumulator()
        self._segment_start = 0  # first frame of the open segment
        self._emitted = 0  # frames of the open segment before this one have been sent
        self._last_samples = self._frame_samples  # length of the newest frame (shorter after a flush)
        # (frames classified once a block was taken, perf_counter when it arrived), oldest first: when
        # the audio of each frame reached the edge, for latency from the end of speech.
        self._arrivals: deque[tuple[int, float]] = deque()
        self._fed_at = time.perf_counter()  # when the last block arrived

    def stats(self) -> SegmenterStats:
        """The running counters as of the last :meth:`feed` or :meth:`flush` (a frozen snapshot).

        Safe to call from another thread (e.g. a metrics collector): the snapshot is replaced whole.
        """
        return self._stats

    @property
    def buffered_seconds(self) -> float:
        """Audio held in memory: the pre-roll while idle, the held-back window while a segment is open."""
        return (self._frames.count * self._frame_samples + self._pending.shape[0]) / SAMPLE_RATE

    def feed(self, block: AudioBlock) -> list[SegmentEvent]:
        """Take the next block of the stream; returns the events it completes.

        The block's whole frames are classified and segmented together; the audio of a segment that the
        block extends comes as one :class:`SegmentAudio` (per segment and block).
        """
        samples = block.samples
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
            raise InvalidArgument("an AudioBlock must hold a 1-D numpy int16 array of 16 kHz mono samples")
        if self._origin is None:
            self._origin = float(block.start) - self._pending.shape[0] / SAMPLE_RATE
        self._counters.audio_samples += samples.shape[0]
        data = np.concatenate([self._pending, samples]) if self._pending.shape[0] else samples
        size = self._frame_samples
        whole = data.shape[0] // size
        self._fed_at = time.perf_counter()
        if whole:
            self._arrived(self._segmenter.frame + whole, self._fed_at)
        events = self._process(data[: whole * size].reshape(whole, size), size) if whole else []
        self._pending = data[whole * size :].copy()
        self._publish()
        return events

    def flush(self) -> list[SegmentEvent]:
        """End of the stream: classify the last partial frame and close an open segment."""
        events: list[SegmentEvent] = []
        if self._pending.shape[0]:
            length = self._pending.shape[0]
            self._arrived(self._segmenter.frame + 1, self._fed_at)  # its audio came with the last block
            frame = np.zeros((1, self._frame_samples), dtype=np.int16)
            frame[0, :length] = self._pending
            events += self._process(frame, length)
        events += self._apply(self._segmenter.flush())
        self.vad.reset()
        self._start_stream()
        self._publish()
        return events

    # -- internals ---------------------------------------------------------------------------

    def _arrived(self, frames: int, clock: float) -> None:
        """The audio of the frames before ``frames`` arrived at ``clock``; forget arrivals no action needs."""
        arrivals = self._arrivals
        arrivals.append((frames, clock))
        needed = self._segment_start if self._segmenter.is_open else self._segmenter.retain_from
        while len(arrivals) > 1 and arrivals[0][0] <= needed:
            arrivals.popleft()

    def _arrival(self, frame_end: int) -> float | None:
        """When the audio of frame ``frame_end - 1`` arrived (None: not recorded)."""
        for frames, clock in self._arrivals:
            if frames >= frame_end:
                return clock
        return None

    def _process(self, frames: np.ndarray, last_length: int) -> list[SegmentEvent]:
        """Classify and segment consecutive whole ``frames`` (the last one holds ``last_length`` samples)."""
        n = frames.shape[0]
        if n == 1:
            return self._process_one(frames, last_length)
        probability = frame_probabilities(self.vad, frames)
        speech, self._speaking = speech_verdicts(
            probability, self.vad.threshold, release_threshold(self.vad), self._speaking
        )
        if self._scratch.shape[0] < n:
            self._scratch = np.empty((n, self._frame_samples), dtype=np.float64)
        x = self._scratch[:n]
        np.copyto(x, frames)
        square = np.matmul(x[:, np.newaxis, :], x[:, :, np.newaxis]).reshape(n)  # exact: integers below 2**53
        if square.max() >= _CLIPPED**2:  # some frame may hold a sample at full scale
            clipped = np.count_nonzero((frames >= _CLIPPED) | (frames <= -_CLIPPED), axis=1)
        else:
            clipped = np.zeros(n, dtype=np.int64)
        self._frames.append(frames, probability, speech, square, clipped)
        energy = np.divide(square, 32768.0**2 * self._frame_samples)  # mean square, in fractions of full scale
        if last_length != self._frame_samples:
            energy[-1] = square[-1] / 32768.0**2 / last_length
        self._last_samples = last_length
        self._counters.frames += frames.shape[0]
        self._counters.speech_frames += int(np.count_nonzero(speech))
        events = self._apply(self._segmenter.process_many(speech.tolist(), energy.tolist()))
        self._frames.drop_before(self._segmenter.retain_from)
        return events

    def _process_one(self, frames: np.ndarray, length: int) -> list[SegmentEvent]:
        """:meth:`_process` for a single frame (live blocks) in scalars, with the same figures."""
        probability = float(frame_probabilities(self.vad, frames)[0])
        threshold = self.vad.threshold
        is_speech = probability >= (min(threshold, release_threshold(self.vad)) if self._speaking else threshold)
        self._speaking = is_speech
        if not self._scratch.shape[0]:
            self._scratch = np.empty((1, self._frame_samples), dtype=np.float64)
        x = self._scratch[0]
        np.copyto(x, frames[0])
        square = float(np.dot(x, x))  # exact: an integer below 2**53
        clipped = int(np.count_nonzero((frames >= _CLIPPED) | (frames <= -_CLIPPED))) if square >= _CLIPPED**2 else 0
        self._frames.append_one(frames[0], probability, is_speech, square, clipped)
        size = self._frame_samples
        energy = square / (32768.0**2 * size) if length == size else square / 32768.0**2 / length
        self._last_samples = length
        self._counters.frames += 1
        self._counters.speech_frames += is_speech
        events = self._apply(self._segmenter.process(is_speech, energy))
        self._frames.drop_before(self._segmenter.retain_from)
        return events

    def _time(self, frame_index: int) -> float:
        assert self._origin is not None
        samples = frame_index * self._frame_samples
        if frame_index == self._segmenter.frame and self._last_samples != self._frame_samples:
            samples -= self._frame_samples - self._last_samples
        return self._origin + samples / SAMPLE_RATE

    def _apply(self, actions: list[Action]) -> list[SegmentEvent]:
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
                stop = action.up_to_frame
                short = self._frame_samples - self._last_samples if stop == self._segmenter.frame else 0
                chunk = self._frames.take(self._emitted, stop, self._acc, short)
                self._emitted = stop
                if chunk.shape[0]:
                    events.append(SegmentAudio(self._sequence, chunk))
            elif isinstance(action, Pause):
                if self._live(action.end_frame):
                    events.append(SegmentPaused(self._sequence, self._time(action.end_frame)))
            else:
                events.append(self._closed(action))
        return events

    def _live(self, end_frame: int) -> bool:
        """Whether the open segment's audio up to ``end_frame`` came about as fast as it is spoken (a
        microphone, a paced file): only then is a pause worth reporting, since a file read at full speed
        has its next audio in before the recognizer could use the pause."""
        first = self._arrival(self._segment_start + 1)
        if first is None:
            return False
        audio = (end_frame - self._segment_start) * self._frame_seconds
        return audio <= _LIVE_PACE * (self._fed_at - first) + _LIVE_LEAD_SECONDS

    def _closed(self, action: Close) -> SegmentClosed:
        acc = self._acc
        frames = max(acc.frames, 1)
        square = acc.square_sum / 32768.0**2  # in squared fractions of full scale
        level = 10.0 * math.log10(square / acc.samples) if acc.samples and square > 0 else _SILENCE_DBFS
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
        return SegmentClosed(
            self._sequence,
            end,
            speech_end,
            summary,
            speech_end_clock=self._arrival(action.speech_end_frame),
            closed_clock=time.perf_counter(),
        )

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
