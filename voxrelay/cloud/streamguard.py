"""When a stream that holds a slot for nothing is closed: no config, nothing sent, audio far too slow.

A stream costs the server a slot whether or not it carries speech. :func:`stream_deadline` says when
an open stream is to be closed if nothing changes, and with which error:

* no config within ``config_timeout_seconds`` of opening: DEADLINE_EXCEEDED;
* nothing sent for ``stream_idle_seconds`` while no result is pending: DEADLINE_EXCEEDED;
* an open segment whose audio arrives slower than ``min_audio_rate`` × real time, counted from its
  start after ``slow_grace_seconds``: RESOURCE_EXHAUSTED with a retry hint (one frame a second keeps
  a stream from being idle, but not from being slow).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc

from voxrelay.cloud.settings import ServerSettings
from voxrelay.errors import Overloaded, VoxrelayError, shown


class IdleStream(VoxrelayError):
    """A stream that sent nothing (or no config) for too long while nothing was pending."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class SlowSegment(Overloaded):
    """An open segment whose audio arrives far slower than real time: it holds a slot for nothing."""


@dataclass(frozen=True)
class OpenSegmentClock:
    segment_id: str
    opened_at: float  # monotonic
    received_seconds: float


def stream_deadline(
    settings: ServerSettings,
    configured: bool,
    opened: float,
    last_activity: float,
    pending: bool,
    segment: OpenSegmentClock | None,
) -> tuple[float, VoxrelayError]:
    """The monotonic time at which the stream is closed if nothing changes, and the error it gets."""
    if not configured:
        limit = settings.config_timeout_seconds
        return opened + limit, IdleStream(
            f"the stream sent no config within {limit:g} s of opening and was closed; send the config first"
        )
    idle = settings.stream_idle_seconds
    idle_at = last_activity + idle
    if segment is not None and settings.min_audio_rate > 0:
        received = segment.received_seconds
        slow_at = segment.opened_at + max(settings.slow_grace_seconds, received / settings.min_audio_rate)
        if slow_at < idle_at or pending:
            elapsed = max(time.monotonic(), slow_at) - segment.opened_at  # as it will be when raised
            return slow_at, SlowSegment(
                f"segment {shown(segment.segment_id)}: {received:.1f} s of audio arrived in {elapsed:.0f} s, "
                f"slower than {settings.min_audio_rate:g}× real time; the stream was closed; "
                "stream speech as it is spoken",
                settings.retry_after_seconds,
            )
    return idle_at, IdleStream(
        f"the stream sent nothing for {idle:g} s with nothing pending and was closed; "
        "reconnect when there is speech to send"
    )
