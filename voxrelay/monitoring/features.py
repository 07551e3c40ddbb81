"""The features measured on every segment, for drift detection.

A :class:`SegmentObservation` is what the recognizer knows about one segment once it is recognised:
its audio, what the edge's VAD reported with its end (``VadStats``), and the result. :func:`extract`
turns it into one value per feature. Audio features (SNR, bandwidth) cost one pass of framing and a
small FFT per segment; they are computed on the monitor's thread, never on the request path.

Inputs say whether the audio changed; outputs whether what the model makes of it changed:

- inputs: ``duration_seconds``, ``speech_ratio``, ``level_dbfs``, ``clipping_ratio``, ``snr_db``,
  ``bandwidth_db`` (energy above 4.2 kHz relative to the whole: an 8 kHz phone line has none), ``vad_probability``;
- outputs: ``avg_logprob``, ``no_speech_prob``, ``compression_ratio``, ``words_per_second`` (results
  with text), and the rates ``empty``, ``hallucination``, ``repeat`` (0/1 per segment) and the
  categorical ``language``.
"""

from __future__ import annotations

import difflib
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from voxrelay import SAMPLE_RATE

CONTINUOUS = "continuous"
RATE = "rate"
CATEGORICAL = "categorical"

# Whisper's own thresholds (openai-whisper and faster-whisper defaults).
NO_SPEECH_THRESHOLD = 0.6
COMPRESSION_RATIO_THRESHOLD = 2.4

FRAME = 320  # 20 ms frames for the SNR estimate
FFT = 512  # 32 ms frames for the long-term spectrum
SILENCE_DBFS = -120.0
# Audio sampled at 8 kHz (a phone line) has nothing above 4 kHz: the bandwidth feature is the energy
# above 4.2 kHz (clear of a resampler's transition band) relative to all of it.
HIGH_BAND_HZ = 4200.0
HIGH_BAND_BIN = int(HIGH_BAND_HZ * FFT / SAMPLE_RATE)
# A repeat: the session's next segment nearly repeats its previous text this soon after it.
REPEAT_SECONDS = 5.0
REPEAT_SIMILARITY = 0.8


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    side: str  # "input" or "output"
    unit: str
    help: str


FEATURES: tuple[Feature, ...] = (
    Feature("duration_seconds", CONTINUOUS, "input", "s", "segment length"),
    Feature("speech_ratio", CONTINUOUS, "input", "", "share of the segment's frames the edge VAD called speech"),
    Feature("level_dbfs", CONTINUOUS, "input", "dBFS", "RMS level of the segment"),
    Feature("clipping_ratio", CONTINUOUS, "input", "", "share of samples at full scale"),
    Feature("snr_db", CONTINUOUS, "input", "dB", "loud frames (95th percentile) over quiet frames (10th)"),
    Feature("bandwidth_db", CONTINUOUS, "input", "dB", "spectral bandwidth: energy above 4.2 kHz over all, dB"),
    Feature("vad_probability", CONTINUOUS, "input", "", "mean speech probability of the segment's frames"),
    Feature("avg_logprob", CONTINUOUS, "output", "", "Whisper's mean token log probability"),
    Feature("no_speech_prob", CONTINUOUS, "output", "", "Whisper's probability of no speech"),
    Feature("compression_ratio", CONTINUOUS, "output", "", "gzip compression ratio of the text"),
    Feature("words_per_second", CONTINUOUS, "output", "1/s", "words per second of audio"),
    Feature("empty", RATE, "output", "", "results without text"),
    Feature("hallucination", RATE, "output", "", "likely hallucinations (repetitive, or text on non-speech)"),
    Feature("repeat", RATE, "output", "", "a segment nearly repeating the session's previous one"),
    Feature("language", CATEGORICAL, "output", "", "detected language mix"),
)
BY_NAME = {f.name: f for f in FEATURES}
NAMES = tuple(f.name for f in FEATURES)

# What an edge measures for itself (``voxrelay transcribe`` / ``listen`` with edge drift detection), for
# inputs no recognizer watches: each closed segment's input features as above (its audio, and the VAD's
# figures), and the input stream in fixed chunks, which keeps being measured when the VAD closes no
# segment at all (a muted microphone, noise the VAD rejects).
EDGE_FEATURES: tuple[Feature, ...] = (
    *(f for f in FEATURES if f.side == "input"),
    Feature(
        "stream_level_dbfs", CONTINUOUS, "input", "dBFS", "level of a chunk's loud frames (90th percentile of 20 ms)"
    ),
    Feature("stream_clipping_ratio", CONTINUOUS, "input", "", "share of a chunk's samples at full scale"),
    Feature("stream_snr_db", CONTINUOUS, "input", "dB", "a chunk's loud frames (95th percentile) over quiet (10th)"),
    Feature(
        "stream_bandwidth_db",
        CONTINUOUS,
        "input",
        "dB",
        "energy above 4.2 kHz over all in a chunk's loudest frames (chunks the VAD mostly calls speech)",
    ),
    Feature("stream_speech_ratio", CONTINUOUS, "input", "", "share of a chunk's frames the VAD called speech"),
)
EDGE_BY_NAME = {f.name: f for f in EDGE_FEATURES}


@dataclass(frozen=True)
class VadFeatures:
    """What the edge's VAD said about the segment (``SegmentEnd.vad``); absent for ``Recognize``."""

    speech_ratio: float
    mean_speech_probability: float
    level_dbfs: float
    clipping_ratio: float


@dataclass(frozen=True, eq=False)
class SegmentObservation:
    """One recognised segment, as plain data (built from the wire by the recognizer)."""

    audio: np.ndarray | None  # float32 mono 16 kHz in [-1, 1], or None when not kept
    audio_seconds: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    language: str
    has_phrases: bool = True
    vad: VadFeatures | None = None
    # The stream it came from (device/session), for the repeat rate; never exported.
    session: str = ""
    # Session seconds at which the segment starts and ends.
    start: float = 0.0
    end: float = 0.0


def audio_features(audio: np.ndarray, bandwidth: bool = True) -> dict[str, float]:
    """Level, clipping, SNR estimate and high-band energy (bandwidth) of a float32 16 kHz segment
    (``bandwidth=False``: without the last, which costs the FFTs)."""
    n = int(audio.shape[0])
    if n < FFT:
        return {}
    x = audio.astype(np.float32, copy=False)
    mean_square = float(np.dot(x, x)) / n
    level = 10.0 * math.log10(mean_square) if mean_square > 0 else SILENCE_DBFS
    frames = x[: n - n % FRAME].reshape(-1, FRAME)
    energy = np.einsum("ij,ij->i", frames, frames) / FRAME
    db = 10.0 * np.log10(np.maximum(energy, 1e-12))
    loud, quiet = np.percentile(db, (95.0, 10.0))
    values = {
        "level_dbfs": max(level, SILENCE_DBFS),
        "clipping_ratio": float(np.count_nonzero(np.abs(x) >= 32767 / 32768)) / n,
        "snr_db": float(loud - quiet),
    }
    if not bandwidth:
        return values
    # Long-term spectrum of the loudest half of the 32 ms frames (speech, not the pauses around it).
    blocks = x[: n - n % FFT].reshape(-1, FFT)
    power = np.einsum("ij,ij->i", blocks, blocks)
    keep = blocks[power >= np.median(power)]
    spectrum = (np.abs(np.fft.rfft(keep * np.hanning(FFT), axis=1)) ** 2).sum(axis=0)
    total = float(spectrum.sum())
    high = float(spectrum[HIGH_BAND_BIN:].sum())
    high_db = 10.0 * math.log10(high / total) if total > 0 and high > 0 else SILENCE_DBFS
    values["bandwidth_db"] = max(high_db, SILENCE_DBFS)
    return values


def is_hallucination(text: str, no_speech_prob: float, compression_ratio: float) -> bool:
    return bool(text) and (compression_ratio > COMPRESSION_RATIO_THRESHOLD or no_speech_prob >= NO_SPEECH_THRESHOLD)


class RepeatTracker:
    """Remembers each session's last text (a bounded number of sessions) to spot near repeats."""

    def __init__(self, max_sessions: int = 4096) -> None:
        self.max_sessions = max_sessions
        self._last: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def repeat(self, session: str, text: str, start: float, end: float) -> bool | None:
        """True when ``text`` nearly repeats the session's previous text that ended < 5 s before."""
        if not session:
            return None
        previous = self._last.pop(session, None)
        self._last[session] = (text, end)
        while len(self._last) > self.max_sessions:
            self._last.popitem(last=False)
        if previous is None or not text:
            return False if previous is not None else None
        before, ended = previous
        if not before or start - ended > REPEAT_SECONDS:
            return False
        return difflib.SequenceMatcher(None, before.lower(), text.lower()).ratio() >= REPEAT_SIMILARITY


def extract(obs: SegmentObservation, repeats: RepeatTracker | None = None) -> dict[str, float | str]:
    """One value per feature the observation has (features it lacks are left out)."""
    values: dict[str, float | str] = {}
    text = obs.text.strip()
    if obs.audio_seconds > 0:
        values["duration_seconds"] = obs.audio_seconds
    if obs.audio is not None:
        values.update(audio_features(obs.audio))
    if obs.vad is not None:
        values["speech_ratio"] = obs.vad.speech_ratio
        values["vad_probability"] = obs.vad.mean_speech_probability
        # The edge measured the level before the wire (and a resampling server): trust its figures.
        values["level_dbfs"] = max(obs.vad.level_dbfs, SILENCE_DBFS)
        values["clipping_ratio"] = obs.vad.clipping_ratio
    if obs.has_phrases:
        values["no_speech_prob"] = obs.no_speech_prob
    values["empty"] = 0.0 if text else 1.0
    if text:
        values["avg_logprob"] = obs.avg_logprob
        values["compression_ratio"] = obs.compression_ratio
        if obs.audio_seconds > 0:
            values["words_per_second"] = len(text.split()) / obs.audio_seconds
    values["hallucination"] = 1.0 if is_hallucination(text, obs.no_speech_prob, obs.compression_ratio) else 0.0
    if obs.language:
        values["language"] = obs.language[:8]
    if repeats is not None:
        repeated = repeats.repeat(obs.session, text, obs.start, obs.end)
        if repeated is not None:
            values["repeat"] = 1.0 if repeated else 0.0
    return values
