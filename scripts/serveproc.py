"""Start `voxrelay serve` as a subprocess for the benchmark and load scripts (imported from scripts/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_serve(*extra: str) -> tuple[subprocess.Popen[str], str]:
    """`voxrelay -q serve --port 0 EXTRA...`; returns the process and the address it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay", "-q", "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.removeprefix("listening on ")
