"""Ctrl-C during `voxrelay transcribe --pace 1`: a real subprocess (the embedded tiny.en recognizer), a
real SIGINT sent once the first result is out. What was delivered is kept (the output file, marked
partial on stderr), the segment in flight is finished as `listen` does, and the exit status is 130."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "samples" / "voxrelay-sample.wav"
FIRST = "welcome"  # in the first sentence of the sample, the file's first result


@pytest.fixture
def long_wav(tmp_path: Path) -> Path:
    """The sample's first sentence and a pause, then ~55 s of its sentences back to back: the first
    result comes out while the next segment is being spoken (it is in flight at the SIGINT)."""
    audio, rate = soundfile.read(str(SAMPLE), dtype="int16")

    def cut(start: float, end: float) -> np.ndarray:
        return np.asarray(audio[int(start * rate) : int(end * rate)])

    first = [cut(0.0, 8.8)]  # sentence 1 and a 0.7 s pause: the segment closes at the pause
    speech = [cut(2.0, 8.3), cut(10.6, 15.7)] * 5  # then speech with no pause near the endpoint's 0.5 s
    path = tmp_path / "long.wav"
    soundfile.write(str(path), np.concatenate(first + speech), rate, subtype="PCM_16")
    return path


def start(*args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "voxrelay", "transcribe", "--pace", "1", "--vad", "webrtc", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    return out, err


def test_ctrl_c_writes_the_partial_output_with_the_segment_in_flight(long_wav: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    proc = start("--output-dir", str(out_dir), str(long_wav))
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:  # the first result, in the file being written
        if any(FIRST in p.read_text().lower() for p in out_dir.glob(".long.txt.*.tmp")):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError(f"no result before the end: {proc.communicate()[1]}")
    time.sleep(2)  # well inside the second segment (speech goes on for 12 s or more)
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc)

    written = (out_dir / "long.txt").read_text().splitlines()
    assert FIRST in written[0].lower(), written
    # The segment being spoken at the SIGINT was closed and recognised, not dropped.
    assert len(written) >= 2 and written[1].split("] ", 1)[1].strip(), written
    assert f"{out_dir / 'long.txt'} is partial" in err, err
    assert not [p for p in out_dir.iterdir() if p.name != "long.txt"], list(out_dir.iterdir())


def test_ctrl_c_on_stdout_keeps_what_was_printed_and_finishes_the_segment_in_flight(long_wav: Path) -> None:
    proc = start(str(long_wav))
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=300)
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"no result: {proc.communicate()[1]}") from None
    assert FIRST in first.lower(), first
    time.sleep(2)  # well inside the second segment (speech goes on for 12 s or more)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=180)
    reader.join(30)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode == 130 and "Traceback" not in err, err
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert rest and rest[0].split("] ", 1)[1].strip(), rest  # the segment in flight
    assert f"the transcript of {long_wav} above is partial" in err, err
