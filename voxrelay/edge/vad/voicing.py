"""The voicing gate of the webrtc VAD: is the recent audio periodic in the pitch range?

WebRTC's detector takes stationary broadband noise (fan hiss, white or pink noise) for speech. The gate
passes a frame that WebRTC calls speech only when a voiced frame was seen within the last
``hold_seconds``. Every other frame (stream frames 1, 3, 5, ...) that WebRTC calls speech is measured:
it is voiced when the 60 ms of audio that end with it are periodic in the pitch range (50-500 Hz), i.e.
the peak of their normalised autocorrelation, after pre-emphasis, is at least ``threshold``. Noise has
no pitch; vowels and voiced consonants do, and the hold bridges the unvoiced sounds in between.

The measure runs at 8 kHz (the sums of sample pairs: the pitch and the harmonics that carry it lie far
below 4 kHz) and on every other frame (with 30 ms frames the 60 ms windows tile the audio, and the
150 ms hold covers the frames in between): a quarter of the work of measuring every frame at 16 kHz,
for the same figures on the dev set (``scripts/tune_vad.py``). :meth:`VoicingGate.gate` measures all the
frames of a block in one batch, in work buffers that are reused from block to block.
"""

from __future__ import annotations

import math

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.errors import InvalidArgument

VOICING_HOLD_SECONDS = 0.15
"""How long a voiced frame keeps the gate open (the consonants after a vowel)."""

HOP = 2
"""Every ``HOP``-th frame of a stream (frames ``HOP - 1``, ``2·HOP - 1``, ...) is measured."""

_RATE = SAMPLE_RATE // 2  # the measure's sample rate: sums of sample pairs
_WINDOW = _RATE * 60 // 1000  # 60 ms: three periods of the lowest pitch
_MIN_LAG = _RATE // 500
_MAX_LAG = _RATE // 50
_FFT_SIZE = 640  # >= window + the longest lag: the lags of interest do not wrap
_SILENT = 1e-12
"""Windows whose (tapered, pre-emphasised) energy in squared fractions of full scale is at most this are silence."""


class VoicingGate:
    """Passes a frame that WebRTC calls speech only if a voiced frame was seen within ``hold_seconds``.

    ``frame_samples`` must be even (the webrtc frames of 10, 20 and 30 ms are). State carried across
    calls: the last 60 ms of audio, the position in the stream and the distance to the last voiced
    frame; :meth:`reset` forgets it.
    """

    def __init__(self, frame_samples: int, threshold: float, hold_seconds: float = VOICING_HOLD_SECONDS) -> None:
        if frame_samples <= 0 or frame_samples % 2:
            raise InvalidArgument(f"the voicing gate needs an even, positive frame size, got {frame_samples}")
        self.frame_samples = frame_samples
        self.threshold = float(threshold)
        self.hold_frames = max(1, math.ceil(hold_seconds * SAMPLE_RATE / frame_samples - 1e-9))
        taper = np.hanning(_WINDOW)
        taper_ac = np.fft.irfft(np.abs(np.fft.rfft(taper, _FFT_SIZE)) ** 2)[: _MAX_LAG + 1]
        # The taper also scales pair sums of int16 samples to fractions of full scale; dividing by its own
        # autocorrelation undoes its fall-off with the lag.
        self._taper = taper / 65536.0
        self._taper_ac = taper_ac[_MIN_LAG:] / taper_ac[0]
        self._capacity = 0
        self._row_zero = np.zeros(1, dtype=np.intp)
        self.reset()

    def reset(self) -> None:
        self._tail = np.zeros(2 * _WINDOW, dtype=np.int16)  # the 60 ms of audio before the next frame
        self._frame = 0  # stream index of the next frame
        self._since_voiced = self.hold_frames  # from the last voiced frame to the next frame, capped at the hold

    def gate(self, frames: np.ndarray, speech: np.ndarray) -> np.ndarray:
        """Which of ``frames`` (n × frame_samples int16) pass, given WebRTC's verdicts ``speech`` (n bools)."""
        n = frames.shape[0]
        if n == 1:
            return self._gate_one(frames, bool(speech[0]))
        first = (HOP - 1 - self._frame) % HOP  # the block's first frame to measure
        self._frame += n
        measured = np.flatnonzero(speech[first::HOP])
        if measured.size:
            measured = measured * HOP + first
            voiced = measured[self._voiced(frames, measured)]
        else:
            voiced = measured
        if frames.shape[0] * self.frame_samples >= 2 * _WINDOW:
            self._tail = frames.reshape(-1)[-2 * _WINDOW :].copy()
        else:
            self._tail = np.concatenate([self._tail, frames.reshape(-1)])[-2 * _WINDOW :]
        # reach[i]: one past the last voiced frame up to frame i (frames counted from this block's first).
        reach_before = 1 - self._since_voiced
        reach: np.ndarray | int
        if voiced.size:
            marks = np.full(n, reach_before, dtype=np.int64)
            marks[voiced] = voiced + 1
            reach = np.maximum.accumulate(marks)
            self._since_voiced = min(self.hold_frames, n - int(voiced[-1]))
        else:
            reach = reach_before
            self._since_voiced = min(self.hold_frames, self._since_voiced + n)
        # Frame i is covered when a voiced frame j has i - hold < j <= i, i.e. i < reach[i] - 1 + hold.
        return speech & (np.arange(n) < reach + (self.hold_frames - 1))

    def _gate_one(self, frames: np.ndarray, speech: bool) -> np.ndarray:
        """:meth:`gate` for a single frame (live blocks), in scalars."""
        voiced = speech and self._frame % HOP == HOP - 1 and bool(self._voiced(frames, self._row_zero)[0])
        self._frame += 1
        size = self.frame_samples
        self._tail[:-size] = self._tail[size:]
        self._tail[-size:] = frames[0]
        covered = voiced or self._since_voiced < self.hold_frames
        self._since_voiced = 1 if voiced else min(self.hold_frames, self._since_voiced + 1)
        return np.array([speech and covered])

    def _voiced(self, frames: np.ndarray, measured: np.ndarray) -> np.ndarray:
        """Whether each of the ``measured`` frames is voiced (the 60 ms ending with it are periodic)."""
        n = frames.shape[0]
        count = measured.shape[0]
        self._reserve(n)
        # Pair sums of the 60 ms before the block and of the block, pre-emphasised as one stream.
        pairs = self._pairs[: _WINDOW + n * (self.frame_samples // 2)]
        np.add(self._tail[0::2], self._tail[1::2], out=pairs[:_WINDOW], dtype=np.float64)
        flat = frames.reshape(-1)
        samples = self._samples[: flat.shape[0]]
        np.copyto(samples, flat)
        np.add(samples[0::2], samples[1::2], out=pairs[_WINDOW:])
        emphasised = self._emphasised[: pairs.shape[0]]
        np.multiply(pairs[:-1], -0.95, out=emphasised[1:])
        emphasised[1:] += pairs[1:]
        # Row i of self._frame_windows is the window that ends with frame i.
        x = self._frame_windows.take(measured, axis=0, out=self._windows[:count], mode="clip")
        x -= x.sum(axis=1, keepdims=True) * (1.0 / _WINDOW)
        x *= self._taper
        spectrum = np.fft.rfft(x, _FFT_SIZE, axis=1, out=self._spectrum[:count])
        squares = np.square(spectrum.view(np.float64), out=self._squares[:count])
        power = np.add(squares[:, 0::2], squares[:, 1::2], out=self._power[:count])
        ac = np.fft.irfft(power, _FFT_SIZE, axis=1, out=self._ac[:count])
        lags = np.divide(ac[:, _MIN_LAG : _MAX_LAG + 1], self._taper_ac, out=self._lags[:count])
        energy = ac[:, 0]
        return (lags.max(axis=1) >= self.threshold * energy) & (energy > _SILENT)

    def _reserve(self, frames: int) -> None:
        """Work buffers for a block of ``frames`` frames."""
        if self._capacity >= frames:
            return
        self._capacity = max(frames, 2 * self._capacity, 16)
        half = self.frame_samples // 2
        self._pairs = np.empty(_WINDOW + self._capacity * half, dtype=np.float64)
        self._emphasised = np.zeros_like(self._pairs)
        self._samples = np.empty(self._capacity * self.frame_samples, dtype=np.float64)
        item = self._emphasised.itemsize
        self._frame_windows = np.lib.stride_tricks.as_strided(
            self._emphasised[half:], shape=(self._capacity, _WINDOW), strides=(half * item, item), writeable=False
        )
        rows = -(-self._capacity // HOP)
        self._windows = np.empty((rows, _WINDOW), dtype=np.float64)
        self._spectrum = np.empty((rows, _FFT_SIZE // 2 + 1), dtype=np.complex128)
        self._squares = np.empty((rows, _FFT_SIZE + 2), dtype=np.float64)
        self._power = np.empty((rows, _FFT_SIZE // 2 + 1), dtype=np.float64)
        self._ac = np.empty((rows, _FFT_SIZE), dtype=np.float64)
        self._lags = np.empty((rows, _MAX_LAG + 1 - _MIN_LAG), dtype=np.float64)
