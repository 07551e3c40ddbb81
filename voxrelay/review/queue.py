"""The human review queue: segments a person should check, with their audio, in SQLite.

One file, ``DATA_DIR/review.sqlite3`` (WAL, mode 0600), written only when a deployment's automation
puts segments up for review. Each item holds the segment's audio (16 kHz mono 16-bit WAV), the model's
text and confidence signals, why it was queued, and, once a person has dealt with it, the final text,
who and when. Items older than the retention limit are deleted with their audio; nothing of an item
ever goes to a log.

Statuses: ``pending`` → ``accepted`` (the model's text was right) or ``corrected`` (a person typed the
right text). A *skip* leaves an item pending and puts it behind the others. The word errors of the
model's text against the final text are stored with each reviewed item; they make the live WER.

Several recognizer replicas can share one file only on one machine (SQLite locking does not work over
NFS); see the README for what to use across machines.
"""

from __future__ import annotations

import io
import json
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from voxrelay.errors import InvalidArgument, NotFound, VoxrelayError, shown

STATUSES = ("pending", "accepted", "corrected")
REASONS = ("needs_review", "suggestion", "transcribe")
MAX_TEXT = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    session TEXT NOT NULL,
    reason TEXT NOT NULL,
    why TEXT NOT NULL,
    signals TEXT NOT NULL,
    language TEXT NOT NULL,
    model_text TEXT NOT NULL,
    show_text INTEGER NOT NULL,
    audio BLOB NOT NULL,
    audio_seconds REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    skips INTEGER NOT NULL DEFAULT 0,
    final_text TEXT,
    reviewer TEXT,
    reviewed REAL,
    errors INTEGER,
    words INTEGER
);
CREATE INDEX IF NOT EXISTS items_pending ON items (status, skips, created);
CREATE INDEX IF NOT EXISTS items_reviewed ON items (deployment, reviewed);
CREATE INDEX IF NOT EXISTS items_created ON items (created);
"""


def wav_bytes(audio: np.ndarray, rate: int = 16000) -> bytes:
    """float32 samples in [-1, 1] as a 16-bit mono WAV file."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


@dataclass(frozen=True)
class NewItem:
    """A segment put up for review."""

    deployment: str
    model: str
    model_version: str
    segment_id: str
    session: str
    reason: str
    why: tuple[str, ...]
    signals: dict[str, float]
    language: str
    model_text: str
    show_text: bool
    audio: bytes | np.ndarray  # a WAV file, or float32 samples at 16 kHz (made a WAV when stored)
    audio_seconds: float
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"reason {self.reason!r} is not one of {REASONS}")


@dataclass(frozen=True)
class Item:
    id: str
    created: float
    deployment: str
    model: str
    model_version: str
    segment_id: str
    session: str
    reason: str
    why: tuple[str, ...]
    signals: dict[str, float]
    language: str
    model_text: str  # "" when the deployment keeps it from reviewers (see show_text)
    show_text: bool
    audio_seconds: float
    status: str
    skips: int
    final_text: str | None
    reviewer: str | None
    reviewed: float | None
    errors: int | None
    words: int | None
    audio: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "deployment": self.deployment,
            "model": self.model,
            "model_version": self.model_version,
            "segment_id": self.segment_id,
            "session": self.session,
            "reason": self.reason,
            "why": list(self.why),
            "signals": self.signals,
            "language": self.language,
            "model_text": self.model_text,
            "show_text": self.show_text,
            "audio_seconds": self.audio_seconds,
            "status": self.status,
            "skips": self.skips,
            "final_text": self.final_text,
            "reviewer": self.reviewer,
            "reviewed": self.reviewed,
            "wer": None if not self.words else (self.errors or 0) / self.words,
        }


@dataclass(frozen=True)
class DeploymentStats:
    deployment: str
    pending: int
    accepted: int
    corrected: int
    errors: int  # word errors of the model's text in the reviewed window
    words: int

    @property
    def wer(self) -> float | None:
        return self.errors / self.words if self.words else None

    @property
    def redo_ratio(self) -> float | None:
        """Share of reviewed results a person had to redo (correct): the user-redoes signal."""
        reviewed = self.accepted + self.corrected
        return self.corrected / reviewed if reviewed else None


_COLUMNS = (
    "id, created, deployment, model, model_version, segment_id, session, reason, why, signals, language, "
    "model_text, show_text, audio_seconds, status, skips, final_text, reviewer, reviewed, errors, words"
)


def _item(row: tuple[Any, ...], audio: bytes | None = None) -> Item:
    names = [name.strip() for name in _COLUMNS.split(",")]
    values: dict[str, Any] = dict(zip(names, row, strict=True))
    values["why"] = tuple(json.loads(values["why"]))
    values["signals"] = json.loads(values["signals"])
    values["show_text"] = bool(values["show_text"])
    item = Item(**values, audio=audio)
    if not item.show_text:
        return replace(item, model_text="")
    return item


class ReviewQueue:
    """The queue in one SQLite file; thread-safe (one connection behind a lock). ``enqueue`` never
    blocks: a writer thread owned by the queue stores new items; :meth:`close` stops it."""

    def __init__(self, path: Path, retention_days: float = 30.0, wer_window: int = 500) -> None:
        self.path = path
        self.retention_seconds = retention_days * 86400.0
        self.wer_window = wer_window
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not path.exists()
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10.0)
            if fresh:
                os.chmod(path, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise VoxrelayError(f"review queue: cannot open {path}: {err}") from err
        self._lock = threading.Lock()
        self._incoming: queue.Queue[NewItem | threading.Event | None] = queue.Queue(maxsize=1000)
        self.dropped = 0
        self._writer = threading.Thread(target=self._write, name="voxrelay-review-writer", daemon=True)
        self._writer.start()

    # Writing.

    def enqueue(self, item: NewItem) -> bool:
        """Hand ``item`` to the writer thread; False (counted in ``dropped``) if it is 1000 items behind."""
        try:
            self._incoming.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _write(self) -> None:
        while True:
            item = self._incoming.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self.add(item)
            except VoxrelayError:
                self.dropped += 1

    def add(self, item: NewItem) -> None:
        """Store ``item`` now (blocking)."""
        values = (
            item.id,
            item.created,
            item.deployment,
            item.model,
            item.model_version,
            item.segment_id,
            item.session,
            item.reason,
            json.dumps(list(item.why)),
            json.dumps(item.signals, allow_nan=False, default=float),
            item.language,
            item.model_text,
            int(item.show_text),
            sqlite3.Binary(item.audio if isinstance(item.audio, bytes) else wav_bytes(item.audio)),
            item.audio_seconds,
        )
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO items (id, created, deployment, model, model_version, segment_id, session, "
                    "reason, why, signals, language, model_text, show_text, audio, audio_seconds) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
            except sqlite3.Error as err:
                raise VoxrelayError(f"review queue: cannot store an item in {self.path}: {err}") from err

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every enqueued item is stored."""
        marker = threading.Event()
        self._incoming.put(marker, timeout=timeout)
        marker.wait(timeout)

    # Reading.

    def items(self, status: str = "pending", deployment: str = "", limit: int = 50) -> list[Item]:
        if status not in (*STATUSES, "reviewed", "all"):
            raise InvalidArgument(f"status: {shown(status)} is not one of {', '.join((*STATUSES, 'reviewed', 'all'))}")
        where, args = [], []
        if status == "reviewed":
            where.append("status != 'pending'")
        elif status != "all":
            where.append("status = ?")
            args.append(status)
        if deployment:
            where.append("deployment = ?")
            args.append(deployment)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "skips, created" if status == "pending" else "COALESCE(reviewed, created) DESC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM items {clause} ORDER BY {order} LIMIT ?", (*args, max(1, min(limit, 1000)))
            ).fetchall()
        return [_item(row) for row in rows]

    def get(self, item_id: str, with_audio: bool = False) -> Item:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
            audio = None
            if row is not None and with_audio:
                audio = bytes(self._db.execute("SELECT audio FROM items WHERE id = ?", (item_id,)).fetchone()[0])
        if row is None:
            raise NotFound(f"review item {shown(item_id)} does not exist (or was deleted after the retention limit)")
        return _item(row, audio)

    # Reviewing.

    def accept(self, item_id: str, who: str) -> Item:
        item = self.get(item_id)
        if not item.show_text:
            raise InvalidArgument(
                f"review item {item_id}: there is no suggestion to accept (its deployment keeps the model's text "
                "from reviewers); type what is said: correct ID TEXT"
            )
        return self._finish(item_id, "accepted", None, who)

    def correct(self, item_id: str, text: str, who: str) -> Item:
        text = " ".join((text or "").split())
        if len(text) > MAX_TEXT:
            raise InvalidArgument(f"text: {len(text)} characters is over the limit of {MAX_TEXT}")
        self.get(item_id)
        return self._finish(item_id, "corrected", text, who)

    def skip(self, item_id: str, who: str) -> Item:
        self.get(item_id)
        with self._lock:
            self._db.execute("UPDATE items SET skips = skips + 1 WHERE id = ? AND status = 'pending'", (item_id,))
        return self.get(item_id)

    def _finish(self, item_id: str, status: str, text: str | None, who: str) -> Item:
        from voxrelay.quality.wer import word_errors

        with self._lock:
            row = self._db.execute("SELECT model_text, language FROM items WHERE id = ?", (item_id,)).fetchone()
        model_text, language = row
        final = model_text if text is None else text
        if text is not None and text == " ".join(model_text.split()):
            status = "accepted"  # "corrected" to the same words is an acceptance
        counted = word_errors(final, model_text, language or "en")
        errors, words = counted.errors, counted.reference_words
        with self._lock:
            self._db.execute(
                "UPDATE items SET status = ?, final_text = ?, reviewer = ?, reviewed = ?, errors = ?, words = ? "
                "WHERE id = ?",
                (status, final, who, time.time(), errors, words, item_id),
            )
        return self.get(item_id)

    # Figures.

    def stats(self) -> list[DeploymentStats]:
        """Per deployment: items by status, and the word errors over the last ``wer_window`` reviewed."""
        with self._lock:
            counts = self._db.execute("SELECT deployment, status, COUNT(*) FROM items GROUP BY deployment, status")
            by: dict[str, dict[str, int]] = {}
            for deployment, status, n in counts.fetchall():
                by.setdefault(deployment, {})[status] = n
            out = []
            for deployment in sorted(by):
                errors, words = self._db.execute(
                    "SELECT COALESCE(SUM(errors), 0), COALESCE(SUM(words), 0) FROM (SELECT errors, words "
                    "FROM items WHERE deployment = ? AND status != 'pending' AND words IS NOT NULL "
                    "ORDER BY reviewed DESC LIMIT ?)",
                    (deployment, self.wer_window),
                ).fetchone()
                c = by[deployment]
                out.append(
                    DeploymentStats(
                        deployment, c.get("pending", 0), c.get("accepted", 0), c.get("corrected", 0), errors, words
                    )
                )
        return out

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM items WHERE status = 'pending'").fetchone()[0])

    def reviewed(self) -> Iterator[Item]:
        """Every reviewed item with its audio, oldest first (for an export)."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM items WHERE status != 'pending' ORDER BY reviewed")]
        for item_id in ids:
            try:
                yield self.get(item_id, with_audio=True)
            except NotFound:
                continue

    def purge(self, now: float | None = None) -> int:
        """Delete items older than the retention limit (audio and text); returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention_seconds
        with self._lock:
            deleted = self._db.execute("DELETE FROM items WHERE created < ?", (cutoff,)).rowcount
        return int(deleted)

    def close(self) -> None:
        self._incoming.put(None)
        self._writer.join(10)
        with self._lock:
            self._db.close()
