"""The README against the command line: the flags its command tables name, and its install commands."""

from __future__ import annotations

import argparse
import re
import shlex

from tests.conftest import ROOT
from tests.test_cli_conventions import parsers

README = (ROOT / "README.md").read_text(encoding="utf-8")


def sh_blocks(text: str) -> list[list[str]]:
    """The lines of every ```sh block."""
    return [block.strip().splitlines() for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_the_readme_says_how_to_get_the_cpu_build_of_torch() -> None:
    install = next(block for block in sh_blocks(README) if any("pip install -e '.[all]'" in line for line in block))
    commands = [line.split("#")[0].strip() for line in install]
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in commands
    assert "plain `pip install torch==2.13.0`" in README  # the command that works where the index has the CPU build
    # The test command is one of its own, whichever way torch came.
    assert commands[-1] == "python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == "python -m pytest -q"
    assert '${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}' in ci


# The flag tables: a table whose first header cell is "flag (`transcribe`, `batch`)" or "`voxrelay serve` flag"
# lists flags of those commands in its first column.

MAIN_COMMANDS = ("transcribe", "batch", "listen", "eval", "serve")
CELL = re.compile(r"(?<!\\)\|")
FLAG = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")


def flag_tables(text: str) -> list[tuple[tuple[str, ...], list[set[str]]]]:
    """(commands, flags of each row) of every flag table."""
    tables: list[tuple[tuple[str, ...], list[set[str]]]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or i + 1 >= len(lines) or not lines[i + 1].startswith("|---"):
            continue
        head = CELL.split(line)[1]
        if "flag" not in head:
            continue
        commands = tuple(re.findall(r"`(?:voxrelay )?([a-z]+)`", head))
        rows = []
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            first = CELL.split(row)[1]  # a | inside a cell is written \|
            rows.append({m for code in re.findall(r"`([^`]*)`", first) for m in FLAG.findall(code)})
        tables.append((commands, rows))
    return tables


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    return {path: p for path, p in parsers() if path}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}


def test_every_flag_the_readme_tables_name_exists() -> None:
    found = command_parsers()
    tables = flag_tables(README)
    assert {c for commands, _ in tables for c in commands} >= set(MAIN_COMMANDS)
    unknown = [
        (command, flag)
        for commands, rows in tables
        for command in commands
        for row in rows
        for flag in sorted(row)
        if flag not in option_strings(found[command])
    ]
    assert unknown == []


def test_every_flag_of_the_main_commands_is_in_a_readme_table() -> None:
    found = command_parsers()
    listed: dict[str, set[str]] = {c: set() for c in MAIN_COMMANDS}
    for commands, rows in flag_tables(README):
        for command in commands:
            listed.setdefault(command, set()).update(*rows)
    missing = {c: sorted(option_strings(found[c]) - listed[c]) for c in MAIN_COMMANDS}
    assert missing == {c: [] for c in MAIN_COMMANDS}


def test_every_flag_of_a_readme_example_exists() -> None:
    """The ```sh examples: `voxrelay CMD [VERB] ... --flag` takes only flags CMD has."""
    found = command_parsers()
    wrong = []
    for block in sh_blocks(README):
        for line in "\n".join(block).replace("\\\n", " ").splitlines():  # continuation lines joined
            command = re.split(r"\s(?:#|\||&&|;)\s?", line.strip())[0]
            words = shlex.split(command, comments=True) if command.startswith("voxrelay ") else []
            path = ""
            for word in words[1:]:
                if f"{path} {word}".strip() not in found:
                    break
                path = f"{path} {word}".strip()
            if not path:
                continue
            given = {w.split("=")[0] for w in words if w.startswith("-") and FLAG.fullmatch(w.split("=")[0])}
            wrong += [(line, flag) for flag in sorted(given - option_strings(found[path]))]
    assert wrong == []
