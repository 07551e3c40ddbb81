"""Result times stay inside the segment's audio, and subtitle cues never overlap or go backwards."""

from __future__ import annotations

import io
import itertools

import srt
import webvtt

from voxrelay.cloud.backends.base import ModelDescriptor, Phrase, Transcript, WordTiming
from voxrelay.cloud.engine import Recognition
from voxrelay.cloud.wire import recognition_result
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.sinks import make_sink

MODEL = ModelDescriptor("tiny.en", "abc123def456", "faster-whisper", False, "cpu/int8")


def test_times_past_the_segment_audio_are_clamped_to_it() -> None:
    # Whisper timestamped the tail 4.56 s past the end of a 30 s segment that starts at 0.
    transcript = Transcript(
        text=" One. Two.",
        phrases=(Phrase(" One.", 0.0, 28.0, -0.2, 0.01, 1.1), Phrase(" Two.", 28.0, 34.56, -0.9, 0.2, 1.3)),
        language="en",
        language_probability=1.0,
        words=(WordTiming(" One.", -0.1, 1.0, 0.9), WordTiming(" Two.", 29.0, 34.56, 0.5)),
    )
    msg = recognition_result(
        Recognition(transcript, 0.0, 0.1), segment_id="s", offset=10.0, audio_seconds=30.0, model=MODEL, slot="stable"
    )
    assert (msg.start_seconds, msg.end_seconds) == (10.0, 40.0)
    assert [(p.start_seconds, p.end_seconds) for p in msg.phrases] == [(10.0, 38.0), (38.0, 40.0)]
    assert [(w.start_seconds, w.end_seconds) for w in msg.words] == [(10.0, 11.0), (39.0, 40.0)]


def _results() -> list[SegmentResult]:
    # The second segment starts before the first one's (too late) end; the third ends before it starts.
    return [
        SegmentResult("a", 0, "First.", 0.0, 34.56),
        SegmentResult("b", 1, "Second.", 30.432, 57.152),
        SegmentResult("c", 2, "", 57.2, 57.3),
        SegmentResult("d", 3, "Third.", 58.0, 57.9),
    ]


def _write(fmt: str) -> str:
    out = io.StringIO()
    sink = make_sink(fmt, out)
    sink.begin("x.wav")
    for result in _results():
        sink.write(result)
    sink.end()
    return out.getvalue()


def test_srt_cues_are_monotonic_and_parse() -> None:
    cues = list(srt.parse(_write("srt")))
    assert [c.content for c in cues] == ["First.", "Second.", "Third."]
    assert [c.index for c in cues] == [1, 2, 3]
    for cue in cues:
        assert cue.end > cue.start
    for before, after in itertools.pairwise(cues):
        assert after.start >= before.end


def test_vtt_cues_are_monotonic_and_parse() -> None:
    captions = list(webvtt.from_buffer(io.StringIO(_write("vtt"))))
    assert [c.text for c in captions] == ["First.", "Second.", "Third."]
    for c in captions:  # HH:MM:SS.mmm strings compare as times
        assert c.end > c.start
    for before, after in itertools.pairwise(captions):
        assert after.start >= before.end
