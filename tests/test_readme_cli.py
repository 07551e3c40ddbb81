"""The README against the command line: the flags its command tables name, and its install commands."""

from __future__ import annotations

import re

from tests.conftest import ROOT

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
