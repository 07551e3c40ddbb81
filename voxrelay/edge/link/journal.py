"""The delivery journal: what the spool handed to the sinks, kept where a rollback of the spool cannot lose it.

SQLite's WAL is only as good as its frames: a damaged WAL is replayed up to the first bad frame and
the rest is silently dropped, so results already printed would be sent and printed again. The
journal is a plain append-only file beside the database (``<dir>/delivered.log``, one JSON object a
line) written *before* the database records a delivery:

``{"open": id, "source": ..., "fingerprint": ..., "label": ..., "created": ...}``
    a session was opened;
``{"delivered": id, "sequence": n, "segment_id": ..., "result": {...}}``
    a result reached the sinks;
``{"finished": id}``
    a session is complete.

When the spool opens it replays the journal into the database (a rolled-back or lost database gets
its sessions and delivered results back) and rewrites it compactly. A torn last line (a crash while
appending) is ignored. Appends that fail (a full disk) are counted and the spool carries on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

NAME = "delivered.log"


@dataclass
class Replay:
    """What the journal says about the unfinished sessions."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    delivered: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)


class Journal:
    def __init__(self, directory: Path) -> None:
        self.path = directory / NAME
        self.failed_appends = 0
        self._file: IO[str] | None = None

    def read(self) -> Replay:
        replay = Replay()
        for entry in self._entries():
            if "open" in entry:
                replay.sessions.setdefault(str(entry["open"]), entry)
            elif "delivered" in entry:
                key = (str(entry["delivered"]), int(entry["sequence"]))
                replay.delivered[key] = entry
            elif "finished" in entry:
                finished = str(entry["finished"])
                replay.sessions.pop(finished, None)
                for key in [k for k in replay.delivered if k[0] == finished]:
                    del replay.delivered[key]
        return replay

    def _entries(self) -> Iterator[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        except OSError as err:
            log.warning("spool: cannot read %s (%s); going on without it", self.path, err.strerror or err)
            return
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn line from a crash while appending
            if isinstance(entry, dict):
                yield entry

    def append(self, entry: dict[str, Any]) -> None:
        """Add one entry (flushed to the OS, like the database's commits); a failure is counted, not raised."""
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open on purpose
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as err:
            self.failed_appends += 1
            if self.failed_appends == 1:
                log.warning("spool: cannot append to %s (%s)", self.path, err.strerror or err)
            self._close_file()

    def rewrite(self, entries: list[dict[str, Any]]) -> bool:
        """Replace the journal with ``entries`` (through a temporary file renamed into place)."""
        self._close_file()
        tmp = self.path.with_name(NAME + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for entry in entries:
                    f.write(json.dumps(entry, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            return True
        except OSError as err:
            log.warning("spool: cannot rewrite %s (%s)", self.path, err.strerror or err)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def close(self) -> None:
        self._close_file()
