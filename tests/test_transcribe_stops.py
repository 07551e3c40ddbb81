"""How `voxrelay transcribe` ends early: a reader that closes stdout, Ctrl-C with results delivered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from tests.conftest import ROOT, load_pcm16

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def long_wav(
    tmp_path_factory: pytest.TempPathFactory, english_utterances: list[dict[str, Any]], speech_dir: Path
) -> Path:
    """Five dev-set utterances with a second of silence between them: several results, spread over time."""
    gap = np.zeros(16000, dtype=np.int16)
    parts = []
    for row in english_utterances[:5]:
        parts += [load_pcm16(speech_dir / row["audio"]), gap]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    soundfile.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return path


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "voxrelay", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_a_closed_stdout_ends_the_run_quietly(long_wav: Path) -> None:
    # As `voxrelay transcribe long.wav | head -1`: the reader leaves after the first line.
    proc = start("transcribe", "--pace", "4", str(long_wav))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first.startswith("[00:"), first
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert "WARNING" not in err, err
