"""Sinks: where final results go. Text with timestamps, JSON lines, SRT and WebVTT.

A sink is told when a file (or a live session) begins and ends, and gets each result in between.
Results with no text (silence, noise the recognizer rejected) appear only in JSON.

Interim results (``final`` False, only when the uplink asked for them) are shown by two sinks alone:
text on a terminal (``live``), as one line rewritten in place until the final text replaces it, and
JSON with ``interim`` set, as ``"final": false`` objects (finals then carry ``"final": true``). Text
in a file or pipe, SRT and WebVTT never hold them.
"""

from __future__ import annotations

import json
import shutil
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


# Back to the start of the line, and clear it (ANSI "erase in line").
CLEAR_LINE = "\r\x1b[K"


def wants_interim(fmt: str, asked: bool | None, out: TextIO | None, live: bool) -> bool:
    """Whether a command writing ``fmt`` to ``out`` (None: files) shows interim results: JSON only when
    ``asked`` (``--interim``); text on a terminal unless refused (``asked`` False), where the audio is
    ``live`` (a microphone, a paced file); never text in a file or pipe; SRT and WebVTT never (asking
    for them there is refused)."""
    check_interim(fmt, asked)
    if fmt == "json":
        return bool(asked)
    if fmt == "text":
        return asked is not False and live and out is not None and is_terminal(out)
    return False


def check_interim(fmt: str, asked: bool | None) -> None:
    """Refuse ``--interim`` for a format that never holds interim results."""
    if asked and fmt not in ("json", "text"):
        raise InvalidArgument(f"--interim: {fmt} output holds final results only; use --format json or text")


def is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


class TextSink:
    """``[00:00:01.230 --> 00:00:04.560] text``, with a ``==> file <==`` header per file if asked.

    ``live`` (a terminal): interim results as one line, rewritten until the final line replaces it;
    the line keeps the end of a text too long for the terminal's width, so that it never wraps.
    """

    def __init__(self, out: TextIO, headers: bool = False, live: bool = False) -> None:
        self.out = out
        self.headers = headers
        self.live = live
        self._shown = False  # an interim line is on the terminal

    def begin(self, label: str) -> None:
        self._clear()
        if self.headers:
            self.out.write(f"==> {label} <==\n")
            self.out.flush()

    def write(self, result: SegmentResult) -> None:
        if not result.final:
            if self.live and result.text:
                self._show(result)
            return
        self._clear()
        if result.text:
            self.out.write(f"[{clock(result.start)} --> {clock(result.end)}] {result.text}\n")
        self.out.flush()

    def end(self) -> None:
        self._clear()
        self.out.flush()

    def _show(self, result: SegmentResult) -> None:
        prefix = f"[{clock(result.start)} --> {clock(result.end)}] "
        width = shutil.get_terminal_size().columns - 1
        text = result.text
        room = max(width - len(prefix), 8)
        if len(text) > room:
            text = "…" + text[len(text) - room + 1 :]
        self.out.write(f"{CLEAR_LINE}{prefix}{text}")
        self.out.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.out.write(CLEAR_LINE)
            self._shown = False


class JsonSink:
    """One JSON object per line per final segment, with ``file`` (the path as given) first.

    ``interim``: interim results too, as ``{"file", "segment_id", "sequence", "text", "start", "end",
    "audio_seconds", "final": false}``, and every final result with ``"final": true``.
    """

    def __init__(self, out: TextIO, extra: dict[str, Any] | None = None, interim: bool = False) -> None:
        self.out = out
        self.extra = extra or {}
        self.label = ""
        self.interim = interim

    def begin(self, label: str) -> None:
        self.label = label

    def write(self, result: SegmentResult) -> None:
        if not result.final:
            if not self.interim:
                return
            data: dict[str, Any] = {
                "file": self.label,
                **self.extra,
                "segment_id": result.segment_id,
                "sequence": result.sequence,
                "text": result.text,
                "start": round(result.start, 3),
                "end": round(result.end, 3),
                "audio_seconds": round(result.audio_seconds, 3),
                "final": False,
            }
        else:
            data = result.to_json(file=self.label, **self.extra)
            if self.interim:
                data["final"] = True
        self.out.write(json.dumps(data, ensure_ascii=False) + "\n")
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
        if not result.text or not result.final:
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


def make_sink(fmt: str, out: TextIO, *, headers: bool = False, interim: bool = False) -> Sink:
    """The sink of ``fmt``; ``interim``: show interim results (see :func:`wants_interim`)."""
    if fmt == "text":
        return TextSink(out, headers=headers, live=interim)
    if fmt == "json":
        return JsonSink(out, interim=interim)
    if fmt in ("srt", "vtt"):
        return SubtitleSink(out, vtt=fmt == "vtt")
    raise InvalidArgument(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
