"""The plain-data types that flow through the edge pipeline.

    Source ──AudioBlock──▶ SpeechSegmenter (VAD + segmenter) ──SegmentEvent──▶ Uplink ──▶ sinks

Audio is always 16 kHz mono signed 16-bit (``numpy.int16``) inside the edge. Times are seconds from
the first sample of the source (a file, or the start of a microphone capture).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class AudioBlock:
    """A block of source audio: int16 mono 16 kHz samples starting at ``start`` seconds."""

    samples: np.ndarray
    start: float


@dataclass(frozen=True)
class VadSummary:
    """What the VAD saw in one segment (sent to the server with the segment's end)."""

    vad: str
    speech_ratio: float
    mean_speech_probability: float
    level_dbfs: float
    clipping_ratio: float
    forced_split: bool
    pre_roll_seconds: float
    hangover_seconds: float


@dataclass(frozen=True)
class SegmentOpened:
    """A segment begins; its first sample lies at ``offset`` seconds in the source."""

    sequence: int
    offset: float


@dataclass(frozen=True, eq=False)
class SegmentAudio:
    """More audio of the open segment (int16 samples), in order."""

    sequence: int
    samples: np.ndarray


@dataclass(frozen=True)
class SegmentPaused:
    """The open segment's speech has paused; all the audio it would hold if it closed now has come.

    The uplink may have it recognised already (speculatively): if the pause lasts, the segment closes
    with just that audio and the result is ready sooner; if speech resumes, more audio follows.
    """

    sequence: int
    end: float


@dataclass(frozen=True)
class SegmentClosed:
    """The open segment ends.

    ``end`` is the source time just after its last sample; ``speech_end`` is where the VAD last heard
    speech (``end`` minus the hangover kept, or the split point of a forced split).

    ``speech_end_clock`` is the ``time.perf_counter()`` at which the edge received the audio of the last
    speech frame (the end of speech, as the user sees it: within one source block of it when the audio
    is live), and ``closed_clock`` the one at which the segment closed; latency is measured from them
    (None: not known, e.g. an event made by hand).
    """

    sequence: int
    end: float
    speech_end: float
    stats: VadSummary
    speech_end_clock: float | None = None
    closed_clock: float | None = None


SegmentEvent = SegmentOpened | SegmentAudio | SegmentPaused | SegmentClosed
