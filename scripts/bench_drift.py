#!/usr/bin/env python3
"""Drift detection benchmark on the development speech.

    python scripts/bench_drift.py [--speech DIR] [--null-segments 2000] [--reference-segments 200]
                                  [--seed 7] [--cpu-lock PATH]
    python scripts/bench_drift.py --edge [--null-seconds 3600] [--reference-seconds 1200] [--ramp-seconds 600]

--edge benchmarks the edge's own input drift detector instead (no recognizer; see bench_edge_drift.py).

Segments are made the way live traffic is: a dev utterance (English, from asr/) with a random gain
within ±3 dB, between 0.75-1.5 s pauses of room noise (a fresh random excerpt of the non-speech of the
labelled meeting recordings in vad/, 20-35 dB below the speech), cut by
the edge's own VAD and segmenter (silero, defaults; one running segmenter over the whole stream),
recognised by tiny.en (faster-whisper, int8, --beam-size as `voxrelay serve` would run it) and
measured by the recognizer's monitor code (the features the server
extracts from each segment's audio, VAD figures and result). A reference profile is made from
--reference-segments such segments (their own random draws); then:

- false alarms: --null-segments undisturbed segments (fresh draws) through a monitor with the shipped
  thresholds, counting every drift alarm that goes on (target 0);
- for each shift (gain −20 dB, noise at 5 dB SNR, an 8 kHz band limit, a language switch: the
  multilingual files through tiny.en, a VAD threshold far too low: silero at 0.02 and at 0.005
  instead of 0.5), a monitor warmed with 200 undisturbed segments is fed shifted segments, suddenly
  (the full shift at once; target: an alarm within 20 segments) and as a ramp over 200 segments
  (target: before its end). Printed: the segments until the first alarm, and which features fired;
- cost: the monitors' CPU time per segment (features + O(1) updates + scoring every 5 s of audio)
  next to recognising that segment (target < 1 %).

Scoring follows the stream's own clock: one score every score_interval_seconds (5 s) of audio, as a
live stream would be scored. --cpu-lock PATH takes an exclusive lock on PATH (flock) around each
batch of recognitions and releases it between batches, so that a shared machine is not held for
the whole run; timings are CPU times measured inside the locked batches.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from voxrelay.cloud.backends import load_backend  # noqa: E402
from voxrelay.cloud.backends.base import DecodeOptions  # noqa: E402
from voxrelay.cloud.engine import Recognition  # noqa: E402
from voxrelay.cloud.watch import model_ref, observation, vad_features  # noqa: E402
from voxrelay.cloud.wire import recognition_result  # noqa: E402
from voxrelay.edge.agent import VadSettings  # noqa: E402
from voxrelay.edge.events import AudioBlock, SegmentAudio, SegmentClosed  # noqa: E402
from voxrelay.monitoring.features import RepeatTracker, SegmentObservation, extract  # noqa: E402
from voxrelay.monitoring.monitor import Monitor  # noqa: E402
from voxrelay.monitoring.profile import ReferenceProfile, build_profile  # noqa: E402
from voxrelay.monitoring.thresholds import load_thresholds  # noqa: E402
from voxrelay.protos import pb  # noqa: E402

DEFAULT_SPEECH = ROOT.parent / "shared" / "data" / "speech"
RATE = 16000
SHIFTS = (
    "gain -20 dB",
    "noise 5 dB SNR",
    "8 kHz band limit",
    "language switch",
    "VAD threshold 0.02",
    "VAD threshold 0.005",
)
RAMP = 200
SUDDEN_MAX = 60
WARM = 200


def pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size)
    spectrum[1:] /= np.sqrt(f[1:])
    x = np.fft.irfft(spectrum, n)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


@dataclass(frozen=True)
class Shift:
    gain_db: float = 0.0
    snr_db: float | None = None  # added white noise at this SNR
    band_hz: float | None = None  # resampled to 2×band_hz and back
    foreign: float = 0.0  # probability of a multilingual file
    vad_threshold: float | None = None


def shift_at(kind: str, amount: float) -> Shift:
    """``kind`` at ``amount`` (0 = none, 1 = full)."""
    if kind.startswith("gain"):
        return Shift(gain_db=-20.0 * amount)
    if kind.startswith("noise"):
        # Noise amplitude grows linearly: 5 dB SNR at full strength.
        return Shift(snr_db=5.0 - 20.0 * np.log10(max(amount, 1e-3)))
    if kind.startswith("8 kHz"):
        return Shift(band_hz=8000.0 - 4000.0 * amount)
    if kind.startswith("language"):
        return Shift(foreign=amount)
    target = float(kind.rsplit(" ", 1)[1])  # silero's default is 0.5; the ramp falls geometrically
    return Shift(vad_threshold=float(0.5 * (target / 0.5) ** amount))


def read_wav(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(str(path), dtype="float32")
    assert rate == RATE and audio.ndim == 1
    return audio


def room_noise(speech: Path, rows: list[dict]) -> np.ndarray:
    """The non-speech stretches of the labelled meeting recordings (vad/), 0.25 s clear of speech."""
    pieces = []
    for row in rows:
        if not (row.get("speech") and row["audio"].startswith("vad/")):
            continue
        audio = read_wav(speech / row["audio"])
        previous = 0.0
        for start, end in [*row["speech"], [row["duration_s"] + 0.25, 0.0]]:
            a, b = previous + 0.25, start - 0.25
            if b - a > 0.3:
                pieces.append(audio[int(a * RATE) : int(b * RATE)])
            previous = end
    return np.concatenate(pieces)


class Traffic:
    """A continuous stream: dev utterances between pauses of real room noise → (shift) → the edge's VAD and
    segmenter (one running segmenter, so a VAD that hears speech in the pauses merges utterances) →
    tiny.en → the recognizer's observation of each segment."""

    def __init__(self, speech: Path, seed: int, beam: int, cache: bool = False) -> None:
        rows = [json.loads(line) for line in (speech / "manifest.jsonl").read_text().splitlines() if line.strip()]
        self.english = [read_wav(speech / r["audio"]) for r in rows if r["audio"].startswith("asr/")]
        self.foreign = [read_wav(speech / r["audio"]) for r in rows if r["audio"].startswith("multilingual/")]
        self.bed = room_noise(speech, rows)
        self.rng = np.random.default_rng(seed)
        self.backend = load_backend("tiny.en", "faster-whisper", compute_type="int8")
        self.options = DecodeOptions(beam_size=beam)
        self.model = model_ref(self.backend.model)
        self.segmenter = VadSettings(vad="silero").make_segmenter()
        self.default_threshold = self.segmenter.vad.threshold  # type: ignore[attr-defined]
        self.t = 0.0
        self.fed_since = 0.0
        self.held: dict[int, list[np.ndarray]] = {}
        self.ready: list[tuple[np.ndarray, pb.VadStats, float]] = []
        self.recognition_cpu = 0.0
        self.recognised = 0
        self.audio_seconds = 0.0
        # Recognizer outputs reused for segments of the same utterances, length and shift bucket.
        self.cache: dict[tuple, object] | None = {} if cache else None
        self.reused = 0
        self.placed: list[tuple[float, float, str]] = []  # (start, end, utterance key) in stream time

    def _clip(self, shift: Shift) -> np.ndarray:
        rng = self.rng
        foreign = rng.random() < shift.foreign
        pool = self.foreign if foreign else self.english
        index = int(rng.integers(len(pool)))
        utterance = pool[index] * 10 ** (rng.uniform(-3.0, 3.0) / 20)
        before, after = (int(rng.uniform(0.75, 1.5) * RATE) for _ in range(2))
        start = self.t + before / RATE
        self.placed.append((start, start + utterance.size / RATE, f"{'f' if foreign else 'e'}{index}"))
        self.placed = self.placed[-64:]
        n = before + utterance.size + after
        noise = np.resize(np.roll(self.bed, -int(rng.integers(self.bed.size))), n)
        clip = noise * (rms(utterance) / rms(noise) * 10 ** (-rng.uniform(20.0, 35.0) / 20))
        clip[before : before + utterance.size] += utterance
        if shift.snr_db is not None:
            white = rng.standard_normal(n).astype(np.float32)
            clip = clip + white * (rms(utterance) * 10 ** (-shift.snr_db / 20))
        if shift.band_hz is not None and shift.band_hz < 7900:
            rate = int(round(2 * shift.band_hz / 100) * 100)
            clip = soxr.resample(soxr.resample(clip, RATE, rate), rate, RATE)[:n]
        clip = clip * 10 ** (shift.gain_db / 20)
        return np.clip(clip, -1.0, 32767 / 32768).astype(np.float32)

    def _feed(self, shift: Shift) -> None:
        clip = self._clip(shift)
        vad = self.segmenter.vad
        vad.threshold = self.default_threshold if shift.vad_threshold is None else shift.vad_threshold  # type: ignore[attr-defined]
        samples = np.round(clip * 32767).astype(np.int16)
        for event in self.segmenter.feed(AudioBlock(samples, self.t)):
            if isinstance(event, SegmentAudio):
                self.held.setdefault(event.sequence, []).append(event.samples)
            elif isinstance(event, SegmentClosed):
                audio = np.concatenate(self.held.pop(event.sequence, [np.zeros(0, np.int16)]))
                s = event.stats
                stats = pb.VadStats(
                    vad=s.vad,
                    speech_ratio=s.speech_ratio,
                    mean_speech_probability=s.mean_speech_probability,
                    level_dbfs=s.level_dbfs,
                    clipping_ratio=s.clipping_ratio,
                    forced_split=s.forced_split,
                )
                self.ready.append((audio, stats, event.end))
        self.t += clip.size / RATE
        self.fed_since += clip.size / RATE

    def next(self, shift: Shift) -> tuple[SegmentObservation, float]:
        """The next segment of the stream under ``shift``, and the stream seconds since the previous one."""
        while True:
            while not self.ready:
                self._feed(shift)
            audio16, stats, end = self.ready.pop(0)
            if audio16.size < RATE // 10:
                continue
            audio = audio16.astype(np.float32) / 32768.0
            key = self._key(shift, end - audio.size / RATE, end)
            transcript = None if self.cache is None else self.cache.get(key)
            spent = 0.0
            if transcript is None:
                began = time.process_time()
                transcript = self.backend.transcribe(audio, self.options)
                spent = time.process_time() - began
                self.recognition_cpu += spent
                self.recognised += 1
                self.audio_seconds += audio.size / RATE
                if self.cache is not None:
                    self.cache[key] = transcript
            else:
                self.reused += 1
            result = recognition_result(
                Recognition(transcript, 0.0, spent),
                segment_id="bench",
                offset=max(0.0, end - audio.size / RATE),
                audio_seconds=audio.size / RATE,
                model=self.backend.model,
                slot="stable",
            )
            seconds, self.fed_since = self.fed_since, 0.0
            return observation(result, audio, vad_features(stats), "bench/stream"), seconds

    def _key(self, shift: Shift, start: float, end: float) -> tuple:
        """What a cached recognition must share: the utterances in the segment (each with the share of it
        the segment holds, in tenths), the segment's length (quarter seconds) and the shift's bucket
        (gain and SNR to 2 dB, band to 500 Hz, VAD threshold to 2 significant digits)."""
        parts = []
        for a, b, name in self.placed:
            overlap = min(b, end) - max(a, start)
            if overlap > 0.05:
                parts.append((name, round(10 * overlap / (b - a))))
        return (
            tuple(parts),
            round(4 * (end - start)),
            round(shift.gain_db / 2),
            None if shift.snr_db is None else round(shift.snr_db / 2),
            None if shift.band_hz is None else round(shift.band_hz / 500),
            None if shift.vad_threshold is None else float(f"{shift.vad_threshold:.2g}"),
        )


class StreamClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Run:
    """A monitor on its own stream clock; counts alarms and the monitors' CPU time."""

    def __init__(self, traffic: Traffic, profile: ReferenceProfile, thresholds_path: str | None) -> None:
        self.clock = StreamClock()
        thresholds = load_thresholds(thresholds_path)
        self.interval = thresholds.drift.score_interval_seconds
        self.monitor = Monitor(
            {"tiny.en": traffic.model}, thresholds.drift, CollectorRegistry(), {"tiny.en": profile}, clock=self.clock
        )
        self.cpu = 0.0
        self.segments = 0
        self._next = self.interval
        self.onsets: list[tuple[int, str]] = []
        self._on: set[str] = set()
        self._scorings = 0

    def feed(self, obs: SegmentObservation, seconds: float) -> list[str]:
        """One segment; returns the features whose alarm went on."""
        began = time.process_time()
        self.monitor.process("tiny.en", obs)
        self.clock.now += seconds
        fired: list[str] = []
        if self.clock.now >= self._next:
            self._next = self.clock.now + self.interval
            self.monitor.score()
        self.cpu += time.process_time() - began
        if self.monitor.scorings_done != self._scorings:
            self._scorings = self.monitor.scorings_done
            now_on = set(self.monitor.drifting("tiny.en"))
            fired = sorted(now_on - self._on)
            self._on = now_on
        self.segments += 1
        for feature in fired:
            self.onsets.append((self.segments, feature))
        return fired


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--null-segments", type=int, default=2000)
    parser.add_argument("--reference-segments", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--thresholds", help="thresholds file (default: the shipped one)")
    parser.add_argument("--cpu-lock", metavar="PATH", help="hold an flock on PATH only while recognising")
    parser.add_argument("--only", action="append", help="run only these shifts")
    edge = parser.add_argument_group("the edge's input drift detector (--edge)")
    edge.add_argument("--edge", action="store_true", help="benchmark the edge's detector (no recognizer)")
    edge.add_argument("--null-seconds", type=float, default=3600.0, help="undisturbed input for false alarms")
    edge.add_argument("--reference-seconds", type=float, default=1200.0, help="input behind the edge profile")
    edge.add_argument("--ramp-seconds", type=float, default=600.0, help="length of each gradual shift")
    edge.add_argument("--vad", default="silero", choices=("silero", "webrtc"), help="the edge VAD (default silero)")
    parser.add_argument(
        "--reuse-recognitions",
        action="store_true",
        help="decode a segment only once per (utterances it holds, length to 0.25 s, shift bucket) and reuse "
        "tiny.en's output for later segments with the same key (their audio features are still measured on "
        "their own audio); the figures say how many outputs were reused",
    )
    args = parser.parse_args()
    if not (args.speech / "manifest.jsonl").is_file():
        print(f"no dev speech set at {args.speech}", file=sys.stderr)
        return 1
    if args.edge:
        from bench_edge_drift import SHIFTS as EDGE_SHIFTS
        from bench_edge_drift import run_edge

        unknown = [k for k in args.only or () if k not in EDGE_SHIFTS]
        if unknown:
            parser.error(f"--only {unknown[0]!r}: not one of {', '.join(EDGE_SHIFTS)}")
        return run_edge(args)
    unknown = [k for k in args.only or () if k not in SHIFTS]
    if unknown:
        parser.error(f"--only {unknown[0]!r}: not one of {', '.join(SHIFTS)}")

    @contextlib.contextmanager
    def locked() -> Iterator[None]:
        if not args.cpu_lock:
            yield
            return
        with open(args.cpu_lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def take(traffic: Traffic, n: int) -> list[tuple[SegmentObservation, float]]:
        out = []
        while len(out) < n:
            with locked():
                for _ in range(min(40, n - len(out))):
                    out.append(traffic.next(Shift()))
        return out

    with locked():
        traffic = Traffic(args.speech, args.seed, args.beam_size, cache=args.reuse_recognitions)
    began = time.perf_counter()
    # The reference: its own draws of undisturbed traffic, measured as the recognizer measures them.
    reference = take(traffic, args.reference_segments)
    repeats = RepeatTracker()
    values: dict[str, list[float | str]] = {}
    for obs, _ in reference:
        for name, value in extract(obs, repeats).items():
            values.setdefault(name, []).append(value)
    profile = build_profile(values, traffic.model, "folder", "bench reference draws", len(reference))
    thresholds = load_thresholds(args.thresholds)
    print(
        f"model tiny.en ({traffic.backend.model.backend}, int8, beam {args.beam_size}), vad silero; reference "
        f"{len(reference)} segments; windows {thresholds.drift.short_window}/{thresholds.drift.long_window} segments, "
        f"scored every {thresholds.drift.score_interval_seconds:g} s of stream"
    )

    # False alarms over undisturbed traffic.
    null_run = Run(traffic, profile, args.thresholds)
    undisturbed: list[tuple[SegmentObservation, float]] = []
    while null_run.segments < args.null_segments:
        batch = take(traffic, min(40, args.null_segments - null_run.segments))
        for obs, seconds in batch:
            null_run.feed(obs, seconds)
        undisturbed.extend(batch[-WARM:])
        undisturbed = undisturbed[-WARM:]
    monitor_cpu_per_segment = null_run.cpu / null_run.segments
    recognition_cpu_per_segment = traffic.recognition_cpu / traffic.recognised

    rows = []
    for kind in args.only or SHIFTS:
        row = [kind]
        for mode in ("sudden", "ramp"):
            run = Run(traffic, profile, args.thresholds)
            traffic.ready.clear()  # segments cut before the shift began
            for obs, seconds in undisturbed:
                run.feed(obs, seconds)
            warm_alarms = len(run.onsets)
            base = run.segments
            limit = SUDDEN_MAX if mode == "sudden" else RAMP
            detected: tuple[int, list[str]] | None = None
            i = 0
            while i < limit and detected is None:
                with locked():
                    for _ in range(min(10, limit - i)):
                        amount = 1.0 if mode == "sudden" else (i + 1) / RAMP
                        obs, seconds = traffic.next(shift_at(kind, amount))
                        i += 1
                        fired = run.feed(obs, seconds)
                        if fired and detected is None:
                            detected = (run.segments - base, fired)
                            break
            if warm_alarms:
                row.append(f"(warm-up raised {warm_alarms} alarm(s))")
            row.append(f"{detected[0]} ({', '.join(detected[1])})" if detected else f"none within {limit}")
        rows.append(row)

    print()
    print(f"{'shift':<22} {'sudden: segments to alarm':<44} ramp over {RAMP}: segments to alarm")
    for row in rows:
        print(f"{row[0]:<22} {row[1]:<44} {' '.join(row[2:])}")
    print()
    onsets = ", ".join(f"{f} at segment {n}" for n, f in null_run.onsets) or "none"
    print(f"false alarms over {null_run.segments} undisturbed segments: {len(null_run.onsets)} ({onsets})")
    ratio = monitor_cpu_per_segment / recognition_cpu_per_segment
    print(
        f"CPU per segment: monitors {monitor_cpu_per_segment * 1e3:.2f} ms (features, windows, scoring) vs "
        f"recognition {recognition_cpu_per_segment * 1e3:.0f} ms (tiny.en): {ratio:.2%}; "
        f"mean segment {traffic.audio_seconds / traffic.recognised:.1f} s, {traffic.recognised} recognised, "
        f"wall {time.perf_counter() - began:.0f} s"
    )
    if traffic.cache is not None:
        print(
            f"recognitions: {traffic.recognised} segments decoded, {traffic.reused} reused the output decoded for "
            "an earlier segment of the same utterances, length and shift bucket (--reuse-recognitions)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
