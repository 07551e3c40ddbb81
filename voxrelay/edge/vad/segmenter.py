"""The speech segmenter: a pure state machine over per-frame VAD verdicts.

It sees no audio, only ``(is_speech, energy)`` per frame, and answers with actions in frame indices that
tell the owner of the audio (:class:`voxrelay.edge.vad.speech.SpeechSegmenter`) what to send, so that a
segment is streamed *while* it is being spoken:

- **Onset.** ``min_speech_seconds`` of consecutive speech confirm an onset; shorter blips are ignored. The
  segment then opens ``pre_roll_seconds`` before the onset (never before the end of the previous segment)
  and everything up to the current frame is emitted at once.
- **Speech.** Each new frame is emitted as it arrives.
- **Pause.** After the last speech frame, ``post_roll_seconds`` of audio are still emitted; further
  non-speech is held back. If speech resumes, the held frames are emitted (the pause was inside the
  utterance); once ``hangover_seconds`` of non-speech have passed (the endpoint pause, a few hundred
  ms), the segment closes at ``last speech + post_roll`` and the held rest is dropped. So no segment
  bridges a pause of ``hangover_seconds`` or more.
- **Speculation.** Once a pause has lasted ``speculate_seconds`` (at least the post-roll, less than the
  pause that would close the segment), a :class:`Pause` tells the owner that everything the segment
  would hold if it closed now has been emitted: the recognizer may start on it. Speech that resumes
  makes that work moot; a pause that lasts closes the segment with exactly that audio. Once per pause.
- **Target length.** Once a segment holds ``target_segment_seconds`` (up to its last speech), a shorter
  pause of ``split_pause_seconds`` closes it the same way, so that long speech is cut at its pauses
  into pieces Whisper handles well rather than running on to the maximum length.
- **Maximum length.** The last resort, for speech without such pauses: within ``split_search_seconds``
  of ``max_segment_seconds`` emitting is held back; at the limit the segment is cut at the quietest
  point of the held window (lowest energy, smoothed over about 0.1 s), so that the cut falls in a pause
  rather than in a word. The audio after the cut continues as the next segment: nothing is lost or
  sent twice.

Frame ``i`` covers audio ``[i, i + 1)`` in frame units; every ``*_frame`` bound below is exclusive at the end.

:meth:`Segmenter.process` takes one frame; :meth:`Segmenter.process_many` takes a block of frames and
answers with the same actions, except that consecutive :class:`Emit` s are merged into the last one
(one per segment per block) and a :class:`Pause` that more audio follows within the block is left
out, and passes over idle silence and plain speech without building any.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from voxrelay.errors import InvalidArgument

HANGOVER_SECONDS = 0.5
"""The default endpoint pause (see the README for the measurements behind it)."""

SPECULATE_SECONDS = 0.2
"""The default pause after which the segment so far is offered for speculative recognition."""

TARGET_SEGMENT_SECONDS = 12.0
"""The default target length: longer segments close at the next short pause."""

_SMOOTH_SECONDS = 0.1
"""Width of the moving average of the energy used to find the quietest point of a forced split."""


@dataclass(frozen=True)
class SegmenterSettings:
    """Timing of the segmenter, in seconds (defaults measured on the dev set with both VADs, see the README)."""

    frame_seconds: float = 0.03
    """Duration of one VAD frame (the speech segmenter sets it from its VAD)."""
    pre_roll_seconds: float = 0.6
    """Audio kept before a confirmed onset, so the first phoneme is not clipped."""
    min_speech_seconds: float = 0.15
    """Consecutive speech needed to confirm an onset; shorter blips do not open a segment."""
    hangover_seconds: float = HANGOVER_SECONDS
    """The endpoint pause: non-speech that closes a segment (shorter pauses stay inside it). The user
    waits this long, plus the VAD's lag and the recognition, after they stop talking."""
    post_roll_seconds: float = 0.2
    """Audio kept after the last speech frame when a segment closes (at most ``hangover_seconds``)."""
    max_segment_seconds: float = 30.0
    """Longest segment (Whisper's window is 30 s); longer speech is split at its quietest point."""
    split_search_seconds: float = 4.0
    """Window before the maximum length that is searched for the quietest point to split at."""
    target_segment_seconds: float = TARGET_SEGMENT_SECONDS
    """Length after which a segment closes at the next pause of ``split_pause_seconds`` (at or above
    ``max_segment_seconds``: never)."""
    split_pause_seconds: float = 0.2
    """The pause that closes a segment longer than ``target_segment_seconds`` (as the VAD sees it: a VAD
    hears speech a little past its end, so this is about a 0.3 s pause in the audio)."""
    speculate_seconds: float = SPECULATE_SECONDS
    """The pause after which a :class:`Pause` offers the segment so far for recognition (0: never; at
    least ``post_roll_seconds`` is waited, so that the audio offered is what the close would send)."""

    def __post_init__(self) -> None:
        for name in (
            "frame_seconds",
            "pre_roll_seconds",
            "min_speech_seconds",
            "hangover_seconds",
            "post_roll_seconds",
            "max_segment_seconds",
            "split_search_seconds",
            "target_segment_seconds",
            "split_pause_seconds",
            "speculate_seconds",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidArgument(f"segmenter {name} must be a finite number of seconds, got {value!r}")
            if value < 0:
                raise InvalidArgument(f"segmenter {name} must not be negative, got {value!r}")
        f = self.frame_seconds
        if not 0.001 <= f <= 1.0:
            raise InvalidArgument(f"segmenter frame_seconds must be between 0.001 and 1 s, got {f!r}")
        if self.split_pause_seconds <= 0:
            raise InvalidArgument(
                f"segmenter split_pause_seconds ({self.split_pause_seconds}) must be positive "
                "(it counts at least one frame)"
            )
        if self.min_speech_seconds <= 0 or self.hangover_seconds <= 0:
            raise InvalidArgument(
                f"segmenter min_speech_seconds ({self.min_speech_seconds}) and hangover_seconds "
                f"({self.hangover_seconds}) must be positive (each counts at least one frame)"
            )
        if self.post_roll_seconds > self.hangover_seconds:
            raise InvalidArgument(
                f"segmenter post_roll_seconds ({self.post_roll_seconds}) cannot exceed hangover_seconds "
                f"({self.hangover_seconds}): only audio seen before the segment closes can be kept"
            )
        if self.max_segment_frames <= self.pre_roll_frames + self.min_speech_frames + self.split_search_frames:
            raise InvalidArgument(
                f"segmenter max_segment_seconds ({self.max_segment_seconds}) must be longer than "
                f"pre_roll_seconds + min_speech_seconds + split_search_seconds "
                f"({self.pre_roll_seconds} + {self.min_speech_seconds} + {self.split_search_seconds})"
            )

    def _frames(self, seconds: float, rounding: str = "round") -> int:
        ratio = seconds / self.frame_seconds
        if rounding == "ceil":
            return math.ceil(ratio - 1e-9)
        if rounding == "floor":
            return math.floor(ratio + 1e-9)
        return round(ratio)

    @property
    def pre_roll_frames(self) -> int:
        return self._frames(self.pre_roll_seconds)

    @property
    def min_speech_frames(self) -> int:
        return max(1, self._frames(self.min_speech_seconds, "ceil"))

    @property
    def hangover_frames(self) -> int:
        return max(1, self._frames(self.hangover_seconds, "ceil"))

    @property
    def post_roll_frames(self) -> int:
        return min(self._frames(self.post_roll_seconds), self.hangover_frames)

    @property
    def max_segment_frames(self) -> int:
        return self._frames(self.max_segment_seconds, "floor")

    @property
    def split_search_frames(self) -> int:
        return self._frames(self.split_search_seconds)

    @property
    def target_segment_frames(self) -> int:
        return self._frames(self.target_segment_seconds, "ceil")

    @property
    def speculate_frames(self) -> int:
        """Non-speech frames after which a :class:`Pause` comes (0: never)."""
        if not self.speculate_seconds:
            return 0
        return max(self.post_roll_frames, self._frames(self.speculate_seconds, "ceil"), 1)

    @property
    def split_pause_frames(self) -> int:
        return min(max(1, self._frames(self.split_pause_seconds, "ceil")), self.hangover_frames)


@dataclass(frozen=True)
class Open:
    """A segment opens at ``start_frame``; its confirmed speech begins at ``onset_frame``."""

    start_frame: int
    onset_frame: int


@dataclass(frozen=True)
class Emit:
    """The open segment's audio up to ``up_to_frame`` (exclusive) may be sent now."""

    up_to_frame: int


@dataclass(frozen=True)
class Close:
    """The open segment ends at ``end_frame``; speech was last heard before ``speech_end_frame``.

    Every frame before ``end_frame`` has been emitted already. ``forced``: cut at the maximum length.
    """

    end_frame: int
    speech_end_frame: int
    forced: bool


@dataclass(frozen=True)
class Pause:
    """The open segment would end at ``end_frame`` if it closed now, and all of it has been emitted.

    Not a close: speech may resume, and the segment goes on. A segment gets one per pause that lasts
    ``speculate_seconds`` without closing it.
    """

    end_frame: int


Action = Open | Emit | Close | Pause


class Segmenter:
    """Turns per-frame ``(is_speech, energy)`` into :class:`Open` / :class:`Emit` / :class:`Close` actions."""

    def __init__(self, settings: SegmenterSettings | None = None) -> None:
        self.settings = settings or SegmenterSettings()
        s = self.settings
        self._pre_roll = s.pre_roll_frames
        self._min_speech = s.min_speech_frames
        self._hangover = s.hangover_frames
        self._post_roll = s.post_roll_frames
        self._max = s.max_segment_frames
        self._search = s.split_search_frames
        self._target = s.target_segment_frames
        self._split_pause = s.split_pause_frames
        self._speculate = s.speculate_frames
        self._smooth_half = max(0, round(_SMOOTH_SECONDS / s.frame_seconds / 2))
        self._frame = 0  # index of the next frame
        self._floor = 0  # end of the last segment: no later segment starts before it
        self._run_start: int | None = None  # idle: first frame of the current speech run
        self._open = False
        self._start = 0  # open: first frame of the segment
        self._emitted = 0  # open: frames before this one have been emitted
        self._speech_end = 0  # open: last speech frame + 1
        # Open: the verdicts and energies of frames self._held_first .. self._frame (self._held_first <= self._emitted).
        self._held_speech: list[bool] = []
        self._held_energy: list[float] = []
        self._held_first = 0

    @property
    def frame(self) -> int:
        """How many frames have been processed."""
        return self._frame

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def retain_from(self) -> int:
        """The earliest frame whose audio a later action may still need; older audio can be dropped."""
        if self._open:
            return self._emitted
        anchor = self._run_start if self._run_start is not None else self._frame
        return max(self._floor, anchor - self._pre_roll)

    def process(self, is_speech: bool, energy: float) -> list[Action]:
        """Take the next frame's verdict and energy (any non-negative measure, e.g. mean square)."""
        return self._step(bool(is_speech), float(energy))

    def process_many(self, speech: Sequence[bool], energies: Sequence[float]) -> list[Action]:
        """Take the verdicts and energies of the next frames; the actions of :meth:`process` frame after
        frame, with each run of consecutive :class:`Emit` s merged into its last one."""
        actions: list[Action] = []
        hangover, longest, min_speech = self._hangover, self._max, self._min_speech
        target, split_pause, speculate = self._target, self._split_pause, self._speculate
        frame, held_speech, held_energy = self._frame, self._held_speech, self._held_energy
        for is_speech, energy in zip(speech, energies, strict=True):
            if self._open:
                following = frame + 1
                speech_end = following if is_speech else self._speech_end
                closing = split_pause if speech_end - self._start >= target else hangover
                paused = following - speech_end
                if paused < closing and following - self._start < longest and paused != speculate:
                    # Neither a close nor a split: what process() does but the emit, which can wait (the
                    # horizon only moves forward, and nothing looks at it before the catch-up below).
                    frame, self._speech_end = following, speech_end
                    held_speech.append(bool(is_speech))
                    held_energy.append(float(energy))
                    continue
                self._frame = frame
                _merge(actions, self._emit_available())
            elif not is_speech:
                frame += 1
                self._run_start = None
                continue
            elif self._run_start is not None and frame + 1 - self._run_start < min_speech:
                frame += 1
                continue
            self._frame = frame
            _merge(actions, self._step(bool(is_speech), float(energy)))
            frame, held_speech, held_energy = self._frame, self._held_speech, self._held_energy
        self._frame = frame
        if self._open:
            _merge(actions, self._emit_available())
        return actions

    def _step(self, is_speech: bool, energy: float) -> list[Action]:
        n = self._frame
        self._frame += 1
        if not self._open:
            return self._idle(n, is_speech)
        self._held_speech.append(is_speech)
        self._held_energy.append(energy)
        if is_speech:
            self._speech_end = n + 1
        if self._frame - self._speech_end >= self._closing_pause():
            return self._close(self._pause_end(), forced=False)
        if self._frame - self._start >= self._max:
            return self._split()
        actions = self._emit_available()
        if self._speculate and self._frame - self._speech_end == self._speculate:
            end = self._pause_end()
            if end <= self._emitted:  # not in the window held back for a forced split
                actions.append(Pause(end))
        return actions

    def flush(self) -> list[Action]:
        """End of the stream: close an open segment (keeping the post-roll) and forget a pending onset."""
        self._run_start = None
        if not self._open:
            return []
        return self._close(self._pause_end(), forced=False)

    # -- internals ---------------------------------------------------------------------------

    def _idle(self, n: int, is_speech: bool) -> list[Action]:
        if not is_speech:
            self._run_start = None
            return []
        if self._run_start is None:
            self._run_start = n
        if self._frame - self._run_start < self._min_speech:
            return []
        onset = self._run_start
        self._run_start = None
        self._held_first = self._frame  # nothing held yet: frames from the next one on
        return self._open_at(max(self._floor, onset - self._pre_roll), onset, speech_end=self._frame)

    def _open_at(self, start: int, onset: int, speech_end: int) -> list[Action]:
        self._open = True
        self._start = self._emitted = start
        self._speech_end = speech_end
        return [Open(start, onset), *self._emit_available()]

    def _closing_pause(self) -> int:
        """The pause that closes the open segment now: the hangover, or a shorter one past the target length."""
        return self._split_pause if self._speech_end - self._start >= self._target else self._hangover

    def _pause_end(self) -> int:
        return min(self._speech_end + self._post_roll, self._frame)

    def _horizon(self) -> int:
        """How far the open segment may be emitted now."""
        return min(self._frame, self._speech_end + self._post_roll, self._start + self._max - self._search)

    def _emit_available(self) -> list[Action]:
        horizon = self._horizon()
        if horizon <= self._emitted:
            return []
        self._emitted = horizon
        emitted = horizon - self._held_first
        if emitted >= 256:  # now and then, forget the verdicts of emitted frames
            del self._held_speech[:emitted], self._held_energy[:emitted]
            self._held_first = horizon
        return [Emit(horizon)]

    def _close(self, end: int, *, forced: bool, speech_end: int | None = None) -> list[Action]:
        actions: list[Action] = []
        if end > self._emitted:
            actions.append(Emit(end))
        actions.append(Close(end, self._speech_end if speech_end is None else speech_end, forced))
        self._open = False
        self._floor = end
        self._held_speech.clear()
        self._held_energy.clear()
        self._run_start = None
        return actions

    def _split(self) -> list[Action]:
        """At the maximum length: cut at the quietest point of the held window."""
        first = self._held_first
        window_start = max(self._start + self._max - self._search, self._emitted)
        energies = self._held_energy[window_start - first :]
        cut = self._frame if not energies else window_start + _quietest(energies, self._smooth_half)
        rest_speech, rest_energy = self._held_speech[cut - first :], self._held_energy[cut - first :]
        speech_after = [i for i, speech in enumerate(rest_speech) if speech]
        if not speech_after:
            # The speech has already stopped: a pause that the hangover has not timed yet.
            return self._close(self._pause_end(), forced=False)
        actions = self._close(cut, forced=True, speech_end=cut)
        self._held_speech, self._held_energy, self._held_first = rest_speech, rest_energy, cut
        actions += self._open_at(cut, cut + speech_after[0], speech_end=cut + speech_after[-1] + 1)
        return actions


def _merge(actions: list[Action], more: list[Action]) -> None:
    """Append ``more`` to ``actions``, an :class:`Emit` replacing an :class:`Emit` just before it and
    dropping a :class:`Pause` just before it (speech resumed within the block: the pause is moot)."""
    for action in more:
        if isinstance(action, Emit):
            if actions and isinstance(actions[-1], Pause):
                actions.pop()
            if actions and isinstance(actions[-1], Emit):
                actions[-1] = action
                continue
        actions.append(action)


def _quietest(energies: list[float], half: int) -> int:
    """Index of the lowest moving average of ``energies`` (window 2·half+1; the latest wins a tie)."""
    total = len(energies)
    prefix = [0.0]
    for e in energies:
        prefix.append(prefix[-1] + e)
    best, best_value = total - 1, math.inf
    for i in range(total):
        lo, hi = max(0, i - half), min(total, i + half + 1)
        value = (prefix[hi] - prefix[lo]) / (hi - lo)
        if value <= best_value:
            best, best_value = i, value
    return best
