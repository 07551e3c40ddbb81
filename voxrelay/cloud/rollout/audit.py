"""The append-only audit log of rollout changes: who, what, when, why, with the figures behind it.

One JSON object per line in ``DATA_DIR/audit.jsonl``, written with ``O_APPEND`` and flushed to disk
before the change is reported done; the file is never rewritten or truncated by voxrelay. A human's
change names the admin token's name; an automatic decision names ``voxrelay (analysis)`` and carries
the analysis figures that caused it. Entries hold names, weights and figures, never audio or text.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voxrelay.errors import VoxrelayError

AUTOMATIC = "voxrelay (analysis)"


@dataclass(frozen=True)
class AuditEntry:
    who: str
    action: str
    why: str
    changes: tuple[str, ...]
    target: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def to_json(self) -> str:
        data = asdict(self)
        data["changes"] = list(self.changes)
        return json.dumps(data, ensure_ascii=False, sort_keys=True, allow_nan=False, default=str)

    @classmethod
    def from_json(cls, line: str) -> AuditEntry:
        data = json.loads(line)
        return cls(
            who=str(data.get("who", "")),
            action=str(data.get("action", "")),
            why=str(data.get("why", "")),
            changes=tuple(str(c) for c in data.get("changes", ())),
            target=str(data.get("target", "")),
            figures=dict(data.get("figures") or {}),
            time=str(data.get("time", "")),
        )


class AuditLog:
    """Appends entries to ``path`` (None: kept in memory only, for an embedded recognizer)."""

    def __init__(self, path: Path | None, remember: int = 200) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._recent: deque[AuditEntry] = deque(maxlen=remember)
        if path is not None:
            self._recent.extend(self._tail(path, remember))

    @staticmethod
    def _tail(path: Path, n: int) -> list[AuditEntry]:
        if not path.is_file():
            return []
        entries = []
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in deque(f, maxlen=n):
                try:
                    entries.append(AuditEntry.from_json(line))
                except (ValueError, TypeError):
                    continue  # a torn last line after a crash: the others still count
        return entries

    def append(self, entry: AuditEntry) -> None:
        """Write ``entry`` and flush it to disk (blocking: call it off the event loop)."""
        line = (entry.to_json() + "\n").encode("utf-8")
        with self._lock:
            if self.path is not None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                    try:
                        os.write(fd, line)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                except OSError as err:
                    raise VoxrelayError(f"audit log: cannot append to {self.path}: {err.strerror or err}") from err
            self._recent.append(entry)

    def recent(self, n: int = 20) -> list[AuditEntry]:
        with self._lock:
            return list(self._recent)[-n:] if n > 0 else []
