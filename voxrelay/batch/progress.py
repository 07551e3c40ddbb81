"""How a batch reports progress: a rich progress bar on a terminal, plain lines otherwise, or nothing.

Every reporter prints a failed input as one line (``voxrelay batch: <error>``), even when quiet.
The bar counts audio seconds, so its ETA weighs a one-hour file as one hour, not as one file.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, TextIO

from voxrelay.batch.summary import FileRecord

PREFIX = "voxrelay batch"


def hours(seconds: float) -> str:
    """``1.25 h`` above an hour, ``12.3 min`` above a minute, else ``12 s``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


class Reporter(Protocol):
    def start(self, files: int, audio_seconds: float) -> None: ...

    def audio(self, seconds: float) -> None:
        """``seconds`` more audio were transcribed."""

    def done(self, record: FileRecord) -> None: ...

    def message(self, line: str) -> None:
        """A line the user must see (a failure, a retry), even when quiet."""

    def info(self, line: str) -> None:
        """An informational line, dropped when quiet."""

    def close(self) -> None: ...


class _Base:
    def __init__(self, stderr: TextIO) -> None:
        self.stderr = stderr
        self.files = 0
        self.files_done = 0
        self.audio_total = 0.0
        self.audio_done = 0.0
        self.began = time.perf_counter()

    def start(self, files: int, audio_seconds: float) -> None:
        self.files, self.audio_total = files, audio_seconds
        self.began = time.perf_counter()

    def speed(self) -> float:
        elapsed = time.perf_counter() - self.began
        return self.audio_done / elapsed if elapsed > 0 else 0.0

    def audio(self, seconds: float) -> None:
        self.audio_done += seconds

    def done(self, record: FileRecord) -> None:
        self.files_done += 1
        if record.status == "failed":
            self.message(f"{PREFIX}: {record.error}")

    def message(self, line: str) -> None:
        print(line, file=self.stderr, flush=True)

    def info(self, line: str) -> None:
        self.message(line)

    def close(self) -> None:
        pass


class QuietReporter(_Base):
    """Only failures."""

    def info(self, line: str) -> None:
        pass


class LineReporter(_Base):
    """One line per finished file on stderr (for logs and pipes)."""

    def done(self, record: FileRecord) -> None:
        super().done(record)
        if record.status != "ok" or record.stats is None:
            return
        s = record.stats
        self.message(
            f"{PREFIX}: [{self.files_done}/{self.files}] {record.input} -> {record.output} "
            f"({hours(s.duration)} audio, {s.segments} segments, {s.x_real_time:.1f}x real time; "
            f"total {hours(self.audio_done)} of {hours(self.audio_total)} at {self.speed():.1f}x real time)"
        )


class BarReporter(_Base):
    """A rich progress bar: files, audio hours, elapsed, ETA and speed in × real time."""

    def __init__(self, stderr: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        super().__init__(stderr)
        self.console = Console(file=stderr, soft_wrap=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            TextColumn("{task.fields[audio]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[speed]}"),
            console=self.console,
            transient=False,
        )
        self.task: Any = None

    def _fields(self) -> dict[str, Any]:
        return {
            "files": f"{self.files_done}/{self.files}",
            "audio": f"{hours(self.audio_done)}/{hours(self.audio_total)}",
            "speed": f"{self.speed():.1f}x real time",
        }

    def start(self, files: int, audio_seconds: float) -> None:
        super().start(files, audio_seconds)
        self.progress.start()
        self.task = self.progress.add_task("batch", total=max(audio_seconds, 1e-9), **self._fields())

    def audio(self, seconds: float) -> None:
        super().audio(seconds)
        self.progress.update(self.task, completed=self.audio_done, **self._fields())

    def done(self, record: FileRecord) -> None:
        super().done(record)
        self.progress.update(self.task, **self._fields())

    def message(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(stderr: TextIO, *, quiet: bool = False, bar: bool | None = None) -> Reporter:
    """A bar when ``stderr`` is a terminal (or ``bar`` is True), lines otherwise; only failures if quiet."""
    if quiet:
        return QuietReporter(stderr)
    if bar if bar is not None else stderr.isatty():
        return BarReporter(stderr)
    return LineReporter(stderr)
