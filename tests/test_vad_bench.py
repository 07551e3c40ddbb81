"""Both VADs at the default settings on the dev set's constructed VAD bench and labelled recordings.

Run with ``pytest -s`` to see precision/recall; ``scripts/tune_vad.py`` prints the same figures and
sweeps settings.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from voxrelay.edge.events import SegmentAudio, SegmentOpened
from voxrelay.edge.vad.detectors import DEFAULT_VAD
from voxrelay.edge.vad.segmenter import SegmenterSettings

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech"
LABELLED_F1_TARGET = 0.85


def load_tuner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tune_vad", ROOT / "scripts" / "tune_vad.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("tune_vad", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tuner() -> ModuleType:
    if not (SPEECH / "manifest.jsonl").is_file():
        pytest.skip(f"speech data not found at {SPEECH}")
    return load_tuner()


@pytest.fixture(scope="module")
def bench(tuner: ModuleType) -> tuple[dict, list, np.ndarray]:
    row = next(r for r in tuner.load_manifest(SPEECH) if r["audio"] == tuner.BENCH)
    blocks = tuner.read_blocks(SPEECH / tuner.BENCH)
    return row, blocks, np.concatenate([b.samples for b in blocks])


@pytest.mark.parametrize("vad", ["webrtc", "silero"])
def test_bench_every_utterance_found_and_none_cut_in_a_word(
    tuner: ModuleType, bench: tuple[dict, list, np.ndarray], vad: str
) -> None:
    row, blocks, samples = bench
    settings = SegmenterSettings()
    events = tuner.run_events(blocks, vad, settings)
    # A gap this long lets the segment close (hangover) before the next one's pre-roll begins.
    closing_gap = settings.hangover_seconds + settings.pre_roll_seconds
    segments = tuner.segments_of(events)
    report = tuner.bench_report(row, samples, segments, settings.max_segment_seconds, closing_gap)
    summary = f"{vad} on {tuner.BENCH}:\n  " + "\n  ".join(report.lines())
    print("\n" + summary)
    assert not report.missed, summary
    # The endpoint pause closes a segment in any pause at least that long, inside an utterance too (those
    # cuts are "in a pause"); a cut inside a word is a mistake. WebRTC's voicing gate takes one long
    # unvoiced stretch of the bench for a pause: that cut leaves the audio whole (the next segment
    # begins where the cut one ends), so no word is lost.
    if vad == DEFAULT_VAD:
        assert not report.word_cuts, summary
    else:
        assert len(report.word_cuts) <= 1, summary
        cut_at = [float(c.split("@")[1].split("s(")[0]) for c in report.word_cuts]
        joins = [(a.end, b.start) for a, b in itertools.pairwise(segments)]
        for t in cut_at:
            assert any(abs(end - t) < 0.01 and abs(start - t) < 0.01 for end, start in joins), summary
    assert len(report.noise_segments) <= 1, summary
    # In gaps long enough for a segment to close, no more than the pre- and post-roll is sent, give or
    # take the VAD's own lag at each edge (0.1 s).
    assert report.long_gaps >= 5, summary
    edges = [0.0] + [t for region in row["speech"] for t in region] + [samples.shape[0] / 16000]
    gaps = [b - a for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= closing_gap]
    rolls = settings.pre_roll_seconds + settings.post_roll_seconds + 0.2
    assert report.long_gap_covered <= rolls * len(gaps) / sum(gaps), summary
    # All the speech is sent (the fine labels, without the utterances' internal pauses, which the
    # endpoint pause may now leave out), and little else.
    assert report.fine.recall >= 0.98 and report.exact.precision >= 0.8, summary

    # The audio sent is exactly the source between each segment's offset and end.
    start, parts = 0, list[np.ndarray]()
    for event in events:
        if isinstance(event, SegmentOpened):
            start, parts = round(event.offset * 16000), []
        elif isinstance(event, SegmentAudio):
            parts.append(event.samples)
        else:
            audio = np.concatenate(parts)
            assert round(event.end * 16000) - start == audio.shape[0]
            np.testing.assert_array_equal(audio, samples[start : start + audio.shape[0]])


@pytest.mark.parametrize("vad", ["webrtc", "silero"])
def test_labelled_recordings(tuner: ModuleType, vad: str) -> None:
    rows = tuner.labelled_rows(tuner.load_manifest(SPEECH))
    assert rows, "no labelled vad/ recordings in the manifest"
    per_file, overall = tuner.labelled_scores(SPEECH, rows, vad, SegmenterSettings())
    summary = f"{vad} on the labelled vad/ files: overall {overall}; " + "; ".join(
        f"{name} {score}" for name, score in per_file.items()
    )
    print("\n" + summary)
    assert overall.recall >= 0.9, summary
    target = LABELLED_F1_TARGET if vad == DEFAULT_VAD else 0.8
    assert overall.f1 >= target, summary
