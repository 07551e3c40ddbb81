"""Start `voxrelay serve` (or another server) as a subprocess for the benchmark scripts (imported from scripts/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_listening(command: list[str], what: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``command``, which prints ``listening on ADDRESS`` first; returns the process and the address."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"{what} did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


def start_serve(*extra: str) -> tuple[subprocess.Popen[str], str]:
    """`voxrelay -q serve --port 0 EXTRA...`; returns the process and the address it printed."""
    return start_listening([sys.executable, "-m", "voxrelay", "-q", "serve", "--port", "0", *extra], "the server")
