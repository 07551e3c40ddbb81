"""Which files a batch transcribes and where each one's output goes.

An input is a file, a directory (searched recursively for the ``AUDIO_SUFFIXES``) or a glob. A file given directly
goes to ``<stem><suffix>`` in the output directory; a file found in a directory or by a glob keeps
its path relative to that directory (for a glob: the part of the pattern before its first wildcard).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga")


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


def _is_audio(path: Path) -> bool:
    # Dot-files are skipped: ``._x.wav`` next to ``x.wav`` is macOS metadata, not audio.
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _under(base: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(p for p in (Path(root) / f for f in sorted(files)) if _is_audio(p))
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


def _expand(arg: str) -> tuple[list[BatchInput], str | None]:
    """The inputs named by one argument, or the problem with it."""
    path = Path(arg)
    if path.is_dir():
        files = _under(path)
        if not files:
            return [], f"{arg}: no audio files ({' '.join(AUDIO_SUFFIXES)}) in this folder or below it"
        return [BatchInput(f, str(f), f.relative_to(path).with_suffix("")) for f in files], None
    if path.exists() or not glob.has_magic(arg):
        # A missing or unreadable file is tried anyway: opening it gives the precise error.
        return [BatchInput(path, arg, PurePath(path.stem or path.name))], None
    base = _glob_base(arg)
    items = []
    for match in sorted(glob.glob(arg, recursive=True)):
        found = Path(match)
        for f in _under(found) if found.is_dir() else [found] if found.is_file() else []:
            items.append(BatchInput(f, str(f), f.relative_to(base).with_suffix("")))
    if not items:
        return [], f"{arg}: the pattern matches no file"
    return items, None


def find_inputs(args: Sequence[str], suffix: str) -> list[BatchInput]:
    """Expand ``args`` into inputs, in order, each file once; problems become inputs with ``problem`` set.

    ``suffix`` is the output format's: two inputs whose outputs would be the same file are refused
    (the second one) instead of overwriting each other.
    """
    items: list[BatchInput] = []
    seen: set[Path] = set()
    outputs: dict[str, str] = {}
    for arg in args:
        expanded, problem = _expand(arg)
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
    return items
