"""`voxrelay batch` takes every format the reader decodes (MP3 and M4A too) and counts, in the summary,
the files of its input folders it leaves out for their extension."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, ServerThread
from tests.test_compressed_inputs import encode
from voxrelay.batch.inputs import scan_inputs
from voxrelay.edge.capture.decoders import pyav_available


def voxrelay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args], capture_output=True, text=True, timeout=600, cwd=ROOT
    )


def test_a_folder_of_mp3_m4a_and_flac_is_transcribed_and_other_files_are_counted(
    server: ServerThread, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    encode(folder / "a.mp3")
    encode(folder / "sub" / "b.m4a", "-ac", "2", "-ar", "44100")
    encode(folder / "c.flac")
    (folder / "notes.txt").write_text("not audio\n")
    (folder / "sub" / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not audio")
    (folder / "sub" / "README").write_text("no extension\n")
    (folder / "._a.mp3").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # left out, not counted
    out = tmp_path / "out"
    run = voxrelay("batch", "--server", server.address, "--vad", "webrtc", str(folder), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "mpg123" not in run.stderr and "[src/" not in run.stderr, run.stderr
    for name in ("a.txt", "sub/b.txt", "c.txt"):
        text = (out / name).read_text().lower()
        assert "welcome" in text and "quick brown fox" in text, (name, text)
    summary = json.loads((out / "summary.json").read_text())
    assert [f["status"] for f in summary["files"]] == ["ok"] * 3
    assert summary["skipped_by_extension"] == {"count": 3, "extensions": {"(none)": 1, ".jpg": 1, ".txt": 1}}
    assert "3 file(s) in the inputs left out by extension" in run.stderr, run.stderr


def test_files_left_out_are_counted_once_and_globs_leave_them_out_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a/x.wav", "a/y.MP3", "a/z.opus", "a/sub/notes.txt", "a/sub/t.m4a", "b/list.csv", "b/take.flac"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    scan = scan_inputs(["a", "a/sub", "b/*", "c.txt"], ".txt")
    found = sorted(item.path.as_posix() for item in scan.items if item.problem is None)
    # A file given directly is tried whatever its name (opening it says what is wrong).
    expected = ["a/x.wav", "a/y.MP3", "a/z.opus", "b/take.flac", "c.txt"]
    if pyav_available():
        expected.append("a/sub/t.m4a")
    assert found == sorted(expected)
    skipped = {".txt": 1, ".csv": 1, **({} if pyav_available() else {".m4a": 1})}
    assert dict(scan.skipped_by_extension) == skipped

    only_text = scan_inputs(["a/sub/*.txt"], ".txt").items
    assert only_text[0].problem == (
        "a/sub/*.txt: the pattern matches no audio file (1 other file(s) left out by extension: .txt)"
    )


@pytest.mark.parametrize("command", ["batch", "transcribe"])
def test_help_lists_the_formats_read(command: str) -> None:
    run = voxrelay(command, "--help")
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    for name in ("WAV", "FLAC", "Ogg", "MP3", "M4A"):
        assert name in text, (name, text)
