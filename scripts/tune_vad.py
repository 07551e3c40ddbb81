"""Score the edge VADs + segmenter against the labelled speech of the dev set, and sweep settings.

    python scripts/tune_vad.py                      # both VADs at the default settings
    python scripts/tune_vad.py --vad silero --sweep hangover_seconds=1.0,1.5,1.8,2.0
    python scripts/tune_vad.py --vad webrtc --mode 2 --set min_speech_seconds=0.2 --segments

For each VAD it prints, on ``constructed/vad_bench_dev.wav``: utterances found, cuts inside utterances
(in a word / in a pause), noise gaps that became segments of their own, and frame-level (10 ms)
precision / recall / F1 of the segments (the audio that would be sent) against ``speech`` with a
±0.25 s collar, against ``speech`` without a collar, and against ``speech_fine_approx``; then the same
figures on the labelled ``vad/`` recordings, and the throughput of VAD + segmenter in × real time.

The data lives outside the repository (``../shared/data/speech``, or ``--data``); nothing is copied.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from voxrelay.edge.capture.files import WavSource  # noqa: E402
from voxrelay.edge.events import AudioBlock, SegmentClosed, SegmentEvent, SegmentOpened  # noqa: E402
from voxrelay.edge.vad.detectors import make_vad  # noqa: E402
from voxrelay.edge.vad.segmenter import SegmenterSettings  # noqa: E402
from voxrelay.edge.vad.speech import SpeechSegmenter  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "speech"
BENCH = "constructed/vad_bench_dev.wav"
STEP = 0.01  # scoring resolution, seconds
COLLAR = 0.25
WORD_TOLERANCE = 0.05  # a cut this close to a region edge or inside a pause is not "in a word"


@dataclass(frozen=True)
class Seg:
    start: float
    end: float
    speech_end: float
    forced: bool


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float

    def __str__(self) -> str:
        return f"P {self.precision:.3f} R {self.recall:.3f} F1 {self.f1:.3f}"


def load_manifest(data: Path) -> list[dict]:
    with (data / "manifest.jsonl").open() as f:
        return [json.loads(line) for line in f if line.strip()]


def read_blocks(path: Path, block_seconds: float | None = None) -> list[AudioBlock]:
    """The file in the blocks of an unpaced WavSource (segments do not depend on the block size)."""
    return list(WavSource(str(path), block_seconds=block_seconds).blocks())


def run_events(
    blocks: Sequence[AudioBlock],
    vad_name: str,
    settings: SegmenterSettings | None = None,
    mode: int | None = None,
    threshold: float | None = None,
) -> list[SegmentEvent]:
    """All the segment events of VAD + segmenter over ``blocks`` (flushed at the end)."""
    segmenter = SpeechSegmenter(make_vad(vad_name, mode=mode, threshold=threshold), settings)
    return [e for b in blocks for e in segmenter.feed(b)] + segmenter.flush()


def segments_of(events: Sequence[SegmentEvent]) -> list[Seg]:
    out: list[Seg] = []
    start = 0.0
    for event in events:
        if isinstance(event, SegmentOpened):
            start = event.offset
        elif isinstance(event, SegmentClosed):
            out.append(Seg(start, event.end, event.speech_end, event.stats.forced_split))
    return out


def segment(
    blocks: Sequence[AudioBlock],
    vad_name: str,
    settings: SegmenterSettings | None = None,
    mode: int | None = None,
    threshold: float | None = None,
) -> list[Seg]:
    """Run VAD + segmenter over the blocks; the segments as (start, end, speech_end, forced) seconds."""
    return segments_of(run_events(blocks, vad_name, settings, mode, threshold))


def mask(regions: Sequence[Sequence[float]], duration: float) -> np.ndarray:
    n = round(duration / STEP)
    centres = (np.arange(n) + 0.5) * STEP
    m = np.zeros(n, dtype=bool)
    for a, b in regions:
        m |= (centres >= a) & (centres < b)
    return m


def scores(ref: np.ndarray, hyp: np.ndarray, collar: float = 0.0, regions: Sequence = ()) -> Scores:
    keep = np.ones(ref.shape[0], dtype=bool)
    if collar:
        centres = (np.arange(ref.shape[0]) + 0.5) * STEP
        for a, b in regions:
            for edge in (a, b):
                keep &= np.abs(centres - edge) > collar
    r, h = ref[keep], hyp[keep]
    tp = float(np.sum(r & h))
    precision = tp / max(float(np.sum(h)), 1.0)
    recall = tp / max(float(np.sum(r)), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1)


def frame_energy_db(samples: np.ndarray, t: float, width: float = 0.05) -> float:
    a, b = int(max(0.0, t - width / 2) * 16000), int((t + width / 2) * 16000)
    x = samples[a:b].astype(np.float64) / 32768.0
    return float(10 * np.log10(np.mean(x * x) + 1e-12))


@dataclass(frozen=True)
class BenchReport:
    found: list[str]
    missed: list[str]
    word_cuts: list[str]  # cuts inside an utterance where it is not pausing
    pause_cuts: list[str]  # cuts inside an utterance's internal pause
    noise_segments: list[str]  # segments that lie inside a noise/silence gap
    noise_covered: float  # fraction of non-speech time sent as part of some segment
    long_gaps: int  # gaps long enough for a segment to close in them
    long_gap_covered: float  # fraction of their time sent (pre-roll + post-roll alone send some)
    coarse: Scores  # vs speech, ±0.25 s collar
    exact: Scores  # vs speech, no collar
    fine: Scores  # vs speech_fine_approx, no collar
    segments: list[Seg]

    def lines(self) -> list[str]:
        forced = sum(s.forced for s in self.segments)
        return [
            f"utterances found {len(self.found)}/{len(self.found) + len(self.missed)}"
            + (f" (missed: {', '.join(self.missed)})" if self.missed else ""),
            f"segments {len(self.segments)} (forced splits {forced}); cuts in a word {len(self.word_cuts)}"
            f" {self.word_cuts}; cuts in an internal pause {len(self.pause_cuts)} {self.pause_cuts}",
            f"noise-only segments {len(self.noise_segments)} {self.noise_segments}; "
            f"non-speech time sent {100 * self.noise_covered:.0f}% (in the {self.long_gaps} gaps long enough "
            f"to close a segment: {100 * self.long_gap_covered:.0f}%)",
            f"vs speech ±{COLLAR}s collar: {self.coarse} | vs speech: {self.exact} | vs speech_fine: {self.fine}",
        ]


def bench_report(
    row: dict, samples: np.ndarray, segs: list[Seg], max_segment: float, closing_gap: float = 2.4
) -> BenchReport:
    """Score ``segs`` against the constructed bench's ground truth.

    A segment boundary strictly inside an utterance's region is a cut. It is "in a pause" when it lies in
    one of the utterance's ``internal_pauses_approx`` or where the audio (50 ms around it) is below the
    utterance's own speech threshold ``threshold_dbfs``; otherwise it is "in a word". A cut in a pause is
    expected only in a region longer than ``max_segment`` (a forced split); elsewhere it is flagged.
    Gaps of at least ``closing_gap`` seconds (hangover + pre-roll + post-roll) are where noise shows:
    a segment should close in them, so only its pre- and post-roll are sent.
    """
    duration = samples.shape[0] / 16000
    hyp = mask([(s.start, s.end) for s in segs], duration)
    ref = mask(row["speech"], duration)
    found: list[str] = []
    missed: list[str] = []
    word_cuts: list[str] = []
    pause_cuts: list[str] = []
    boundaries = sorted({round(t, 3) for s in segs for t in (s.start, s.end)})
    for u in row["utterances"]:
        a, b = u["start"], u["end"]
        # Found: at least 90 % of its speech was sent (its internal pauses may be left out, as the
        # endpoint pause closes a segment in any pause that long).
        speech = ~mask(u.get("internal_pauses_approx", []), duration)[round(a / STEP) : round(b / STEP)]
        inside = hyp[round(a / STEP) : round(b / STEP)][speech]
        (found if inside.size and inside.mean() >= 0.9 else missed).append(u["id"])
        for t in boundaries:
            if not a + WORD_TOLERANCE < t < b - WORD_TOLERANCE:
                continue
            level = frame_energy_db(samples, t)
            label = f"{u['id']}@{t:.2f}s({level:.0f}dBFS)"
            pauses = u.get("internal_pauses_approx", [])
            in_pause = level < u["threshold_dbfs"] or any(
                p0 - WORD_TOLERANCE <= t <= p1 + WORD_TOLERANCE for p0, p1 in pauses
            )
            if not in_pause:
                word_cuts.append(label)
            else:
                pause_cuts.append(label if b - a > max_segment else label + "[region under the max length]")
    gap = ~ref
    edges = [0.0] + [t for region in row["speech"] for t in region] + [duration]
    long_gap = mask([(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= closing_gap], duration)
    noise_segments = [
        f"{s.start:.2f}-{s.end:.2f}" for s in segs if not ref[round(s.start / STEP) : round(s.end / STEP)].any()
    ]
    return BenchReport(
        found=found,
        missed=missed,
        word_cuts=word_cuts,
        pause_cuts=pause_cuts,
        noise_segments=noise_segments,
        noise_covered=float(np.sum(hyp & gap) / max(int(np.sum(gap)), 1)),
        long_gaps=sum(1 for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= closing_gap),
        long_gap_covered=float(np.sum(hyp & long_gap) / max(int(np.sum(long_gap)), 1)),
        coarse=scores(ref, hyp, COLLAR, row["speech"]),
        exact=scores(ref, hyp),
        fine=scores(mask(row["speech_fine_approx"], duration), hyp),
        segments=segs,
    )


def labelled_rows(manifest: list[dict]) -> list[dict]:
    return [r for r in manifest if r.get("speech") and r["audio"].startswith("vad/")]


def labelled_scores(
    data: Path,
    rows: list[dict],
    vad_name: str,
    settings: SegmenterSettings | None,
    mode: int | None = None,
    threshold: float | None = None,
) -> tuple[dict[str, Scores], Scores]:
    per_file: dict[str, Scores] = {}
    refs, hyps = [], []
    for row in rows:
        blocks = read_blocks(data / row["audio"])
        duration = sum(b.samples.shape[0] for b in blocks) / 16000
        segs = segment(blocks, vad_name, settings, mode, threshold)
        ref, hyp = mask(row["speech"], duration), mask([(s.start, s.end) for s in segs], duration)
        per_file[row["id"]] = scores(ref, hyp)
        refs.append(ref)
        hyps.append(hyp)
    return per_file, scores(np.concatenate(refs), np.concatenate(hyps))


def throughput(
    blocks: Sequence[AudioBlock],
    vad_name: str,
    settings: SegmenterSettings | None,
    mode: int | None = None,
    threshold: float | None = None,
) -> float:
    audio = sum(b.samples.shape[0] for b in blocks) / 16000
    segmenter = SpeechSegmenter(make_vad(vad_name, mode=mode, threshold=threshold), settings)
    t0 = time.perf_counter()
    for b in blocks:
        segmenter.feed(b)
    segmenter.flush()
    return audio / (time.perf_counter() - t0)


def parse_value(text: str) -> float:
    return float(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    parser.add_argument("--vad", choices=["webrtc", "silero", "both"], default="both")
    parser.add_argument("--mode", type=int, help="webrtc mode 0-3")
    parser.add_argument("--threshold", type=float, help="silero threshold 0-1")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a SegmenterSettings field, e.g. hangover_seconds=1.5 (repeatable)",
    )
    parser.add_argument("--sweep", metavar="FIELD=V1,V2,...", help="score each value of one setting")
    parser.add_argument("--segments", action="store_true", help="list the bench segments")
    args = parser.parse_args(argv)
    if not (args.data / "manifest.jsonl").is_file():
        print(f"no speech data at {args.data} (pass --data)", file=sys.stderr)
        return 2
    manifest = load_manifest(args.data)
    bench_row = next(r for r in manifest if r["audio"] == BENCH)
    rows = labelled_rows(manifest)
    bench_blocks = read_blocks(args.data / BENCH)
    bench_samples = np.concatenate([b.samples for b in bench_blocks])
    base = SegmenterSettings(**{k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)})
    variants: list[tuple[str, SegmenterSettings]] = [("defaults" if not args.set else "settings", base)]
    if args.sweep:
        field, values = args.sweep.split("=", 1)
        variants = [(f"{field}={v}", dataclasses.replace(base, **{field: parse_value(v)})) for v in values.split(",")]
    vads = ["webrtc", "silero"] if args.vad == "both" else [args.vad]
    for vad_name in vads:
        mode = args.mode if vad_name == "webrtc" else None
        threshold = args.threshold if vad_name == "silero" else None
        for label, settings in variants:
            print(f"== {vad_name} {make_vad(vad_name, mode=mode, threshold=threshold)!r} {label}")
            segs = segment(bench_blocks, vad_name, settings, mode, threshold)
            closing = settings.hangover_seconds + settings.pre_roll_seconds + settings.post_roll_seconds
            report = bench_report(bench_row, bench_samples, segs, settings.max_segment_seconds, closing)
            for line in report.lines():
                print("  bench:", line)
            if args.segments:
                for s in segs:
                    print(
                        f"    {s.start:7.2f} {s.end:7.2f} speech_end {s.speech_end:7.2f}"
                        + (" forced" if s.forced else "")
                    )
            per_file, overall = labelled_scores(args.data, rows, vad_name, settings, mode, threshold)
            for name, sc in per_file.items():
                print(f"  vad/{name}: {sc}")
            print(f"  vad/ overall: {overall}")
            speed = throughput(bench_blocks, vad_name, settings, mode, threshold)
            block = bench_blocks[0].samples.shape[0] / 16000
            print(f"  throughput: {speed:.0f}x real time (wall clock, {block:g} s blocks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
