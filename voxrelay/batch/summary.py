"""What a batch writes: each file's output (atomically) and ``summary.json``, rewritten as it goes.

The JSON output of one file is a document ``{"file", "duration", "text", "segments", "stats"}`` whose
segments are the objects ``voxrelay transcribe --format json`` prints, one per line. Text, SRT and
WebVTT outputs are written by the same sinks as ``transcribe``'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from voxrelay.edge.results import SegmentResult
from voxrelay.edge.sinks import SUFFIXES, make_sink
from voxrelay.edge.transcribe import atomic_text

SUMMARY_NAME = "summary.json"
# A batch's JSON output is one document per file, not JSON lines.
BATCH_SUFFIXES = {**SUFFIXES, "json": ".json"}
STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class FileStats:
    """How one file went: its speech (as the VAD cut it) and how fast it was transcribed."""

    duration: float
    speech_seconds: float
    segments: int
    processing_seconds: float

    @property
    def speech_ratio(self) -> float:
        return self.speech_seconds / self.duration if self.duration > 0 else 0.0

    @property
    def x_real_time(self) -> float:
        return self.duration / self.processing_seconds if self.processing_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "speech_ratio": round(self.speech_ratio, 4),
            "speech_seconds": round(self.speech_seconds, 3),
            "segments": self.segments,
            "processing_seconds": round(self.processing_seconds, 3),
            "x_real_time": round(self.x_real_time, 2),
        }


def file_stats(duration: float, results: Sequence[SegmentResult], processing_seconds: float) -> FileStats:
    speech = sum(max(0.0, r.end - r.start) for r in results)
    return FileStats(duration, min(speech, duration), len(results), processing_seconds)


def transcript_text(results: Sequence[SegmentResult]) -> str:
    return " ".join(r.text for r in results if r.text)


def write_output(path: Path, fmt: str, label: str, results: Sequence[SegmentResult], stats: FileStats) -> None:
    """Write one file's output through a temporary file that is renamed into place when complete."""
    with atomic_text(path) as out:
        if fmt == "json":
            document = {
                "file": label,
                "duration": round(stats.duration, 3),
                "text": transcript_text(results),
                "segments": [r.to_json(file=label) for r in results],
                "stats": stats.to_json(),
            }
            json.dump(document, out, ensure_ascii=False, indent=2)
            out.write("\n")
        else:
            sink = make_sink(fmt, out)
            sink.begin(label)
            for result in results:
                sink.write(result)
            sink.end()


@dataclass(frozen=True)
class FileRecord:
    """One input's line in the summary."""

    input: str
    status: str
    output: str | None = None
    error: str | None = None
    stats: FileStats | None = None
    truncated: float = 0.0
    """Seconds of audio a truncated WAV's header promises but the file lacks (0: complete)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: {self.status!r} is not one of {', '.join(STATUSES)}")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input": self.input,
            "status": self.status,
            "output": self.output,
            "error": self.error,
        }
        if self.stats is not None:
            data["duration"] = round(self.stats.duration, 3)
            data["stats"] = self.stats.to_json()
        if self.truncated > 0:
            data["truncated"] = True
            data["missing_seconds"] = round(self.truncated, 3)
        return data


class Summary:
    """The records of one run, in input order, written to ``<output dir>/summary.json`` on each change."""

    def __init__(self, output_dir: Path, inputs: Sequence[str]) -> None:
        self.path = output_dir / SUMMARY_NAME
        self.inputs = list(inputs)
        self.records: dict[int, FileRecord] = {}
        self.began = time.perf_counter()
        self.interrupted = False
        self.error: str | None = None
        self.skipped_by_extension: dict[str, int] = {}
        """Files of the input folders and globs left out for their extension, by extension."""

    def add(self, index: int, record: FileRecord) -> None:
        self.records[index] = record

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records.values())

    @property
    def audio_seconds(self) -> float:
        """Audio transcribed in this run (skipped files do not count)."""
        return sum(r.stats.duration for r in self.records.values() if r.stats is not None and r.status == "ok")

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self.began

    def totals(self) -> dict[str, Any]:
        wall = self.wall_seconds
        audio = self.audio_seconds
        return {
            "files": len(self.inputs),
            "ok": self.count("ok"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "pending": len(self.inputs) - len(self.records),
            "audio_seconds": round(audio, 3),
            "wall_seconds": round(wall, 3),
            "x_real_time": round(audio / wall, 2) if wall > 0 else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "files": [self.records[i].to_json() for i in sorted(self.records)],
            "totals": self.totals(),
            "complete": len(self.records) == len(self.inputs) and self.error is None,
            "interrupted": self.interrupted,
            "skipped_by_extension": {
                "count": sum(self.skipped_by_extension.values()),
                "extensions": dict(sorted(self.skipped_by_extension.items())),
            },
        }
        if self.error is not None:
            data["error"] = self.error
        return data

    def write(self) -> None:
        with atomic_text(self.path) as out:
            json.dump(self.to_json(), out, ensure_ascii=False, indent=2)
            out.write("\n")


class BatchMetrics:
    """The batch's own series, next to the edge's (``--metrics-file``, ``--metrics-port``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.files = Counter(
            "voxrelay_batch_files_total",
            "Batch inputs decided, by status (ok, failed, skipped)",
            ["status"],
            registry=registry,
        )
        for status in STATUSES:
            self.files.labels(status=status)
        self.audio = Counter(
            "voxrelay_batch_audio_seconds_total", "Audio of the batch's files transcribed", registry=registry
        )
        self.processing = Counter(
            "voxrelay_batch_processing_seconds_total",
            "Wall time from a file's start to its output (files overlap when several are in flight)",
            registry=registry,
        )
        self.pending = Gauge("voxrelay_batch_files_pending", "Batch inputs not decided yet", registry=registry)

    def record(self, record: FileRecord) -> None:
        self.files.labels(status=record.status).inc()
        if record.status == "ok" and record.stats is not None:
            self.audio.inc(record.stats.duration)
            self.processing.inc(record.stats.processing_seconds)
