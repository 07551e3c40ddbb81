"""Picking up where an interrupted edge left off, from its spool.

A file's session is recorded in the spool under the file's absolute path and fingerprint (size and
modification time). When ``transcribe`` is run again on the same file with the same ``--spool-dir``,
:func:`plan_file` finds that session and the run continues it instead of starting over:

* the segments still in the spool are resent first (the server answers those it has already
  recognised from its cache);
* the file is read again from its start, as fast as it can be read up to where the last spooled
  segment ended, then at ``--pace``; the segmenter is deterministic, so it makes the same segments
  with the same sequence numbers, and the uplink skips those the spool has already seen;
* results already delivered are not printed again; with ``--output-dir`` (whose file was never
  completed) they are written into the new output file first, from the spool.

A live session (``listen``) cannot be read again: :func:`replay_session` just sends what its spool
still holds and delivers those results. An edited file gets a new session (its fingerprint changed).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from voxrelay import SAMPLE_RATE
from voxrelay.edge.events import AudioBlock, SegmentEvent
from voxrelay.edge.link.spool import Spool, SpoolSession
from voxrelay.edge.link.uplink import Uplink
from voxrelay.edge.results import SegmentResult

log = logging.getLogger(__name__)

MIC_PREFIX = "mic:"


@dataclass(frozen=True)
class FilePlan:
    """How to run one file: a new session, or the continuation of an interrupted one."""

    session_id: str
    resumed: bool = False
    # Source seconds up to which the file is read without pacing (the end of the last spooled segment).
    resume_offset: float = 0.0
    pending: int = 0
    delivered: tuple[SegmentResult, ...] = ()


def fingerprint(path: str | Path) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def plan_file(spool: Spool, path: str, new_session_id: Callable[[str], str]) -> FilePlan:
    """Continue the spool's unfinished session of ``path``, or register a new one."""
    source = str(Path(path).resolve())
    mark = fingerprint(path)
    found = spool.find_session(source, mark) if spool.persistent else None
    if found is None:
        session_id = new_session_id(path)
        spool.open_session(session_id, source=source, fingerprint=mark, label=path)
        return FilePlan(session_id)
    delivered = tuple(spool.delivered_results(found.session_id))
    log.warning(
        "%s: resuming the interrupted session %s from the spool: %d result(s) already delivered, "
        "%d segment(s) to resend, reading on from %.1f s",
        path,
        found.session_id,
        len(delivered),
        found.pending,
        found.resume_offset,
    )
    return FilePlan(found.session_id, True, found.resume_offset, found.pending, delivered)


def unfinished_elsewhere(spool: Spool, paths: Iterable[str]) -> list[SpoolSession]:
    """Unfinished file sessions in the spool for files that are not among ``paths``."""
    given = {str(Path(p).resolve()) for p in paths}
    return [s for s in spool.sessions() if not s.source.startswith(MIC_PREFIX) and s.source not in given]


def paced_from(blocks: Iterable[AudioBlock], pace: float | None, start: float) -> Iterator[AudioBlock]:
    """``blocks`` before ``start`` seconds as fast as they come; from there on at ``pace`` × real time."""
    origin: tuple[float, float] | None = None  # (monotonic time, source time) where pacing began
    for block in blocks:
        if pace is not None and block.start >= start:
            if origin is None:
                origin = (time.monotonic(), block.start)
            end = block.start + block.samples.shape[0] / SAMPLE_RATE
            delay = origin[0] + (end - origin[1]) / pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield block


async def no_events() -> AsyncIterator[SegmentEvent]:
    return
    yield  # pragma: no cover - makes this an async generator


async def replay_session(uplink: Uplink, session: SpoolSession) -> AsyncIterator[SegmentResult]:
    """Send what the spool still holds of a session that cannot be read again; yield the results."""
    log.warning(
        "%s: sending %d segment(s) left in the spool by an interrupted session (%s)",
        session.label or session.source,
        session.pending,
        session.session_id,
    )
    async for result in uplink.session(session.session_id, no_events()):
        yield result
