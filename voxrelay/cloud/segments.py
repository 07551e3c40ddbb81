"""The state of one Stream session and of the segment it has open: what the session handler and the
interim recognizer (:mod:`voxrelay.cloud.interim`) both read. It imports neither."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from voxrelay.cloud.audio import WireFormat
from voxrelay.cloud.backends.base import DecodeOptions
from voxrelay.cloud.rollout.deployment import Assignment
from voxrelay.monitoring.features import VadFeatures


@dataclass
class OpenSegment:
    segment_id: str
    sequence: int
    offset: float
    chunks: list[bytes] = field(default_factory=list)
    n_bytes: int = 0
    # A digest of the audio received: a resent id must carry the same audio to get the cached result.
    digest: Any = field(default_factory=hashlib.sha256)
    opened_at: float = field(default_factory=time.monotonic)
    # What the edge's VAD said about it (sent with its end), for the drift monitors.
    vad: VadFeatures | None = None
    # The deployment it started on, which it finishes on whatever the rollout does meanwhile.
    engine: Assignment | None = None


@dataclass(frozen=True)
class SessionState:
    device_id: str
    session_id: str
    fmt: WireFormat
    options: DecodeOptions
    # The deployment serving the session now (the router's pick, or the one the client named).
    engine: Assignment
