"""The database under the spool, and what happens when the disk under it fails.

:class:`SpoolStore` holds the SQLite connection the spool works on and runs every operation through
:meth:`SpoolStore.run`, which turns disk trouble into degraded service instead of a crash:

* **a full or failing disk** (``SQLITE_FULL``, I/O errors, a read-only or vanished directory, an
  unwritable ``--spool-dir`` at start): the spool moves into memory (what the disk still holds is
  copied over), says so once and counts it; every ``RETRY_DISK_SECONDS`` it tries to go back, and on
  success the disk database is written afresh from memory;
* **a damaged database** (``SQLITE_CORRUPT``/``NOTADB``, a failed ``quick_check`` at start): the files
  are moved aside to ``spool.sqlite3.damaged-<time>``, one line names the new path, and a fresh
  database is rebuilt from the delivery journal (:mod:`voxrelay.edge.link.journal`).

Only the directory's lock (another process using it) stays fatal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from voxrelay.edge.link.journal import Journal
from voxrelay.errors import VoxrelayError

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_NAME = "spool.sqlite3"
RETRY_DISK_SECONDS = 15.0
TABLES = ("sessions", "segments", "delivered")

SCHEMA = """
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
    created REAL NOT NULL,
    checksum INTEGER
);
CREATE INDEX IF NOT EXISTS segments_by_session ON segments (session_id, sequence);
CREATE TABLE IF NOT EXISTS delivered (
    session_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (session_id, sequence)
);
"""

_DAMAGED = ("malformed", "not a database", "corrupt", "file is encrypted")


def _damage(err: sqlite3.Error) -> bool:
    name = getattr(err, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or any(m in str(err).lower() for m in _DAMAGED)


class _DiskTrouble(Exception):
    """The directory or its database cannot be used now (full, failing, unwritable)."""


class SpoolStore:
    """The current connection (the directory's database, or memory) and the switches between them."""

    def __init__(self, directory: str | None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.fallbacks = 0  # times the spool had to move into memory
        self.damaged = 0  # databases moved aside, and segments whose audio failed its checksum
        self.journal: Journal | None = None
        self._lock_file: IO[str] | None = None
        self._disk: sqlite3.Connection | None = None
        self._next_disk_try = 0.0
        self.restored = 0  # delivered results the journal gave back to a rolled-back database
        self._moved_aside = False
        if self.directory is None:
            self.db = self._memory()
            return
        self.journal = Journal(self.directory)
        try:
            self.db = self._open_disk()
        except _DiskTrouble as trouble:
            if self._disk is not None:  # opened, but cannot be written: keep what it holds
                self._to_memory(str(trouble))
            else:
                self.db = self._memory()
                self._warn_memory(str(trouble))

    @property
    def on_disk(self) -> bool:
        return self._disk is not None and self.db is self._disk

    @property
    def in_memory_fallback(self) -> bool:
        return self.directory is not None and not self.on_disk

    # Opening.

    def _open_disk(self, replay: bool = True) -> sqlite3.Connection:
        """The directory's database (locked, checked, the journal replayed into it)."""
        assert self.directory is not None
        if self._lock_file is None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._lock_file = _exclusive(self.directory)
            except OSError as err:  # an unwritable or failing directory
                raise _DiskTrouble(f"cannot use {self.directory}: {err.strerror or err}") from None
        path = self.directory / DB_NAME
        for attempt in range(2):
            try:
                db = _connect(str(path))
                row = db.execute("PRAGMA quick_check").fetchone()
                if row is None or row[0] != "ok":
                    db.close()
                    first = str(row[0]).splitlines()[0][:80] if row else "?"
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {first}")
                self._disk = db
                if replay:
                    self._replay_journal(db)
                return db
            except sqlite3.Error as err:
                if _damage(err) and attempt == 0:
                    self._move_aside(str(err))
                    continue
                raise _DiskTrouble(f"cannot use {path}: {err}") from None
        raise _DiskTrouble(f"cannot use {path}")

    def _replay_journal(self, db: sqlite3.Connection) -> None:
        """Give the database back what the journal says was delivered; then rewrite the journal compactly."""
        assert self.journal is not None
        replay = self.journal.read()
        restored = 0
        with transaction(db):
            for session_id, entry in replay.sessions.items():
                db.execute(
                    "INSERT OR IGNORE INTO sessions (session_id, source, fingerprint, label, created) "
                    "VALUES (?,?,?,?,?)",
                    (
                        session_id,
                        entry.get("source", ""),
                        entry.get("fingerprint", ""),
                        entry.get("label", ""),
                        float(entry.get("created", 0.0)),
                    ),
                )
            for (session_id, sequence), entry in replay.delivered.items():
                if session_id not in replay.sessions:
                    continue
                cursor = db.execute(
                    "INSERT OR IGNORE INTO delivered (session_id, sequence, result) VALUES (?,?,?)",
                    (session_id, sequence, json.dumps(entry.get("result", {}))),
                )
                restored += cursor.rowcount
                db.execute("DELETE FROM segments WHERE segment_id = ?", (entry.get("segment_id", ""),))
        moved, self._moved_aside = self._moved_aside, False
        if restored:
            self.restored += restored
        if restored and not moved:  # after a move aside, that line has said it already
            log.warning(
                "spool: %d delivered result(s) were missing from %s (a damaged or rolled-back journal); "
                "restored them from %s, so they are not sent or printed again",
                restored,
                self.directory / DB_NAME if self.directory else "?",
                self.journal.path,
            )
        self.journal.rewrite(journal_entries(db))

    def _move_aside(self, why: str) -> None:
        assert self.directory is not None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        base = self.directory / DB_NAME
        target = base.with_name(f"{DB_NAME}.damaged-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = base.with_name(f"{DB_NAME}.damaged-{stamp}-{n}")
        with contextlib.suppress(OSError):
            if self._disk is not None:
                self._disk.close()
        self._disk = None
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{base}{suffix}")
            if source.exists():
                try:
                    os.replace(source, f"{target}{suffix}")
                except OSError:
                    with contextlib.suppress(OSError):
                        source.unlink()
        self.damaged += 1
        self._moved_aside = True
        log.warning(
            "spool: %s is damaged (%s); moved it to %s and started a new spool there (delivered results "
            "are kept from %s)",
            base,
            why,
            target,
            self.journal.path if self.journal else "?",
        )

    # Running operations.

    def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """``operation`` on the current connection; disk trouble moves the spool (and retries it once)."""
        if self.in_memory_fallback and time.monotonic() >= self._next_disk_try:
            self.back_to_disk()
        try:
            return operation(self.db)
        except sqlite3.Error as err:
            if not self.on_disk:
                raise VoxrelayError(f"spool: {err}") from None
            if _damage(err):
                self._move_aside(str(err))
                try:
                    self.db = self._open_disk()
                except _DiskTrouble as trouble:
                    self.db = self._memory()
                    self._warn_memory(str(trouble))
            else:
                self._to_memory(str(err))
            return operation(self.db)

    def _memory(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.executescript(SCHEMA)
        return db

    def _warn_memory(self, why: str) -> None:
        self.fallbacks += 1
        self._next_disk_try = time.monotonic() + RETRY_DISK_SECONDS
        if self.fallbacks == 1 or log.isEnabledFor(logging.INFO):
            log.warning(
                "spool: %s; keeping segments in memory and trying the disk again every %.0f s", why, RETRY_DISK_SECONDS
            )

    def _to_memory(self, why: str) -> None:
        """Move into memory, copying what the disk database still holds."""
        memory = self._memory()
        disk = self._disk
        if disk is not None:
            for table in TABLES:
                try:
                    rows = disk.execute(f"SELECT * FROM {table}").fetchall()
                except sqlite3.Error:
                    continue
                if rows:
                    marks = ",".join("?" * len(rows[0]))
                    memory.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)
        self.db = memory
        self._warn_memory(why)

    def back_to_disk(self) -> bool:
        """Write the memory spool to a fresh database in the directory and use it again; True on success."""
        if not self.in_memory_fallback:
            return True
        assert self.directory is not None
        self._next_disk_try = time.monotonic() + RETRY_DISK_SECONDS
        memory = self.db
        try:
            needed = sum(
                int(memory.execute(f"SELECT COALESCE(SUM(LENGTH(CAST({c} AS BLOB))), 0) FROM {t}").fetchone()[0])
                for t, c in (("segments", "audio"), ("delivered", "result"))
            )
            stale = sum(
                Path(f"{self.directory / DB_NAME}{suffix}").stat().st_size
                for suffix in ("", "-wal", "-shm")
                if Path(f"{self.directory / DB_NAME}{suffix}").exists()
            )
            if shutil.disk_usage(self.directory).free + stale < 2 * needed + (64 << 10):
                return False
        except OSError:
            return False
        self._drop_disk_files()
        try:
            disk = self._open_disk(replay=False)
            with transaction(disk):
                for table in TABLES:
                    disk.execute(f"DELETE FROM {table}")
                    rows = memory.execute(f"SELECT * FROM {table}").fetchall()
                    if rows:
                        marks = ",".join("?" * len(rows[0]))
                        disk.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        except (_DiskTrouble, sqlite3.Error):
            self._drop_disk_files()  # never leave a stale database for the next run to resume
            return False
        if self.journal is not None:
            self.journal.rewrite(journal_entries(disk))
        memory.close()
        self.db = disk
        log.warning("spool: back on disk in %s", self.directory)
        return True

    def _drop_disk_files(self) -> None:
        assert self.directory is not None
        if self._disk is not None:
            with contextlib.suppress(sqlite3.Error):
                self._disk.close()
            self._disk = None
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{self.directory / DB_NAME}{suffix}").unlink()

    # Lifetime.

    def close(self) -> None:
        if self.in_memory_fallback and not self.back_to_disk():
            left = self.db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
            if left:
                log.warning(
                    "spool: %d segment(s) could not be written back to %s and are lost with this process",
                    left,
                    self.directory,
                )
            if self._lock_file is not None:
                self._drop_disk_files()
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        if self._disk is not None and self._disk is not self.db:
            with contextlib.suppress(sqlite3.Error):
                self._disk.close()
        if self.journal is not None:
            self.journal.close()
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the lock
            self._lock_file = None


def journal_entries(db: sqlite3.Connection) -> list[dict[str, object]]:
    """The journal's compact form of a database: its sessions and their delivered results."""
    entries: list[dict[str, object]] = []
    for session_id, source, fingerprint, label, created in db.execute(
        "SELECT session_id, source, fingerprint, label, created FROM sessions ORDER BY created, rowid"
    ):
        entries.append(
            {"open": session_id, "source": source, "fingerprint": fingerprint, "label": label, "created": created}
        )
    for session_id, sequence, result in db.execute("SELECT session_id, sequence, result FROM delivered"):
        entries.append({"delivered": session_id, "sequence": sequence, "result": json.loads(result)})
    return entries


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(segments)")}
        if "checksum" not in columns:  # a spool made before segments carried checksums
            db.execute("ALTER TABLE segments ADD COLUMN checksum INTEGER")
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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
