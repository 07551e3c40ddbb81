"""Which files a batch transcribes and where each one's output goes.

An input is a file, a directory (searched recursively for the extensions of every format the reader
decodes, :func:`~voxrelay.edge.capture.decoders.readable_suffixes`) or a glob. A file given directly is
tried whatever its name; files found in a directory or by a glob with another extension are skipped and
counted by extension. A file given directly goes to ``<stem><suffix>`` in the output directory; a file
found in a directory or by a glob keeps its path relative to that directory (for a glob: the part of the
pattern before its first wildcard).
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from voxrelay.edge.capture.decoders import readable_suffixes


@dataclass(frozen=True)
class BatchInput:
    """One input of a batch: the file, how it is named in reports, its output path without suffix.

    ``problem`` is set when the input cannot be transcribed before it is even opened (a pattern that
    matches nothing, an output that another input already claims).
    """

    path: Path
    label: str
    relative: PurePath
    problem: str | None = None

    def output(self, output_dir: Path, suffix: str) -> Path:
        return output_dir / self.relative.with_name(self.relative.name + suffix)


@dataclass
class InputScan:
    """The inputs found, and the files of folders and globs left out for their extension (``.txt``: 3)."""

    items: list[BatchInput] = field(default_factory=list)
    skipped_by_extension: Counter[str] = field(default_factory=Counter)


class _Finder:
    """Walks folders and globs, keeping audio files and counting the others by extension."""

    def __init__(self) -> None:
        self.suffixes = readable_suffixes()
        self.skipped: Counter[str] = Counter()
        self._skipped_paths: set[Path] = set()  # a folder given twice counts its files once

    def keep(self, path: Path) -> bool:
        # Dot-files are left out, not counted: ``._x.wav`` next to ``x.wav`` is macOS metadata, not audio.
        if path.name.startswith(".") or not path.is_file():
            return False
        if path.suffix.lower() in self.suffixes:
            return True
        if (key := path.resolve()) not in self._skipped_paths:
            self._skipped_paths.add(key)
            self.skipped[path.suffix.lower() or "(none)"] += 1
        return False

    def under(self, base: Path) -> list[Path]:
        found: list[Path] = []
        for root, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(p for p in (Path(root) / f for f in sorted(files)) if self.keep(p))
        return found


def _glob_base(pattern: str) -> Path:
    """The directory part of ``pattern`` before its first wildcard (``rec/**/*.wav`` → ``rec``)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _left_out(skipped: Counter[str]) -> str:
    if not skipped:
        return ""
    return f" ({sum(skipped.values())} other file(s) left out by extension: {', '.join(sorted(skipped))})"


def _expand(arg: str, finder: _Finder) -> tuple[list[BatchInput], str | None]:
    """The inputs named by one argument, or the problem with it."""
    path = Path(arg)
    before = finder.skipped.copy()
    if path.is_dir():
        files = finder.under(path)
        if not files:
            return [], (
                f"{arg}: no audio files ({' '.join(finder.suffixes)}) in this folder or below it"
                + _left_out(finder.skipped - before)
            )
        return [BatchInput(f, str(f), f.relative_to(path).with_suffix("")) for f in files], None
    if path.exists() or not glob.has_magic(arg):
        # A missing or unreadable file is tried anyway: opening it gives the precise error.
        return [BatchInput(path, arg, PurePath(path.stem or path.name))], None
    base = _glob_base(arg)
    items = []
    for match in sorted(glob.glob(arg, recursive=True)):
        found = Path(match)
        for f in finder.under(found) if found.is_dir() else [found] if finder.keep(found) else []:
            items.append(BatchInput(f, str(f), f.relative_to(base).with_suffix("")))
    if not items:
        left_out = finder.skipped - before
        if not left_out:
            return [], f"{arg}: the pattern matches no file"
        return [], f"{arg}: the pattern matches no audio file" + _left_out(left_out)
    return items, None


def find_inputs(args: Sequence[str], suffix: str) -> list[BatchInput]:
    """The inputs of :func:`scan_inputs`."""
    return scan_inputs(args, suffix).items


def scan_inputs(args: Sequence[str], suffix: str) -> InputScan:
    """Expand ``args`` into inputs, in order, each file once; problems become inputs with ``problem`` set.

    ``suffix`` is the output format's: two inputs whose outputs would be the same file are refused
    (the second one) instead of overwriting each other.
    """
    finder = _Finder()
    items: list[BatchInput] = []
    seen: set[Path] = set()
    outputs: dict[str, str] = {}
    for arg in args:
        expanded, problem = _expand(arg, finder)
        if problem is not None:
            items.append(BatchInput(Path(arg), arg, PurePath(), problem))
            continue
        for item in expanded:
            key = item.path.resolve()
            if key in seen:
                continue
            seen.add(key)
            out = str(item.relative) + suffix
            # Case-insensitive: on macOS and Windows A.txt and a.txt are the same file.
            other = outputs.setdefault(out.casefold(), item.label)
            if other != item.label:
                item = BatchInput(
                    item.path,
                    item.label,
                    item.relative,
                    f"{item.label}: its output {out} would overwrite that of {other}; "
                    "give their folder instead of the files, or run them into separate output folders",
                )
            items.append(item)
    return InputScan(items, finder.skipped)
