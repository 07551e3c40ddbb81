"""Sinks: where final results go. Text with timestamps, JSON lines, SRT and WebVTT.

A sink is told when a file (or a live session) begins and ends, and gets each result in between.
Results with no text (silence, noise the recognizer rejected) appear only in JSON.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, TextIO

from voxrelay.edge.results import SegmentResult
from voxrelay.errors import InvalidArgument

FORMATS = ("text", "json", "srt", "vtt")
SUFFIXES = {"text": ".txt", "json": ".jsonl", "srt": ".srt", "vtt": ".vtt"}


def clock(seconds: float, decimal: str = ".") -> str:
    """``HH:MM:SS.mmm`` (``,`` before the milliseconds for SRT)."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


class Sink(Protocol):
    def begin(self, label: str) -> None: ...

    def write(self, result: SegmentResult) -> None: ...

    def end(self) -> None: ...


class TextSink:
    """``[00:00:01.230 --> 00:00:04.560] text``, with a ``==> file <==`` header per file if asked."""

    def __init__(self, out: TextIO, headers: bool = False) -> None:
        self.out = out
        self.headers = headers

    def begin(self, label: str) -> None:
        if self.headers:
            self.out.write(f"==> {label} <==\n")
            self.out.flush()

    def write(self, result: SegmentResult) -> None:
        if result.text:
            self.out.write(f"[{clock(result.start)} --> {clock(result.end)}] {result.text}\n")
            self.out.flush()

    def end(self) -> None:
        pass


class JsonSink:
    """One JSON object per line per final segment, with ``file`` (the path as given) first."""

    def __init__(self, out: TextIO, extra: dict[str, Any] | None = None) -> None:
        self.out = out
        self.extra = extra or {}
        self.label = ""

    def begin(self, label: str) -> None:
        self.label = label

    def write(self, result: SegmentResult) -> None:
        self.out.write(json.dumps(result.to_json(file=self.label, **self.extra), ensure_ascii=False) + "\n")
        self.out.flush()

    def end(self) -> None:
        pass


class SubtitleSink:
    """SRT or WebVTT cues, numbered from 1 per file; a cue never starts before the previous one ends and
    never ends before it starts (a player shows overlapping or backward cues wrongly)."""

    def __init__(self, out: TextIO, vtt: bool) -> None:
        self.out = out
        self.vtt = vtt
        self.index = 0
        self.last_end = 0.0

    def begin(self, label: str) -> None:
        self.index = 0
        self.last_end = 0.0
        if self.vtt:
            self.out.write("WEBVTT\n\n")
            self.out.flush()

    def write(self, result: SegmentResult) -> None:
        if not result.text:
            return
        self.index += 1
        sep = "." if self.vtt else ","
        start = max(result.start, self.last_end)
        end = max(result.end, start + 0.001)
        self.last_end = end
        header = "" if self.vtt else f"{self.index}\n"
        self.out.write(f"{header}{clock(start, sep)} --> {clock(end, sep)}\n{result.text}\n\n")
        self.out.flush()

    def end(self) -> None:
        pass


def make_sink(fmt: str, out: TextIO, *, headers: bool = False) -> Sink:
    if fmt == "text":
        return TextSink(out, headers=headers)
    if fmt == "json":
        return JsonSink(out)
    if fmt in ("srt", "vtt"):
        return SubtitleSink(out, vtt=fmt == "vtt")
    raise InvalidArgument(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
