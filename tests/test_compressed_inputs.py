"""Compressed inputs (MP3, M4A/AAC) made by ffmpeg from the sample: transcribed right, with no decoder
messages on stderr, with PyAV and without it (libsndfile, its messages captured)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, ServerThread

SAMPLE = ROOT / "samples" / "voxrelay-sample.wav"


def encode(target: Path, *options: str) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(SAMPLE), *options, str(target)], check=True)
    return target


def voxrelay(*args: str, block_pyav: bool = False) -> subprocess.CompletedProcess[str]:
    # ``sys.modules["av"] = None`` makes ``import av`` fail: an edge install without PyAV.
    prelude = "import sys; sys.modules['av'] = None; " if block_pyav else "import sys; "
    code = prelude + "from voxrelay.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def assert_quiet_and_right(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stderr
    assert "mpg123" not in run.stderr and "[src/" not in run.stderr, run.stderr
    text = run.stdout.lower()
    assert "welcome" in text and "quick brown fox" in text, run.stdout


@pytest.mark.parametrize("block_pyav", [False, True], ids=["pyav", "libsndfile"])
def test_mp3_is_transcribed_with_no_decoder_noise(server: ServerThread, tmp_path: Path, block_pyav: bool) -> None:
    mp3 = encode(tmp_path / "talk.mp3")
    run = voxrelay("transcribe", "--server", server.address, "--vad", "webrtc", str(mp3), block_pyav=block_pyav)
    assert_quiet_and_right(run)
    assert run.stderr.strip() == "", run.stderr


def test_m4a_is_read_by_pyav_and_named_when_pyav_is_missing(server: ServerThread, tmp_path: Path) -> None:
    m4a = encode(tmp_path / "talk.m4a", "-ac", "2", "-ar", "44100")
    assert_quiet_and_right(voxrelay("transcribe", "--server", server.address, "--vad", "webrtc", str(m4a)))
    missing = voxrelay("transcribe", "--server", server.address, str(m4a), block_pyav=True)
    assert missing.returncode == 1
    assert "PyAV" in missing.stderr and "Traceback" not in missing.stderr, missing.stderr


def test_captured_stderr_keeps_all_but_the_decoder_lines(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    from voxrelay.edge.capture.decoders import quiet_stderr

    with quiet_stderr():
        os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length (864) too large\n")
        os.write(2, b"another library's warning\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "another library's warning\nafter\n"
