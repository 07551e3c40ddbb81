"""The segmenter state machine driven with plain booleans, and SpeechSegmenter's audio bookkeeping."""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from voxrelay.edge.events import AudioBlock, SegmentAudio, SegmentClosed, SegmentOpened
from voxrelay.edge.vad.detectors import WebRtcVad
from voxrelay.edge.vad.segmenter import Action, Close, Emit, Open, Pause, Segmenter, SegmenterSettings
from voxrelay.edge.vad.speech import SpeechSegmenter
from voxrelay.errors import InvalidArgument

# 0.1 s frames keep the arithmetic readable: pre-roll 2 frames, onset 3, hangover 5, post-roll 2,
# maximum 30 frames with a 10-frame split search.
TENTH = SegmenterSettings(
    frame_seconds=0.1,
    pre_roll_seconds=0.2,
    min_speech_seconds=0.3,
    hangover_seconds=0.5,
    post_roll_seconds=0.2,
    max_segment_seconds=3.0,
    split_search_seconds=1.0,
)

LOUD, QUIET = 1.0, 0.001


@dataclass
class Segment:
    start: int
    onset: int
    end: int = -1
    speech_end: int = -1
    forced: bool = False
    emitted: list[int] = field(default_factory=list)
    pauses: list[int] = field(default_factory=list)  # end frames offered by Pause actions


def run(
    pattern: str | list[bool], energies: list[float] | None = None, settings: SegmenterSettings = TENTH
) -> tuple[list[Segment], list[tuple[int, Action]]]:
    """Drive a segmenter with ``pattern`` ("S" speech, "." not), flush, and check every invariant.

    Returns the segments and the actions with the index of the frame that produced them (-1: flush).
    """
    flags = [c == "S" for c in pattern] if isinstance(pattern, str) else list(pattern)
    energies = energies or [LOUD if s else QUIET for s in flags]
    segmenter = Segmenter(settings)
    log: list[tuple[int, Action]] = []
    kept_from = 0  # a buffer that drops what retain_from allows, as SpeechSegmenter does
    for i, (speech, energy) in enumerate(zip(flags, energies, strict=True)):
        for action in segmenter.process(speech, energy):
            log.append((i, action))
        assert segmenter.retain_from >= kept_from, "retain_from must never move back"
        kept_from = segmenter.retain_from
        assert kept_from <= i + 1
    log += [(-1, a) for a in segmenter.flush()]
    return check(log, settings, len(flags)), log


def check(log: list[tuple[int, Action]], settings: SegmenterSettings, frames: int) -> list[Segment]:
    """Segments in order, never overlapping, each emitted contiguously once, none over the maximum."""
    segments: list[Segment] = []
    current: Segment | None = None
    for i, action in log:
        if isinstance(action, Open):
            assert current is None, "a segment opened inside another"
            assert not segments or action.start_frame >= segments[-1].end, "pre-roll reached into the previous segment"
            assert action.start_frame <= action.onset_frame
            if i >= 0:
                assert action.start_frame >= 0 and action.onset_frame <= i
            current = Segment(action.start_frame, action.onset_frame)
        elif isinstance(action, Emit):
            assert current is not None, "audio emitted outside a segment"
            previous = current.emitted[-1] if current.emitted else current.start
            assert action.up_to_frame > previous, "an empty or backward emit"
            assert i < 0 or action.up_to_frame <= i + 1, "emitted a frame that has not arrived"
            current.emitted.append(action.up_to_frame)
        elif isinstance(action, Pause):
            assert current is not None, "a pause outside a segment"
            assert current.emitted and current.emitted[-1] == action.end_frame, "a pause before its audio was sent"
            assert action.end_frame not in current.pauses, "the same pause offered twice"
            current.pauses.append(action.end_frame)
        else:
            assert current is not None, "closed with no open segment"
            if current.pauses and current.pauses[-1] == current.emitted[-1]:  # a pause with nothing sent since
                assert action.end_frame == current.pauses[-1], "closed with other audio than the pause offered"
            assert current.emitted and current.emitted[-1] == action.end_frame, "closed before its audio was sent"
            current.end, current.speech_end, current.forced = (
                action.end_frame,
                action.speech_end_frame,
                action.forced,
            )
            assert current.start < current.speech_end <= current.end
            assert current.end - current.start <= settings.max_segment_frames
            segments.append(current)
            current = None
    assert current is None, "a segment is still open after flush"
    assert all(s.end <= frames for s in segments)
    return segments


def spans(segments: list[Segment]) -> list[tuple[int, int]]:
    return [(s.start, s.end) for s in segments]


# -- onset ----------------------------------------------------------------------------------------


def test_onset_needs_min_speech_then_opens_with_pre_roll() -> None:
    _, log = run(".....SSS")
    assert log == [(7, Open(start_frame=3, onset_frame=5)), (7, Emit(8)), (-1, Close(8, 8, False))]


def test_short_blips_do_not_open_a_segment() -> None:
    segments, log = run("...S..SS...S.SS..S.SS........")
    assert segments == [] and log == []


def test_pre_roll_is_clamped_at_the_stream_start() -> None:
    _, log = run("SSS")
    assert log[0] == (2, Open(start_frame=0, onset_frame=0))


def test_pre_roll_never_reaches_into_the_previous_segment() -> None:
    # The first segment ends at frame 6 (speech end 4 + post-roll 2); the next onset at 7 would want
    # pre-roll from 5, but frame 5 was sent with the first segment.
    segments, _ = run("SSSS.....SSS" + "." * 6)
    first, second = segments
    assert (first.start, first.end, first.speech_end) == (0, 6, 4)
    assert second.onset == 9 and second.start == 7  # 9 - 2
    segments, _ = run("SSSS" + "." * 5 + ".SSS" + "." * 6)
    assert segments[1].start == 8


def test_audio_is_emitted_while_speech_goes_on() -> None:
    _, log = run("..SSSSSS")
    emits = [(i, a.up_to_frame) for i, a in log if isinstance(a, Emit)]
    assert emits == [(4, 5), (5, 6), (6, 7), (7, 8)]


# -- hangover and post-roll -----------------------------------------------------------------------


def test_hangover_closes_after_enough_non_speech_keeping_the_post_roll() -> None:
    segments, log = run("SSSS" + "." * 8)
    assert segments[0].end == 6 and segments[0].speech_end == 4
    # The close comes with the fifth non-speech frame (index 8); frames 6-8 are never sent.
    assert log[-1] == (8, Close(6, 4, False))
    emits = [(i, a.up_to_frame) for i, a in log if isinstance(a, Emit)]
    assert emits == [(2, 3), (3, 4), (4, 5), (5, 6)]


def test_a_pause_shorter_than_the_hangover_stays_inside_the_segment() -> None:
    segments, log = run("SSSS....SSSS" + "." * 5)
    assert spans(segments) == [(0, 14)]
    # The two frames of the pause after the post-roll are held, then sent when speech resumes.
    assert (8, Emit(9)) in log


def test_a_pause_as_long_as_the_hangover_splits() -> None:
    segments, _ = run("SSSS.....SSSS" + "." * 5)
    assert spans(segments) == [(0, 6), (7, 15)]


def pauses(log: list[tuple[int, Action]]) -> list[tuple[int, Pause]]:
    return [(i, a) for i, a in log if isinstance(a, Pause)]


def test_a_pause_is_offered_once_the_post_roll_is_sent_and_a_lasting_pause_closes_there() -> None:
    # TENTH speculates after 0.2 s (2 frames, the post-roll): speech ends at frame 4.
    segments, log = run("SSSS" + "." * 8)
    assert pauses(log) == [(5, Pause(6))]
    # The close that follows keeps exactly the audio the pause offered, and sends nothing more.
    assert log[log.index((5, Pause(6))) + 1 :] == [(8, Close(6, 4, False))]
    assert segments[0].pauses == [6]


def test_speech_that_resumes_after_a_pause_offers_each_pause_again() -> None:
    segments, log = run("SSSS...SSSS...SS" + "." * 6)
    assert spans(segments) == [(0, 18)]
    assert [p.end_frame for _, p in pauses(log)] == [6, 13, 18]
    # After the first two, audio follows: they were moot, and the segment goes on.
    for i, pause in pauses(log)[:2]:
        later = [a for j, a in log if j > i]
        assert isinstance(later[0], Emit) and later[0].up_to_frame > pause.end_frame


def test_speculation_waits_at_least_the_post_roll() -> None:
    settings = dataclasses.replace(TENTH, speculate_seconds=0.1)
    assert settings.speculate_frames == settings.post_roll_frames == 2
    _, log = run("SSSS" + "." * 8, settings=settings)
    assert pauses(log) == [(5, Pause(6))]


def test_no_pause_when_speculation_is_off_or_as_long_as_the_endpoint() -> None:
    for seconds in (0.0, 0.5, 2.0):
        settings = dataclasses.replace(TENTH, speculate_seconds=seconds)
        segments, log = run("SSSS...SSSS" + "." * 8, settings=settings)
        assert pauses(log) == [] and len(segments) == 1


def test_a_pause_is_not_offered_in_the_window_held_for_a_forced_split() -> None:
    # Maximum 30 frames, the last 10 held back for the split search: a pause there has audio unsent.
    _, log = run("S" * 24 + "..." + "S" * 10 + "." * 8)
    assert all(i < 20 or i > 30 for i, _ in pauses(log))


def test_flush_closes_an_open_segment_keeping_the_post_roll() -> None:
    segments, log = run("..SSSSSS...")
    assert log[-1] == (-1, Close(10, 8, False))
    assert segments[0].end == 10


def test_flush_when_idle_does_nothing_and_forgets_a_pending_onset() -> None:
    segmenter = Segmenter(TENTH)
    assert segmenter.flush() == []
    segmenter.process(True, 1.0)
    segmenter.process(True, 1.0)
    assert segmenter.flush() == []
    assert segmenter.process(True, 1.0) == []  # the run starts over after a flush


# -- maximum length -------------------------------------------------------------------------------


def test_max_length_splits_at_the_quietest_frame_of_the_search_window() -> None:
    energies = [LOUD] * 45
    energies[24] = QUIET  # inside the window (frames 20-29 of a segment opened at 0)
    energies[12] = QUIET / 10  # quieter, but before the window
    segments, log = run("S" * 45, energies)
    first, second = segments
    assert (first.start, first.end, first.speech_end, first.forced) == (0, 24, 24, True)
    assert (second.start, second.onset, second.end, second.forced) == (24, 24, 45, False)
    # Emitting was held back over the search window and resumed after the split.
    assert max(a.up_to_frame for i, a in log if isinstance(a, Emit) and 0 <= i < 29) == 20
    assert (29, Close(24, 24, True)) in log and (29, Open(24, 24)) in log and (29, Emit(30)) in log


def test_a_long_segment_is_cut_again_and_again_without_losing_a_frame() -> None:
    rng = random.Random(3)
    energies = [rng.uniform(0.5, 1.0) for _ in range(200)]
    segments, _ = run("S" * 200, energies)
    assert len(segments) >= 7
    assert segments[0].start == 0 and segments[-1].end == 200
    for a, b in itertools.pairwise(segments):
        assert a.end == b.start and a.forced
        assert 20 <= a.end - a.start <= 30


def test_quietness_is_judged_over_about_a_tenth_of_a_second() -> None:
    settings = dataclasses.replace(
        TENTH, frame_seconds=0.01, pre_roll_seconds=0.02, min_speech_seconds=0.03, hangover_seconds=0.05,
        post_roll_seconds=0.02, max_segment_seconds=0.3, split_search_seconds=0.1,
    )  # fmt: skip
    energies = [LOUD] * 40
    energies[22] = 0.0  # one silent frame inside a word (a stop closure) ...
    for i in range(25, 30):
        energies[i] = 0.05  # ... loses against a quiet stretch
    segments, _ = run("S" * 40, energies, settings)
    assert 25 <= segments[0].end <= 29


def test_at_the_limit_after_speech_stopped_the_segment_ends_at_the_pause() -> None:
    segments, _ = run("S" * 27 + "." * 10)
    assert len(segments) == 1
    assert (segments[0].end, segments[0].speech_end, segments[0].forced) == (29, 27, False)


def test_random_streams_keep_every_invariant_and_cover_all_confirmed_speech() -> None:
    rng = random.Random(20250611)
    for _ in range(300):
        flags: list[bool] = []
        while len(flags) < 300:
            flags += [rng.random() < 0.55] * rng.choice([1, 1, 2, 3, 4, 8, 20, 40])
        energies = [rng.uniform(0.3, 1.0) if s else rng.uniform(0.0, 0.2) for s in flags]
        segments, _ = run(flags, energies)
        covered: set[int] = set()
        for s in segments:
            covered.update(range(s.start, s.end))
        for i in range(len(flags) - 2):
            if all(flags[i : i + 3]):  # a confirmed run: every one of its frames is sent
                assert covered.issuperset(range(i, i + 3)), i


# -- target length --------------------------------------------------------------------------------

# TENTH with a target of 1.5 s (15 frames) and a 0.2 s (2-frame) split pause; the hangover stays 5 frames.
TARGETED = dataclasses.replace(TENTH, target_segment_seconds=1.5, split_pause_seconds=0.2)


def test_before_the_target_a_short_pause_stays_inside_the_segment() -> None:
    segments, _ = run("S" * 10 + ".." + "S" * 2 + "." * 6, settings=TARGETED)
    assert spans(segments) == [(0, 16)]


def test_past_the_target_a_short_pause_closes_the_segment() -> None:
    segments, log = run("S" * 16 + ".." + "S" * 4 + "." * 6, settings=TARGETED)
    first, second = segments
    # Speech ends at 16; the second non-speech frame (index 17) closes the segment at 16 + 2 (post-roll).
    assert (first.start, first.end, first.speech_end, first.forced) == (0, 18, 16, False)
    assert (17, Close(18, 16, False)) in log
    assert (second.start, second.onset, second.end) == (18, 18, 24)


def test_the_target_counts_up_to_the_last_speech() -> None:
    # Speech from 0 to 14 (14 frames): the pause after it is under the target, so it is bridged.
    segments, _ = run("S" * 14 + "..." + "S" * 3 + "." * 6, settings=TARGETED)
    assert spans(segments) == [(0, 22)]


def test_without_pauses_the_maximum_length_split_remains_the_last_resort() -> None:
    segments, _ = run("S" * 45, settings=TARGETED)
    assert [s.forced for s in segments] == [True, False]


def test_random_streams_bridge_no_pause_the_rules_close_at() -> None:
    rng = random.Random(11)
    settings = dataclasses.replace(TARGETED, max_segment_seconds=4.0)
    hangover, split_pause = settings.hangover_frames, settings.split_pause_frames
    target = settings.target_segment_frames
    for _ in range(200):
        flags: list[bool] = []
        while len(flags) < 300:
            flags += [rng.random() < 0.7] * rng.choice([1, 1, 2, 3, 4, 6, 10])
        segments, _ = run(flags, settings=settings)
        for s in segments:
            pause = 0
            for i in range(s.start, s.speech_end):
                if flags[i]:
                    assert pause < hangover, (s, i)
                    if i - pause - s.start >= target:  # the pause began past the target
                        assert pause < split_pause, (s, i)
                    pause = 0
                elif i >= s.onset:
                    pause += 1


def merged(actions: list[Action]) -> list[Action]:
    """``actions`` with each run of consecutive Emits reduced to its last, and each Pause that an Emit
    follows (speech resumed: moot) left out."""
    out: list[Action] = []
    for action in actions:
        if isinstance(action, Emit) and out and isinstance(out[-1], Pause):
            out.pop()
        if out and isinstance(action, Emit) and isinstance(out[-1], Emit):
            out[-1] = action
        else:
            out.append(action)
    return out


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 16, 33, 1000])
@pytest.mark.parametrize("longest", [2.0, 60.0], ids=["short", "long"])
@pytest.mark.parametrize("target", [1000.0, 1.2], ids=["no-target", "target"])
def test_process_many_is_process_frame_after_frame_with_the_emits_merged(
    chunk: int, longest: float, target: float
) -> None:
    rng = random.Random(chunk)
    # Segments of at most 20 frames, or of up to 600 held frames (which are forgotten in batches).
    settings = dataclasses.replace(
        TENTH,
        max_segment_seconds=longest,
        split_search_seconds=min(0.6, longest / 4),
        target_segment_seconds=target,
        split_pause_seconds=0.2,
    )
    for _ in range(40 if longest < 10 else 6):
        flags: list[bool] = []
        while len(flags) < (400 if longest < 10 else 2000):
            flags += [rng.random() < (0.6 if longest < 10 else 0.9)] * rng.choice([1, 1, 2, 3, 5, 8, 20, 40])
        energies = [rng.uniform(0.3, 1.0) if s else rng.uniform(0.0, 0.2) for s in flags]
        one, many = Segmenter(settings), Segmenter(settings)
        for start in range(0, len(flags), chunk):
            expected: list[Action] = []
            for speech, energy in zip(flags[start : start + chunk], energies[start : start + chunk], strict=True):
                expected += one.process(speech, energy)
            got = many.process_many(flags[start : start + chunk], energies[start : start + chunk])
            assert got == merged(expected)
            assert (many.frame, many.retain_from, many.is_open) == (one.frame, one.retain_from, one.is_open)
        assert many.flush() == one.flush()


# -- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"frame_seconds": 0.0}, "frame_seconds must be between"),
        ({"pre_roll_seconds": -0.1}, "pre_roll_seconds must not be negative"),
        ({"hangover_seconds": float("nan")}, "hangover_seconds must be a finite number"),
        ({"min_speech_seconds": True}, "min_speech_seconds must be a finite number"),
        ({"min_speech_seconds": 0.0}, "must be positive"),
        ({"post_roll_seconds": 2.0}, "post_roll_seconds .* cannot exceed hangover_seconds"),
        ({"max_segment_seconds": 4.0}, "max_segment_seconds .* must be longer than"),
        ({"split_pause_seconds": 0.0}, "split_pause_seconds .* must be positive"),
        ({"target_segment_seconds": -1.0}, "target_segment_seconds must not be negative"),
    ],
)
def test_settings_are_validated(changes: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        dataclasses.replace(SegmenterSettings(), **changes)


def test_default_settings_in_frames() -> None:
    s = SegmenterSettings()
    assert s.max_segment_seconds <= 30.0  # one Whisper window
    assert 0.2 <= s.hangover_seconds <= 0.6  # a short endpoint pause: the user is not kept waiting
    assert 10.0 <= s.target_segment_seconds <= 20.0 < s.max_segment_seconds
    assert s.split_pause_seconds <= s.hangover_seconds
    assert s.post_roll_seconds <= s.hangover_seconds
    assert s.max_segment_frames == round(s.max_segment_seconds / s.frame_seconds)


def test_the_split_pause_counts_at_most_the_hangover() -> None:
    s = dataclasses.replace(TENTH, split_pause_seconds=2.0)
    assert (s.split_pause_frames, s.hangover_frames) == (5, 5)


# -- SpeechSegmenter: audio bookkeeping -----------------------------------------------------------


class LevelVad:
    """A test double for the Vad protocol: a frame is speech when its RMS is above -40 dBFS."""

    name = "level"
    frame_samples = 480
    threshold = 0.5

    def speech_probability(self, frame: np.ndarray) -> float:
        assert frame.shape == (self.frame_samples,) and frame.dtype == np.int16
        rms = np.sqrt(np.mean((frame.astype(np.float64) / 32768) ** 2))
        return 1.0 if rms > 0.01 else 0.0

    def reset(self) -> None:
        pass


def bursts(plan: list[tuple[float, float]], seed: int = 5) -> np.ndarray:
    """Concatenated (seconds, amplitude) pieces of a noisy 220 Hz tone; amplitude 0 is silence."""
    rng = np.random.default_rng(seed)
    pieces = []
    for seconds, amplitude in plan:
        n = round(seconds * 16000)
        t = np.arange(n) / 16000
        x = amplitude * (np.sin(2 * np.pi * 220 * t) + 0.1 * rng.normal(size=n))
        pieces.append(np.clip(x * 32768, -32768, 32767).astype(np.int16))
    return np.concatenate(pieces)


PLAN = [
    (1.0, 0.0),
    (2.0, 0.3),
    (0.5, 0.0),
    (1.0, 0.3),
    (3.0, 0.0),
    (0.05, 0.3),
    (2.0, 0.0),
    (1.2, 0.3),
    (0.013, 0.0),
]


def feed(audio: np.ndarray, block: int, segmenter: SpeechSegmenter, start: float = 0.0) -> list:
    events = []
    for i in range(0, audio.shape[0], block):
        events += segmenter.feed(AudioBlock(audio[i : i + block], start + i / 16000))
    return events + segmenter.flush()


def collect(events: list) -> list[tuple[int, float, float, np.ndarray, SegmentClosed]]:
    """(sequence, offset, end, audio, closed) per segment, checking the event order."""
    out = []
    current: list = []
    offset = 0.0
    for event in events:
        if isinstance(event, SegmentOpened):
            assert not current
            current, offset = [event], event.offset
        elif isinstance(event, SegmentAudio):
            assert current and event.sequence == current[0].sequence
            current.append(event)
        else:
            assert current and event.sequence == current[0].sequence
            audio = np.concatenate([e.samples for e in current[1:]])
            out.append((event.sequence, offset, event.end, audio, event))
            current = []
    assert not current
    return out


SETTINGS = SegmenterSettings(
    pre_roll_seconds=0.3, hangover_seconds=1.0, post_roll_seconds=0.3, max_segment_seconds=10.0
)


def test_segment_audio_is_exactly_the_source_between_offset_and_end() -> None:
    audio = bursts(PLAN)
    segments = collect(feed(audio, 320, SpeechSegmenter(LevelVad(), SETTINGS)))
    assert [s[0] for s in segments] == [0, 1]  # the 50 ms blip is not a segment
    for _, offset, end, samples, _ in segments:
        a, b = round(offset * 16000), round(end * 16000)
        np.testing.assert_array_equal(samples, audio[a:b])
    (_, o1, e1, _, c1), (_, _, e2, _, _) = segments
    # One segment over the 0.5 s pause: pre-roll before 1.0 s, post-roll after 4.5 s.
    assert o1 == pytest.approx(0.7, abs=0.031)
    assert e1 == pytest.approx(4.8, abs=0.031)
    assert c1.stats.pre_roll_seconds == pytest.approx(0.3, abs=0.031)
    assert c1.stats.hangover_seconds == pytest.approx(0.3, abs=0.001)
    assert c1.end - c1.speech_end == pytest.approx(c1.stats.hangover_seconds)
    # The stream ends with speech: the last partial frame (13 ms) is part of the last segment.
    assert e2 == pytest.approx(audio.shape[0] / 16000)


@pytest.mark.parametrize("block", [1, 37, 480, 1000, 7919, 100000])
def test_any_block_size_gives_the_same_segments(block: int) -> None:
    audio = bursts(PLAN)
    reference = collect(feed(audio, 480, SpeechSegmenter(LevelVad(), SETTINGS)))
    got = collect(feed(audio, block, SpeechSegmenter(LevelVad(), SETTINGS)))
    assert [(s, o, e) for s, o, e, _, _ in got] == [(s, o, e) for s, o, e, _, _ in reference]
    for (*_, a, ca), (*_, b, cb) in zip(got, reference, strict=True):
        np.testing.assert_array_equal(a, b)
        assert ca.stats == cb.stats


def test_times_follow_the_source_clock() -> None:
    audio = bursts(PLAN)
    shifted = collect(feed(audio, 480, SpeechSegmenter(LevelVad(), SETTINGS), start=100.0))
    plain = collect(feed(audio, 480, SpeechSegmenter(LevelVad(), SETTINGS)))
    for a, b in zip(shifted, plain, strict=True):
        assert a[1] == pytest.approx(b[1] + 100.0) and a[2] == pytest.approx(b[2] + 100.0)


def test_forced_splits_lose_and_duplicate_nothing() -> None:
    audio = bursts([(0.5, 0.0), (25.0, 0.3), (0.5, 0.0)])
    settings = dataclasses.replace(SETTINGS, max_segment_seconds=6.0, split_search_seconds=2.0)
    segments = collect(feed(audio, 1600, SpeechSegmenter(LevelVad(), settings)))
    assert len(segments) == 5
    for (_, _, end, _, closed), (_, offset, *_) in itertools.pairwise(segments):
        assert offset == end and closed.stats.forced_split
        assert closed.stats.hangover_seconds == 0.0
    joined = np.concatenate([s[3] for s in segments])
    a = round(segments[0][1] * 16000)
    np.testing.assert_array_equal(joined, audio[a : a + joined.shape[0]])
    assert all(e - o <= 6.0 + 1e-9 for _, o, e, _, _ in segments)


def test_vad_summary() -> None:
    audio = bursts([(1.0, 0.0), (1.0, 0.5), (2.0, 0.0)])
    audio[20000:20100] = 32767  # a clipped stretch
    ((_, _, _, samples, closed),) = collect(feed(audio, 480, SpeechSegmenter(LevelVad(), SETTINGS)))
    stats = closed.stats
    assert stats.vad == "level" and not stats.forced_split
    x = samples.astype(np.float64) / 32768
    assert stats.level_dbfs == pytest.approx(10 * np.log10(np.mean(x * x)), abs=0.01)
    assert stats.clipping_ratio == pytest.approx(np.mean(np.abs(samples) >= 32767))
    assert stats.clipping_ratio > 0
    assert 0.6 < stats.speech_ratio < 0.9
    assert stats.mean_speech_probability == pytest.approx(stats.speech_ratio)


def test_stats_count_frames_segments_and_seconds() -> None:
    audio = bursts(PLAN)
    segmenter = SpeechSegmenter(LevelVad(), SETTINGS)
    assert segmenter.stats().frames == 0
    segments = collect(feed(audio, 480, segmenter))
    stats = segmenter.stats()
    assert stats.audio_seconds == pytest.approx(audio.shape[0] / 16000)
    assert stats.frames == -(-audio.shape[0] // 480)
    assert stats.segments == 2 and stats.forced_splits == 0
    assert stats.speech_seconds == pytest.approx(stats.speech_frames * 0.03)
    assert 4.0 < stats.speech_seconds < 4.5
    assert stats.segment_seconds == pytest.approx(sum(e - o for _, o, e, _, _ in segments))
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.frames = 0  # type: ignore[misc]


def test_sequence_numbers_continue_across_streams() -> None:
    audio = bursts(PLAN)
    segmenter = SpeechSegmenter(LevelVad(), SETTINGS)
    first = collect(feed(audio, 480, segmenter))
    second = collect(feed(audio, 480, segmenter, start=0.0))
    assert [s[0] for s in first + second] == [0, 1, 2, 3]
    assert [s[1] for s in second] == [s[1] for s in first]


def test_memory_stays_bounded_while_idle() -> None:
    segmenter = SpeechSegmenter(LevelVad(), SETTINGS)
    silence = np.zeros(16000, dtype=np.int16)
    for second in range(600):
        assert segmenter.feed(AudioBlock(silence, float(second))) == []
        assert segmenter.buffered_seconds <= SETTINGS.pre_roll_seconds + SETTINGS.min_speech_seconds + 0.03


def test_the_frame_duration_comes_from_the_vad() -> None:
    segmenter = SpeechSegmenter(LevelVad(), SegmenterSettings(frame_seconds=0.01))
    assert segmenter.settings.frame_seconds == 0.03


def test_a_block_must_hold_int16_samples() -> None:
    segmenter = SpeechSegmenter(LevelVad())
    with pytest.raises(InvalidArgument, match="int16"):
        segmenter.feed(AudioBlock(np.zeros(480, dtype=np.float32), 0.0))


class BatchLevelVad(LevelVad):
    """LevelVad with the batch call of the Vad protocol (what the real detectors have)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def speech_probabilities(self, frames: np.ndarray) -> np.ndarray:
        assert frames.ndim == 2 and frames.shape[1] == self.frame_samples and frames.dtype == np.int16
        self.calls.append(frames.shape[0])
        return np.array([self.speech_probability(frame) for frame in frames])


@pytest.mark.parametrize("block", [1, 37, 320, 480, 1000, 8000, 16000, 100000])
@pytest.mark.parametrize("make", [BatchLevelVad, WebRtcVad], ids=["level", "webrtc"])
def test_a_batch_vad_gives_the_same_segments_at_any_block_size(block: int, make: type) -> None:
    audio = bursts(PLAN)
    reference = collect(feed(audio, 480, SpeechSegmenter(make(), SETTINGS)))
    events = feed(audio, block, SpeechSegmenter(make(), SETTINGS))
    got = collect(events)
    assert [s[0] for s in got] == [0, 1]
    assert [(s, o, e) for s, o, e, _, _ in got] == [(s, o, e) for s, o, e, _, _ in reference]
    for (*_, a, ca), (*_, b, cb) in zip(got, reference, strict=True):
        np.testing.assert_array_equal(a, b)
        assert ca.stats == cb.stats


def test_a_block_is_classified_in_one_call_and_sends_one_chunk_per_segment() -> None:
    audio = bursts(PLAN)
    vad = BatchLevelVad()
    segmenter = SpeechSegmenter(vad, SETTINGS)
    for i in range(0, audio.shape[0], 16000):
        events = segmenter.feed(AudioBlock(audio[i : i + 16000], i / 16000))
        chunks = [e.sequence for e in events if isinstance(e, SegmentAudio)]
        assert len(chunks) == len(set(chunks))  # at most one SegmentAudio per segment and block
    # 16000 samples are 33 frames and a third; the pending third completes a frame every third block.
    assert vad.calls[:4] == [33, 33, 34, 33]


class RampVad(LevelVad):
    """A test double with graded probabilities (RMS / 0.02, capped at 1) and hysteresis."""

    name = "ramp"
    release_threshold = 0.25

    def speech_probability(self, frame: np.ndarray) -> float:
        rms = np.sqrt(np.mean((frame.astype(np.float64) / 32768) ** 2))
        return float(min(1.0, rms / 0.02))


class PlainRampVad(RampVad):
    release_threshold = RampVad.threshold


@pytest.mark.parametrize("block", [480, 1600, 16000])
def test_hysteresis_keeps_weaker_frames_inside_speech(block: int) -> None:
    # Loud (probability 1) for 1 s, then 1.5 s at probability ~0.35: above the release threshold, so
    # speech goes on through it; with a plain threshold of 0.5 it ends with the loud part.
    audio = bursts([(0.5, 0.0), (1.0, 0.03), (1.5, 0.0098), (1.0, 0.0)])
    settings = dataclasses.replace(SETTINGS, hangover_seconds=0.5, post_roll_seconds=0.2)
    ((_, _, _, _, closed),) = collect(feed(audio, block, SpeechSegmenter(RampVad(), settings)))
    assert closed.speech_end == pytest.approx(3.0, abs=0.06)
    ((_, _, _, _, closed),) = collect(feed(audio, block, SpeechSegmenter(PlainRampVad(), settings)))
    assert closed.speech_end == pytest.approx(1.5, abs=0.06)


def test_a_closed_segment_says_when_its_last_speech_arrived_and_when_it_closed() -> None:
    audio = bursts(PLAN)
    segmenter = SpeechSegmenter(LevelVad(), dataclasses.replace(SETTINGS, hangover_seconds=0.5, post_roll_seconds=0.2))
    block = 1600
    calls: list[tuple[float, float, float]] = []  # (block end in the source, clock before the feed, after it)
    closed: list[SegmentClosed] = []
    for i in range(0, audio.shape[0], block):
        before = time.perf_counter()
        events = segmenter.feed(AudioBlock(audio[i : i + block], i / 16000))
        calls.append((min(i + block, audio.shape[0]) / 16000, before, time.perf_counter()))
        closed += [e for e in events if isinstance(e, SegmentClosed)]
    closed += [e for e in segmenter.flush() if isinstance(e, SegmentClosed)]
    assert len(closed) == 2
    for c in closed:
        assert c.speech_end_clock is not None and c.closed_clock is not None
        # The clock of the feed that brought the audio just before speech_end ...
        _, before, after = next(call for call in calls if call[0] >= c.speech_end - 1e-9)
        assert before <= c.speech_end_clock <= after
        # ... and the close came later: once the endpoint pause had passed, or at the flush.
        assert c.closed_clock >= c.speech_end_clock
        later = [call for call in calls if call[0] >= c.end + 0.3 - 1e-9]
        assert c.closed_clock >= (later[0][1] if later else calls[-1][2])


def test_the_endpoint_pause_is_a_vad_setting_that_keeps_the_post_roll_within_it() -> None:
    from voxrelay.edge.agent import VadSettings

    assert VadSettings(vad="webrtc").segmenter is None  # the segmenter's defaults
    short = VadSettings(vad="webrtc", endpoint_seconds=0.1).segmenter
    assert short is not None and (short.hangover_seconds, short.post_roll_seconds) == (0.1, 0.1)
    long = VadSettings(vad="webrtc", endpoint_seconds=2.0).segmenter
    assert long is not None and long.post_roll_seconds == SegmenterSettings().post_roll_seconds
    with pytest.raises(InvalidArgument, match="--endpoint-seconds: 0 must lie between"):
        VadSettings(vad="webrtc", endpoint_seconds=0)
