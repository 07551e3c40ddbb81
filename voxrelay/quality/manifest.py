"""Reading an evaluation manifest: one JSON object per line, the format of ``../shared/data/speech``.

Fields used: ``audio`` (a path relative to the manifest's folder, or absolute), ``text`` (the reference
transcript, scored when ``text_kind`` is absent or starts with ``human_reference``), ``language``,
``speech`` (labelled speech regions, ``[[start_s, end_s], ...]``), ``speech_kind`` and ``utterances``
(several references in one file, each with its own ``text``, ``language`` and extent ``start``/``end``,
or ``clip_start``/``clip_end`` when the clip around it is given). A row with neither a reference nor
speech labels has nothing to score and is skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxrelay.errors import InvalidArgument

UNKNOWN_LANGUAGE = "und"


@dataclass(frozen=True)
class Utterance:
    """A reference transcript and where it lies in its file (``start``/``end`` None: the whole file)."""

    id: str
    text: str
    language: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Entry:
    """One manifest row worth scoring."""

    name: str  # the row's ``audio`` as written
    path: Path
    utterances: tuple[Utterance, ...] = ()
    speech: tuple[tuple[float, float], ...] | None = None
    speech_kind: str = ""

    @property
    def has_text(self) -> bool:
        return bool(self.utterances)

    @property
    def has_speech(self) -> bool:
        return self.speech is not None


@dataclass(frozen=True)
class Manifest:
    path: Path
    entries: tuple[Entry, ...]
    skipped: tuple[str, ...]  # rows with nothing to score


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{where}: {value!r} is not a time in seconds (a number ≥ 0)")
    return float(value)


def _regions(where: str, value: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{where}: must be a list of [start_s, end_s] pairs")
    regions = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise InvalidArgument(f"{where}[{i}]: {pair!r} is not a [start_s, end_s] pair")
        start, end = _number(f"{where}[{i}]", pair[0]), _number(f"{where}[{i}]", pair[1])
        if end <= start:
            raise InvalidArgument(f"{where}[{i}]: ends ({end:g} s) before it starts ({start:g} s)")
        regions.append((start, end))
    return tuple(sorted(regions))


def _language(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) and value.strip() else UNKNOWN_LANGUAGE


def _has_reference(row: dict[str, Any]) -> bool:
    kind = row.get("text_kind")
    return isinstance(row.get("text"), str) and (kind is None or str(kind).startswith("human_reference"))


def _utterances(where: str, row: dict[str, Any], stem: str) -> tuple[Utterance, ...]:
    listed = row.get("utterances")
    if listed is None:
        if not _has_reference(row):
            return ()
        return (Utterance(stem, row["text"], _language(row.get("language"))),)
    if not isinstance(listed, list):
        raise InvalidArgument(f"{where}.utterances: must be a list of objects")
    if not _has_reference(row):
        return ()
    out = []
    for i, u in enumerate(listed):
        at = f"{where}.utterances[{i}]"
        if not isinstance(u, dict) or not isinstance(u.get("text"), str):
            raise InvalidArgument(f"{at}: needs a 'text' string")
        start = _number(f"{at}.start", u.get("clip_start", u.get("start")))
        end = _number(f"{at}.end", u.get("clip_end", u.get("end")))
        if end <= start:
            raise InvalidArgument(f"{at}: ends ({end:g} s) before it starts ({start:g} s)")
        out.append(Utterance(str(u.get("id") or f"{stem}#{i}"), u["text"], _language(u.get("language")), start, end))
    return tuple(out)


def parse_row(where: str, row: Any, folder: Path) -> Entry | None:
    """One manifest line as an Entry (None: nothing to score); ``where`` names it in errors."""
    if not isinstance(row, dict):
        raise InvalidArgument(f"{where}: expected a JSON object, got {type(row).__name__}")
    audio = row.get("audio")
    if not isinstance(audio, str) or not audio:
        raise InvalidArgument(f"{where}: 'audio' (the WAV path) is missing")
    path = Path(audio) if Path(audio).is_absolute() else folder / audio
    stem = str(row.get("id") or Path(audio).stem)
    speech = _regions(f"{where}.speech", row["speech"]) if row.get("speech") is not None else None
    utterances = _utterances(where, row, stem)
    if speech is None and not utterances:
        return None
    return Entry(audio, path, utterances, speech, str(row.get("speech_kind") or ""))


def read_manifest(path: str | Path) -> Manifest:
    """Parse a manifest; a malformed line is an InvalidArgument naming the file, line and field."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"{path}: cannot read the manifest ({err})") from None
    entries: list[Entry] = []
    skipped: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidArgument(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
        entry = parse_row(where, row, path.parent)
        if entry is None:
            skipped.append(row["audio"])
        else:
            entries.append(entry)
    if not entries:
        raise InvalidArgument(f"{path}: no row has a reference transcript or speech labels; nothing to evaluate")
    return Manifest(path, tuple(entries), tuple(skipped))
