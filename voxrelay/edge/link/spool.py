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

Without a directory the same tables live in memory: segments survive reconnects, not restarts.
A spool directory is used by one process at a time (an advisory lock on ``<dir>/spool.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from voxrelay.edge.events import VadSummary
from voxrelay.edge.link.records import (
    Dropped,
    SpooledSegment,
    SpoolSession,
    SpoolSettings,
    result_from_json,
)
from voxrelay.edge.results import SegmentResult
from voxrelay.errors import VoxrelayError

__all__ = ["Dropped", "Spool", "SpoolSession", "SpoolSettings", "SpooledSegment", "result_from_json"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    label TEXT NOT NULL,
    next_sequence INTEGER NOT NULL DEFAULT 0,
    resume_offset REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    segment_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    offset REAL NOT NULL,
    end_time REAL NOT NULL,
    speech_end REAL NOT NULL,
    vad TEXT,
    audio BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_session ON segments (session_id, sequence);
CREATE TABLE IF NOT EXISTS delivered (
    session_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (session_id, sequence)
);
"""


def _now() -> float:
    # Wall-clock seconds, on purpose: segment ages must survive a restart (and a reboot), which the
    # monotonic clocks do not. Only used for the age bound, never to time an operation.
    return time.time()


class Spool:
    """The spool; thread-safe (the uplink writes from worker threads so as not to block the event loop)."""

    def __init__(self, settings: SpoolSettings | None = None) -> None:
        self.settings = settings or SpoolSettings()
        self._lock = threading.Lock()
        self._lock_file: IO[str] | None = None
        self.dropped_segments = 0
        self.dropped_bytes = 0
        self._closed = False
        self._final: tuple[int, int, float | None] = (0, 0, None)
        if self.settings.directory is None:
            path = ":memory:"
        else:
            directory = Path(self.settings.directory)
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise VoxrelayError(f"--spool-dir: cannot create {directory}: {err.strerror or err}") from err
            self._lock_file = _exclusive(directory)
            path = str(directory / "spool.sqlite3")
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            self._release()
            raise VoxrelayError(f"--spool-dir: {path} is not a usable spool ({err}); move it away") from err
        self.expire()

    @property
    def persistent(self) -> bool:
        return self.settings.directory is not None

    @property
    def closed(self) -> bool:
        return self._closed

    # Sessions.

    def open_session(self, session_id: str, *, source: str = "", fingerprint: str = "", label: str = "") -> None:
        """Remember a session (no-op if it is already known)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO sessions (session_id, source, fingerprint, label, created) VALUES (?,?,?,?,?)",
                (session_id, source, fingerprint, label, _now()),
            )

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
        with self._lock:
            rows = self._db.execute(
                "SELECT s.session_id, s.source, s.fingerprint, s.label, s.next_sequence, s.resume_offset, "
                "s.created, (SELECT COUNT(*) FROM segments g WHERE g.session_id = s.session_id) "
                f"FROM sessions s {where} ORDER BY s.created, s.rowid",
                args,
            ).fetchall()
        return [SpoolSession(*row) for row in rows]

    def finish_session(self, session_id: str) -> None:
        """The session is complete: forget it, its remaining segments and its delivered results."""
        with self._lock, self._transaction():
            for table in ("segments", "delivered", "sessions"):
                self._db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

    # Segments.

    def put(self, segment: SpooledSegment) -> list[Dropped]:
        """Store a closed segment (before it is sent); returns the segments dropped to stay in bounds."""
        vad = json.dumps(asdict(segment.vad)) if segment.vad is not None else None
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO segments (segment_id, session_id, sequence, offset, end_time, speech_end, "
                "vad, audio, bytes, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                ),
            )
            self._db.execute(
                "UPDATE sessions SET next_sequence = MAX(next_sequence, ?), resume_offset = MAX(resume_offset, ?) "
                "WHERE session_id = ?",
                (segment.sequence + 1, segment.end, segment.session_id),
            )
            return self._enforce_bounds()

    def pending(self, session_id: str) -> list[SpooledSegment]:
        """The session's segments still waiting for a result, in sequence order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT segment_id, session_id, sequence, offset, end_time, speech_end, vad, audio, created "
                "FROM segments WHERE session_id = ? ORDER BY sequence",
                (session_id,),
            ).fetchall()
        return [
            SpooledSegment(
                r[0], r[1], r[2], r[3], r[4], r[5], VadSummary(**json.loads(r[6])) if r[6] else None, r[7], r[8]
            )
            for r in rows
        ]

    def delivered(self, session_id: str, result: SegmentResult) -> None:
        """The sinks have the result of a segment: drop its audio, remember that it was delivered."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM segments WHERE segment_id = ?", (result.segment_id,))
            self._db.execute(
                "INSERT OR REPLACE INTO delivered (session_id, sequence, result) VALUES (?,?,?)",
                (session_id, result.sequence, json.dumps(result.to_json())),
            )

    def delivered_results(self, session_id: str) -> list[SegmentResult]:
        with self._lock:
            rows = self._db.execute(
                "SELECT result FROM delivered WHERE session_id = ? ORDER BY sequence", (session_id,)
            ).fetchall()
        return [result_from_json(json.loads(row[0])) for row in rows]

    def delivered_sequences(self, session_id: str) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT sequence FROM delivered WHERE session_id = ?", (session_id,)).fetchall()
        return {row[0] for row in rows}

    def expire(self) -> list[Dropped]:
        """Drop segments older than max_age_seconds, and sessions that old with nothing left."""
        with self._lock, self._transaction():
            dropped = self._enforce_bounds()
            cutoff = _now() - self.settings.max_age_seconds
            self._db.execute(
                "DELETE FROM delivered WHERE session_id IN (SELECT session_id FROM sessions WHERE created < ? AND "
                "session_id NOT IN (SELECT session_id FROM segments))",
                (cutoff,),
            )
            self._db.execute(
                "DELETE FROM sessions WHERE created < ? AND session_id NOT IN (SELECT session_id FROM segments)",
                (cutoff,),
            )
            return dropped

    def _enforce_bounds(self) -> list[Dropped]:
        dropped: list[Dropped] = []
        cutoff = _now() - self.settings.max_age_seconds
        total = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM segments").fetchone()[0]
        oldest_first = self._db.execute(
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
        self._db.executemany("DELETE FROM segments WHERE segment_id = ?", [(v,) for v in victims])
        return dropped

    # Observation (read by metrics and the CLI).

    def _gauges(self) -> tuple[int, int, float | None]:
        if self._closed:
            return self._final
        with self._lock:
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(created) FROM segments").fetchone()
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

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        if self._closed:
            return
        self._final = self._gauges()
        with self._lock:
            self._closed = True
            self._db.close()
        self._release()

    def _release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the lock
            self._lock_file = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exclusive(directory: Path) -> IO[str]:
    """Hold an advisory lock on the spool directory for as long as the returned file is open."""
    lock = open(directory / "spool.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise VoxrelayError(
            f"--spool-dir: {directory} is in use by another voxrelay process (pid {holder}); "
            "give each edge process its own spool directory"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
