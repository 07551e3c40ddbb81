"""The plain records the spool stores and returns (see ``spool.py``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from voxrelay.edge.events import VadSummary
from voxrelay.edge.results import SegmentResult, Word
from voxrelay.errors import InvalidArgument

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
"""About 4.6 hours of 16 kHz mono speech."""
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True)
class SpoolSettings:
    """Where the spool lives (None: in memory) and its bounds."""

    directory: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS

    def __post_init__(self) -> None:
        if self.max_bytes < 64 * 1024:
            raise InvalidArgument(f"spool max bytes: {self.max_bytes} is too small (at least 64 KiB)")
        if not self.max_age_seconds > 0:
            raise InvalidArgument(f"spool max age: {self.max_age_seconds} s must be positive")


@dataclass(frozen=True)
class SpooledSegment:
    """A closed segment waiting for its result. ``audio`` is 16 kHz mono int16 little-endian."""

    segment_id: str
    session_id: str
    sequence: int
    offset: float
    end: float
    speech_end: float
    vad: VadSummary | None
    audio: bytes
    created: float

    @property
    def seconds(self) -> float:
        return len(self.audio) / 32000


@dataclass(frozen=True)
class SpoolSession:
    """An unfinished session as the spool remembers it."""

    session_id: str
    source: str
    fingerprint: str
    label: str
    next_sequence: int
    resume_offset: float
    created: float
    pending: int = 0


@dataclass(frozen=True)
class Dropped:
    """A segment the spool gave up on (full, or too old)."""

    session_id: str
    segment_id: str
    sequence: int
    offset: float
    speech_end: float
    reason: str


def result_from_json(data: dict[str, Any]) -> SegmentResult:
    known = {f.name for f in fields(SegmentResult)}
    values = {k: v for k, v in data.items() if k in known}
    values["words"] = tuple(Word(**w) for w in data.get("words", ()))
    return SegmentResult(**values)
