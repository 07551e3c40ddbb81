"""The edge's store-and-forward spool: every closed segment is kept here until its result is delivered.

One SQLite database (``<dir>/spool.sqlite3``, WAL journal) per spool directory, with three tables:

``sessions``
    one row per unfinished session: its id, the source (a file's absolute path, or ``mic:<device>``),
    the file's fingerprint (size and modification time, so that an edited file is not resumed), the
    label results carry (the path as given), the next segment sequence to spool and where in the source
    the last spooled segment ended.
``segments``
    the closed segments whose result has not been delivered yet: id, sequence, offsets, VAD summary and
    the 16 kHz mono int16 audio.
``delivered``
    the results already handed to the sinks in an unfinished session (JSON), so that a restarted edge
    neither sends nor prints them again, and can rebuild an output file that never got completed.

A segment is inserted before its end is sent to the server and deleted (its result recorded in
``delivered``) only after the sinks have written the result; a finished session is removed. The
spool is bounded: when the audio it holds would pass ``max_bytes``, or a segment is older than
``max_age_seconds``, the oldest segments are dropped and counted. Writes use ``synchronous=NORMAL``:
committed segments survive a crash or ``kill -9`` of the edge (a power cut may lose the last few).

Each segment carries a CRC-32 of its audio, checked before it is resent: a segment whose audio was
damaged on disk is not sent (its file is read again where it can be, else it is reported). Every
delivery is also appended to the delivery journal (:mod:`voxrelay.edge.link.journal`) first, so a
rolled-back database never makes a result print twice. Disk trouble (full, failing, unwritable,
damaged) is handled by :class:`~voxrelay.edge.link.spooldb.SpoolStore`: the spool goes on in memory
or on a fresh database, says so in one line, and goes back to disk when it can.

Without a directory the same tables live in memory: segments survive reconnects, not restarts.
A spool directory is used by one process at a time (an advisory lock on ``<dir>/spool.lock``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from voxrelay.edge.events import VadSummary
from voxrelay.edge.link.records import (
    Dropped,
    SpooledSegment,
    SpoolSession,
    SpoolSettings,
    result_from_json,
)
from voxrelay.edge.link.spooldb import SpoolStore, transaction
from voxrelay.edge.results import SegmentResult

__all__ = ["Dropped", "Spool", "SpoolSession", "SpoolSettings", "SpooledSegment", "result_from_json"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def checksum(audio: bytes) -> int:
    return zlib.crc32(audio)


def _now() -> float:
    # Wall-clock seconds, on purpose: segment ages must survive a restart (and a reboot), which the
    # monotonic clocks do not. Only used for the age bound, never to time an operation.
    return time.time()


class Spool:
    """The spool; thread-safe (the uplink writes from worker threads so as not to block the event loop)."""

    def __init__(self, settings: SpoolSettings | None = None) -> None:
        self.settings = settings or SpoolSettings()
        self._lock = threading.Lock()
        self.dropped_segments = 0
        self.dropped_bytes = 0
        self._closed = False
        self._final: tuple[int, int, float | None] = (0, 0, None)
        self._damaged: dict[str, list[Dropped]] = {}
        self._store = SpoolStore(self.settings.directory)
        self.expire()

    def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return self._store.run(operation)

    def _journal(self, entry: dict[str, Any]) -> None:
        if self._store.journal is not None:
            self._store.journal.append(entry)

    @property
    def in_memory_fallback(self) -> bool:
        """A directory was given but the spool runs in memory now (disk trouble)."""
        return self._store.in_memory_fallback

    @property
    def fallbacks(self) -> int:
        return self._store.fallbacks

    @property
    def damaged(self) -> int:
        """Databases moved aside and segments whose audio failed its checksum."""
        return self._store.damaged

    @property
    def persistent(self) -> bool:
        return self.settings.directory is not None

    @property
    def closed(self) -> bool:
        return self._closed

    # Sessions.

    def open_session(self, session_id: str, *, source: str = "", fingerprint: str = "", label: str = "") -> None:
        """Remember a session (no-op if it is already known)."""
        created = _now()

        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT OR IGNORE INTO sessions (session_id, source, fingerprint, label, created) VALUES (?,?,?,?,?)",
                (session_id, source, fingerprint, label, created),
            )
            return int(cursor.rowcount)

        if self._run(insert):
            entry = {"open": session_id, "source": source, "fingerprint": fingerprint, "label": label}
            self._journal({**entry, "created": created})

    def session(self, session_id: str) -> SpoolSession | None:
        rows = self._sessions("WHERE s.session_id = ?", (session_id,))
        return rows[0] if rows else None

    def find_session(self, source: str, fingerprint: str) -> SpoolSession | None:
        """The newest unfinished session of ``source`` with this fingerprint."""
        rows = self._sessions("WHERE s.source = ? AND s.fingerprint = ?", (source, fingerprint))
        return rows[-1] if rows else None

    def sessions(self) -> list[SpoolSession]:
        return self._sessions("", ())

    def _sessions(self, where: str, args: tuple[Any, ...]) -> list[SpoolSession]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT s.session_id, s.source, s.fingerprint, s.label, s.next_sequence, s.resume_offset, "
                "s.created, (SELECT COUNT(*) FROM segments g WHERE g.session_id = s.session_id) "
                f"FROM sessions s {where} ORDER BY s.created, s.rowid",
                args,
            ).fetchall()
        )
        return [SpoolSession(*row) for row in rows]

    def finish_session(self, session_id: str) -> None:
        """The session is complete: forget it, its remaining segments and its delivered results."""
        self._journal({"finished": session_id})

        def delete(db: sqlite3.Connection) -> int:
            with transaction(db):
                for table in ("segments", "delivered", "sessions"):
                    db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            return int(db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

        if self._run(delete) == 0 and self._store.journal is not None:
            self._store.journal.rewrite([])  # nothing unfinished: the journal starts empty

    # Segments.

    def put(self, segment: SpooledSegment) -> list[Dropped]:
        """Store a closed segment (before it is sent); returns the segments dropped to stay in bounds."""
        vad = json.dumps(asdict(segment.vad)) if segment.vad is not None else None

        def insert(db: sqlite3.Connection) -> list[Dropped]:
            with transaction(db):
                db.execute(
                    "INSERT OR REPLACE INTO segments (segment_id, session_id, sequence, offset, end_time, "
                    "speech_end, vad, audio, bytes, created, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        segment.segment_id,
                        segment.session_id,
                        segment.sequence,
                        segment.offset,
                        segment.end,
                        segment.speech_end,
                        vad,
                        segment.audio,
                        len(segment.audio),
                        segment.created,
                        checksum(segment.audio),
                    ),
                )
                db.execute(
                    "UPDATE sessions SET next_sequence = MAX(next_sequence, ?), "
                    "resume_offset = MAX(resume_offset, ?) WHERE session_id = ?",
                    (segment.sequence + 1, segment.end, segment.session_id),
                )
                return self._enforce_bounds(db)

        return self._run(insert)

    def pending(self, session_id: str) -> list[SpooledSegment]:
        """The session's segments still waiting for a result, in sequence order, each checked against its
        checksum; a damaged one is dropped from the spool and handed out by :meth:`take_damaged`."""
        rows = self._run(
            lambda db: db.execute(
                "SELECT segment_id, session_id, sequence, offset, end_time, speech_end, vad, audio, created, "
                "checksum FROM segments WHERE session_id = ? ORDER BY sequence",
                (session_id,),
            ).fetchall()
        )
        good, bad = [], []
        for r in rows:
            audio = bytes(r[7]) if r[7] is not None else b""
            if r[9] is not None and checksum(audio) != r[9]:
                bad.append(Dropped(r[1], r[0], r[2], r[3], r[5], "its audio in the spool is damaged (checksum)"))
                continue
            vad = VadSummary(**json.loads(r[6])) if r[6] else None
            good.append(SpooledSegment(r[0], r[1], r[2], r[3], r[4], r[5], vad, audio, r[8]))
        if bad:
            self._run(
                lambda db: db.executemany("DELETE FROM segments WHERE segment_id = ?", [(d.segment_id,) for d in bad])
            )
            with self._lock:
                self._store.damaged += len(bad)
                self._damaged.setdefault(session_id, []).extend(bad)
            for victim in bad:
                log.warning("spool: segment %s failed its checksum; it is not resent as it is", victim.segment_id)
        return good

    def take_damaged(self, session_id: str) -> list[Dropped]:
        """Segments of the session whose spooled audio failed its checksum (each handed out once)."""
        with self._lock:
            return self._damaged.pop(session_id, [])

    def delivered(self, session_id: str, result: SegmentResult) -> None:
        """The sinks have the result of a segment: drop its audio, remember that it was delivered."""
        data = result.to_json()
        self._journal(
            {"delivered": session_id, "sequence": result.sequence, "segment_id": result.segment_id, "result": data}
        )

        def record(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.execute("DELETE FROM segments WHERE segment_id = ?", (result.segment_id,))
                db.execute(
                    "INSERT OR REPLACE INTO delivered (session_id, sequence, result) VALUES (?,?,?)",
                    (session_id, result.sequence, json.dumps(data)),
                )

        self._run(record)

    def delivered_results(self, session_id: str) -> list[SegmentResult]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT result FROM delivered WHERE session_id = ? ORDER BY sequence", (session_id,)
            ).fetchall()
        )
        return [result_from_json(json.loads(row[0])) for row in rows]

    def delivered_sequences(self, session_id: str) -> set[int]:
        rows = self._run(
            lambda db: db.execute("SELECT sequence FROM delivered WHERE session_id = ?", (session_id,)).fetchall()
        )
        return {row[0] for row in rows}

    def expire(self) -> list[Dropped]:
        """Drop segments older than max_age_seconds, and sessions that old with nothing left."""

        def expire(db: sqlite3.Connection) -> list[Dropped]:
            with transaction(db):
                dropped = self._enforce_bounds(db)
                cutoff = _now() - self.settings.max_age_seconds
                db.execute(
                    "DELETE FROM delivered WHERE session_id IN (SELECT session_id FROM sessions WHERE created < ? "
                    "AND session_id NOT IN (SELECT session_id FROM segments))",
                    (cutoff,),
                )
                db.execute(
                    "DELETE FROM sessions WHERE created < ? AND session_id NOT IN (SELECT session_id FROM segments)",
                    (cutoff,),
                )
                return dropped

        return self._run(expire)

    def _enforce_bounds(self, db: sqlite3.Connection) -> list[Dropped]:
        dropped: list[Dropped] = []
        cutoff = _now() - self.settings.max_age_seconds
        total = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM segments").fetchone()[0]
        oldest_first = db.execute(
            "SELECT segment_id, session_id, sequence, offset, speech_end, bytes, created FROM segments "
            "ORDER BY created, rowid"
        )
        victims = []
        for segment_id, session_id, sequence, offset, speech_end, size, created in oldest_first:
            if created < cutoff:
                reason = f"older than the spool's age limit of {self.settings.max_age_seconds:g} s"
            elif total > self.settings.max_bytes:
                reason = f"the spool is full ({self.settings.max_bytes} bytes)"
            else:
                break
            victims.append(segment_id)
            total -= size
            self.dropped_segments += 1
            self.dropped_bytes += size
            dropped.append(Dropped(session_id, segment_id, sequence, offset, speech_end, reason))
        db.executemany("DELETE FROM segments WHERE segment_id = ?", [(v,) for v in victims])
        return dropped

    # Observation (read by metrics and the CLI).

    def _gauges(self) -> tuple[int, int, float | None]:
        if self._closed:
            return self._final
        row = self._run(
            lambda db: db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(created) FROM segments").fetchone()
        )
        return int(row[0]), int(row[1]), row[2]

    @property
    def depth(self) -> int:
        """Segments waiting for a result (when closed: at closing)."""
        return self._gauges()[0]

    @property
    def pending_bytes(self) -> int:
        return self._gauges()[1]

    @property
    def oldest_age_seconds(self) -> float:
        """Age of the oldest waiting segment (0 when empty)."""
        oldest = self._gauges()[2]
        return 0.0 if oldest is None else max(0.0, _now() - oldest)

    # Lifetime.

    def close(self) -> None:
        if self._closed:
            return
        self._final = self._gauges()
        with self._lock:
            self._closed = True
            self._store.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
