"""The edge half of the drift benchmark (``python scripts/bench_drift.py --edge``; see its --help).

The input is made as a live edge hears it: dev English utterances (asr/, without the one recording that
is itself band-limited to 8 kHz) with a random gain within ±3 dB, between 0.75-1.5 s pauses of real room
noise 20-35 dB below the speech (a fresh excerpt of the non-speech of the labelled meeting recordings in
vad/ each time), in 0.1 s blocks through the edge's VAD and segmenter (silero by default, one running
segmenter per run), observed by the edge's drift detector (voxrelay.edge.drift) exactly as
`voxrelay transcribe/listen` run it, with the shipped edge_drift thresholds. No recognizer is involved.

- reference: an edge profile of --reference-seconds of such input (its own random draws), as
  `voxrelay profile --edge` makes one;
- false alarms: --null-seconds of fresh undisturbed input (target 0);
- each shift (gain −20 dB and −30 dB, a muted input, white noise at 5 dB and 20 dB SNR, an 8 kHz band
  limit, the silero threshold far too low at 0.02), after 300 s of undisturbed input: suddenly (input
  seconds and segments closed until the first alarm) and as a ramp over --ramp-seconds;
- cost: the detector's CPU time per second of input next to that of the VAD and segmenter.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from bench_drift import RATE, read_wav, rms, room_noise

from voxrelay.edge.agent import VadSettings
from voxrelay.edge.drift import EdgeDrift, EdgeDriftSession
from voxrelay.edge.events import AudioBlock, SegmentClosed
from voxrelay.monitoring.profile import ReferenceProfile
from voxrelay.monitoring.thresholds import load_thresholds

SHIFTS = (
    "gain -20 dB",
    "gain -30 dB",
    "muted",
    "noise 5 dB SNR",
    "noise 20 dB SNR",
    "8 kHz band limit",
    "VAD threshold 0.02",
)
BLOCK = RATE // 10
WARM_SECONDS = 300.0
SUDDEN_MAX_SECONDS = 300.0


@dataclass(frozen=True)
class EdgeShift:
    gain_db: float = 0.0
    muted: bool = False
    snr_db: float | None = None  # added white noise at this SNR (to the utterance)
    band_hz: float | None = None  # resampled to 2×band_hz and back: nothing above band_hz
    vad_threshold: float | None = None


def shift_at(kind: str, amount: float) -> EdgeShift:
    """``kind`` at ``amount`` (0 = none, 1 = full)."""
    if kind.startswith("gain"):
        return EdgeShift(gain_db=float(kind.split()[1]) * amount)
    if kind == "muted":  # a fade to digital silence
        return EdgeShift(muted=True) if amount >= 1.0 else EdgeShift(gain_db=-60.0 * amount)
    if kind.startswith("noise"):  # the noise's amplitude grows linearly to the full SNR
        return EdgeShift(snr_db=float(kind.split()[1]) - 20.0 * np.log10(max(amount, 1e-3)))
    if kind.startswith("8 kHz"):
        return EdgeShift(band_hz=8000.0 - 4000.0 * amount)
    target = float(kind.rsplit(" ", 1)[1])  # silero's default is 0.5; the ramp falls geometrically
    return EdgeShift(vad_threshold=float(0.5 * (target / 0.5) ** amount))


class EdgeInput:
    """The input stream of one edge, and the CPU time its VAD + segmenter and its drift detector take."""

    def __init__(self, speech: Path, seed: int, vad: str) -> None:
        rows = [json.loads(line) for line in (speech / "manifest.jsonl").read_text().splitlines() if line.strip()]
        self.english = [
            read_wav(speech / r["audio"]) for r in rows if r["audio"].startswith("asr/") and "_8k" not in r["audio"]
        ]
        self.bed = room_noise(speech, rows)
        self.rng = np.random.default_rng(seed)
        self.vad = VadSettings(vad=vad)
        self.vad_cpu = 0.0
        self.drift_cpu = 0.0
        self.seconds = 0.0

    def clip(self, shift: EdgeShift) -> np.ndarray:
        rng = self.rng
        utterance = self.english[int(rng.integers(len(self.english)))] * 10 ** (rng.uniform(-3.0, 3.0) / 20)
        before, after = (int(rng.uniform(0.75, 1.5) * RATE) for _ in range(2))
        n = before + utterance.size + after
        noise = np.resize(np.roll(self.bed, -int(rng.integers(self.bed.size))), n)
        clip = noise * (rms(utterance) / rms(noise) * 10 ** (-rng.uniform(20.0, 35.0) / 20))
        clip[before : before + utterance.size] += utterance
        if shift.snr_db is not None:
            clip = clip + rng.standard_normal(n).astype(np.float32) * (rms(utterance) * 10 ** (-shift.snr_db / 20))
        if shift.band_hz is not None and shift.band_hz < 7900:
            rate = int(round(2 * shift.band_hz / 100) * 100)
            clip = soxr.resample(soxr.resample(clip, RATE, rate), rate, RATE)[:n]
        if shift.muted:
            return np.zeros(n, dtype=np.int16)
        clip = clip * 10 ** (shift.gain_db / 20)
        return np.round(np.clip(clip, -1.0, 32767 / 32768) * 32767).astype(np.int16)

    def run(
        self, drift: EdgeDrift, shift: Callable[[float], EdgeShift], seconds: float, stop_on_alarm: bool = False
    ) -> tuple[float, int, list[tuple[float, int, str]]]:
        """Feed ``seconds`` of input (``shift(t)``: the shift ``t`` seconds in) through a fresh segmenter into
        ``drift``; returns the seconds fed, the segments closed, and each alarm onset (seconds, segments,
        feature)."""
        segmenter = self.vad.make_segmenter()
        session: EdgeDriftSession = drift.session()
        vad: Any = segmenter.vad
        silero = hasattr(vad, "release_threshold")
        default = (vad.threshold, vad.release_threshold) if silero else None
        t, segments, onsets = 0.0, 0, []
        on: set[str] = set()
        while t < seconds:
            current = shift(t)
            low = current.vad_threshold
            if silero:
                # As `--vad-threshold` sets them: speech starts at the threshold and ends 0.15 below it.
                vad.threshold, vad.release_threshold = default if low is None else (low, max(0.01, low - 0.15))
            samples = self.clip(current)
            for i in range(0, samples.size, BLOCK):
                block = AudioBlock(samples[i : i + BLOCK], self.seconds)
                began = time.process_time()
                session.block(block)
                between = time.process_time()
                events = segmenter.feed(block)
                fed = time.process_time()
                session.segmented(segmenter.stats(), fed - between)
                for event in events:
                    session.produced(event)
                    segments += isinstance(event, SegmentClosed)
                done = time.process_time()
                self.vad_cpu += fed - between
                self.drift_cpu += (between - began) + (done - fed)
                dt = block.samples.size / RATE
                t += dt
                self.seconds += dt
                now = set(drift.detector.firing())
                for feature in sorted(now - on):
                    onsets.append((t, segments, feature))
                on = now
            if stop_on_alarm and onsets:
                break
        return t, segments, onsets


def run_edge(args: argparse.Namespace) -> int:
    thresholds = load_thresholds(args.thresholds)
    settings = thresholds.edge_drift
    began = time.perf_counter()
    edge = EdgeInput(args.speech, args.seed, args.vad)

    def undisturbed(_: float) -> EdgeShift:
        return EdgeShift()

    collector = EdgeDrift(edge.vad.vad, settings, collect=True)
    edge.run(collector, undisturbed, args.reference_seconds)
    profile: ReferenceProfile = collector.collected_profile("folder", "bench reference draws")
    print(
        f"edge drift, vad {edge.vad.vad}; reference {profile.segments} segments ({args.reference_seconds:.0f} s of "
        f"input); windows {settings.short_window}/{settings.long_window} values, chunks of "
        f"{settings.stream_seconds:g} s, scored every {settings.score_interval_seconds:g} s of input"
    )

    edge.vad_cpu = edge.drift_cpu = 0.0
    null = EdgeDrift(edge.vad.vad, settings, profile)
    null_seconds, null_segments, false_alarms = edge.run(null, undisturbed, args.null_seconds)
    vad_cost, drift_cost = edge.vad_cpu / null_seconds, edge.drift_cpu / null_seconds

    rows = []
    warm_alarms: list[str] = []
    for kind in args.only or SHIFTS:
        row = [kind]
        for mode in ("sudden", "ramp"):
            drift = EdgeDrift(edge.vad.vad, settings, profile)
            _, _, warm = edge.run(drift, undisturbed, WARM_SECONDS)
            limit = SUDDEN_MAX_SECONDS if mode == "sudden" else args.ramp_seconds

            def shifted(t: float, kind: str = kind, mode: str = mode, limit: float = limit) -> EdgeShift:
                return shift_at(kind, 1.0 if mode == "sudden" else min(1.0, (t + 1e-9) / limit))

            _, _, onsets = edge.run(drift, shifted, limit, stop_on_alarm=True)
            warm_alarms += [f"{f} in the warm-up of {kind}, {mode}" for _, _, f in warm]
            cell = f"(warm-up raised {', '.join(f for _, _, f in warm)}) " if warm else ""
            if onsets:
                seconds, segments, _ = onsets[0]
                features = sorted({f for s, _, f in onsets if s == seconds})
                cell += f"{seconds:.0f} s, {segments} segments ({', '.join(features)})"
            else:
                cell += f"none within {limit:.0f} s"
            row.append(cell)
        rows.append(row)

    print()
    print(f"{'shift':<20} {'sudden: input until the alarm':<52} ramp over {args.ramp_seconds:.0f} s: until the alarm")
    for row in rows:
        print(f"{row[0]:<20} {row[1]:<52} {row[2]}")
    print()
    onsets = ", ".join(f"{f} at {s:.0f} s" for s, _, f in false_alarms) or "none"
    print(
        f"false alarms over {null_seconds / 3600:.2f} h of undisturbed input ({null_segments} segments): "
        f"{len(false_alarms)} ({onsets}); over the {2 * len(rows)} warm-ups "
        f"({2 * len(rows) * WARM_SECONDS / 3600:.2f} h more): {len(warm_alarms)} ({', '.join(warm_alarms) or 'none'})"
    )
    print(
        f"edge CPU per second of input: drift detector {drift_cost * 1e3:.2f} ms (features, windows, scoring) vs "
        f"VAD + segmenter {vad_cost * 1e3:.2f} ms ({drift_cost / vad_cost:.0%} of it); "
        f"wall {time.perf_counter() - began:.0f} s"
    )
    return 0
