"""Scoring detected speech against labelled speech regions, frame by frame and region by region.

Time is cut into frames of ``frame`` seconds (10 ms); a frame belongs to a set of regions when its
centre lies inside one (``start <= centre < end``). Frames whose centre lies within ``collar`` seconds
of a labelled boundary are not scored (labels are rarely exact there). Then

    precision = TP / (TP + FP),  recall = TP / (TP + FN),  F1 = 2 TP / (2 TP + FP + FN)

and, per labelled region, the segments that overlap it: how much speech they clip at the region's
onset and offset, how many there are (1 is ideal: more means the region was split), and regions with
none (missed). Per segment, the regions it overlaps (more than 1: it bridged a pause); segments that
overlap no region are false alarms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FRAME_SECONDS = 0.01

Regions = Sequence[tuple[float, float]]


def _index(t: float, frame: float) -> int:
    """The first frame whose centre lies at or after ``t``."""
    return math.ceil(round(t / frame - 0.5, 6))


def frame_mask(regions: Regions, n_frames: int, frame: float = FRAME_SECONDS) -> np.ndarray:
    """Boolean per frame: its centre lies inside one of ``regions``."""
    mask = np.zeros(n_frames, dtype=bool)
    for start, end in regions:
        mask[max(0, _index(start, frame)) : max(0, min(n_frames, _index(end, frame)))] = True
    return mask


def collar_mask(regions: Regions, n_frames: int, collar: float, frame: float = FRAME_SECONDS) -> np.ndarray:
    """Boolean per frame: scored (not within ``collar`` seconds of a region boundary)."""
    scored = np.ones(n_frames, dtype=bool)
    if collar <= 0:
        return scored
    for start, end in regions:
        for t in (start, end):
            scored[max(0, _index(t - collar, frame)) : max(0, min(n_frames, _index(t + collar, frame)))] = False
    return scored


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class FrameCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: FrameCounts) -> FrameCounts:
        return FrameCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float | None:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


@dataclass(frozen=True)
class RegionScore:
    """How the detected segments cover one labelled region (clips in seconds; None when missed)."""

    start: float
    end: float
    segments: int
    onset_clip: float | None
    offset_clip: float | None


@dataclass(frozen=True)
class VadScore:
    frames: FrameCounts
    regions: tuple[RegionScore, ...]
    false_alarms: int  # detected segments that overlap no labelled region
    # For each detected segment that overlaps labelled speech: how many regions it overlaps (more
    # than 1: it bridged the pause between them).
    regions_per_segment: tuple[int, ...] = ()

    @property
    def missed_regions(self) -> int:
        return sum(r.segments == 0 for r in self.regions)


def region_scores(reference: Regions, detected: Regions) -> tuple[RegionScore, ...]:
    out = []
    for start, end in reference:
        overlapping = [(s, e) for s, e in detected if s < end and e > start]
        if not overlapping:
            out.append(RegionScore(start, end, 0, None, None))
            continue
        onset = max(0.0, min(s for s, _ in overlapping) - start)
        offset = max(0.0, end - max(e for _, e in overlapping))
        out.append(RegionScore(start, end, len(overlapping), onset, offset))
    return tuple(out)


def score_vad(
    reference: Regions,
    detected: Regions,
    duration: float,
    *,
    collar: float = 0.0,
    frame: float = FRAME_SECONDS,
) -> VadScore:
    """Score ``detected`` speech against ``reference`` regions over ``duration`` seconds of audio."""
    n = max(0, round(duration / frame))
    ref = frame_mask(reference, n, frame)
    det = frame_mask(detected, n, frame)
    scored = collar_mask(reference, n, collar, frame)
    counts = FrameCounts(
        tp=int(np.count_nonzero(ref & det & scored)),
        fp=int(np.count_nonzero(~ref & det & scored)),
        fn=int(np.count_nonzero(ref & ~det & scored)),
    )
    overlaps = [sum(s < e2 and e > s2 for s2, e2 in reference) for s, e in detected]
    return VadScore(
        counts,
        region_scores(reference, detected),
        false_alarms=overlaps.count(0),
        regions_per_segment=tuple(n for n in overlaps if n),
    )


def summarize(scores: Sequence[VadScore]) -> dict[str, object]:
    """Pooled figures over files: frame counts summed, region figures over every labelled region."""
    counts = sum((s.frames for s in scores), FrameCounts())
    regions = [r for s in scores for r in s.regions]
    found = [r for r in regions if r.segments]
    covering = sum(len(s.regions_per_segment) for s in scores)
    onset = [1000 * r.onset_clip for r in found if r.onset_clip is not None]
    offset = [1000 * r.offset_clip for r in found if r.offset_clip is not None]
    return {
        "precision": counts.precision,
        "recall": counts.recall,
        "f1": counts.f1,
        "files": len(scores),
        "frames": {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn},
        "regions": len(regions),
        "missed_regions": len(regions) - len(found),
        "segments_per_region": ratio(sum(r.segments for r in found), len(found)),
        "regions_per_segment": ratio(sum(n for s in scores for n in s.regions_per_segment), covering),
        "onset_clip_ms": {"mean": _mean(onset), "max": max(onset, default=None)},
        "offset_clip_ms": {"mean": _mean(offset), "max": max(offset, default=None)},
        "false_alarm_segments": sum(s.false_alarms for s in scores),
    }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
