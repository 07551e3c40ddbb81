"""`voxrelay batch` end to end against a real server, on real speech converted into unusual layouts."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import soxr

from tests.conftest import ROOT, ServerThread
from voxrelay.batch.inputs import find_inputs
from voxrelay.edge.agent import _windowed
from voxrelay.edge.events import SegmentClosed, SegmentOpened, VadSummary
from voxrelay.quality.wer import word_errors

# (source in the dev set, file to write under the input folder, sample rate, channels, subtype)
LAYOUTS = [
    ("asr/pocketsphinx_goforward.wav", "goforward_8k.wav", 8000, 1, "PCM_16"),
    ("asr/ljspeech_LJ002-0020.wav", "lj_44k_stereo.wav", 44100, 2, "FLOAT"),
    ("asr/pocketsphinx_cards_005.wav", "sub/cards_48k_stereo.wav", 48000, 2, "PCM_24"),
    ("asr/picovoice_cheetah_test_en.wav", "sub/deeper/cheetah_22k.wav", 22050, 1, "PCM_16"),
]
SEGMENT_KEYS = {"file", "segment_id", "sequence", "text", "start", "end", "avg_logprob", "no_speech_prob"}


def voxrelay(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def convert(source: Path, target: Path, rate: int, channels: int, subtype: str) -> None:
    audio, source_rate = soundfile.read(str(source), dtype="float32")
    audio = soxr.resample(audio, source_rate, rate) if rate != source_rate else audio
    if channels == 2:  # the second channel a little quieter, so the downmix really mixes
        audio = np.stack([audio, 0.7 * audio], axis=1)
    target.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(target), audio, rate, subtype=subtype)


@pytest.fixture
def inputs(tmp_path: Path, speech_dir: Path, manifest: list[dict[str, Any]]) -> tuple[Path, dict[str, str]]:
    """A folder of valid WAVs in several layouts (one in a subfolder), a corrupt one, an empty one."""
    folder = tmp_path / "in"
    references = {row["audio"]: row["text"] for row in manifest}
    expected = {}
    for source, name, rate, channels, subtype in LAYOUTS:
        convert(speech_dir / source, folder / name, rate, channels, subtype)
        expected[name] = references[source]
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00junk")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("not audio, and not named .wav: not an input\n")
    (folder / "._goforward_8k.wav").write_bytes(b"\x00\x05\x16\x07 macOS metadata")
    return folder, expected


def summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_folder_with_bad_files_gives_outputs_statuses_and_exit_status(
    server: ServerThread, inputs: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    folder, expected = inputs
    out = tmp_path / "out"
    run = voxrelay("batch", "--server", server.address, "--format", "json", "--jobs", "3", str(folder), "-o", str(out))
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "corrupt.wav" in line or "empty.wav" in line]
    assert len(errors) == 2 and all(line.startswith("voxrelay batch: ") for line in errors), run.stderr
    assert "empty" in next(line for line in errors if "empty.wav" in line)

    summary = summary_of(out)
    status = {Path(f["input"]).relative_to(folder).as_posix(): f for f in summary["files"]}
    assert set(status) == {*expected, "corrupt.wav", "empty.wav"}
    assert status["corrupt.wav"]["status"] == status["empty.wav"]["status"] == "failed"
    assert status["corrupt.wav"]["error"] and status["corrupt.wav"]["output"] is None
    t = summary["totals"]
    assert (t["files"], t["ok"], t["failed"], t["skipped"], t["pending"]) == (6, 4, 2, 0, 0)
    assert summary["complete"] and not summary["interrupted"]
    assert t["audio_seconds"] > 0 and t["x_real_time"] > 0

    for name, reference in expected.items():
        target = out / Path(name).with_suffix(".json")
        assert status[name] == {**status[name], "status": "ok", "output": str(target), "error": None}
        doc = json.loads(target.read_text())
        assert list(doc) == ["file", "duration", "text", "segments", "stats"]
        assert doc["file"] == str(folder / name)
        assert doc["duration"] == pytest.approx(soundfile.info(str(folder / name)).duration, abs=0.01)
        assert doc["segments"] and all(s.keys() >= SEGMENT_KEYS for s in doc["segments"])
        assert doc["text"] == " ".join(s["text"] for s in doc["segments"] if s["text"])
        assert 0 < doc["stats"]["speech_ratio"] <= 1 and doc["stats"]["segments"] == len(doc["segments"])
        assert word_errors(reference, doc["text"]).wer <= 0.35, (name, doc["text"])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        [Path(n).with_suffix(".json").as_posix() for n in expected] + ["summary.json"]
    )

    # A rerun skips what is done and fails again on what still fails.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name != "summary.json"}
    again = voxrelay("batch", "--server", server.address, "--format", "json", str(folder), "-o", str(out))
    assert again.returncode == 1, again.stderr
    statuses = sorted(f["status"] for f in summary_of(out)["files"])
    assert statuses == ["failed"] * 2 + ["skipped"] * 4
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert "already done" in again.stderr

    # Quiet: the failures still, the informational lines not.
    quiet = voxrelay("-q", "batch", "--server", server.address, "--format", "json", str(folder), "-o", str(out))
    assert quiet.returncode == 1, quiet.stderr
    assert "already done" not in quiet.stderr
    assert len([line for line in quiet.stderr.splitlines() if line.startswith("voxrelay batch: ")]) == 2, quiet.stderr


def test_overwrite_redoes_and_text_formats_go_through_the_sinks(
    server: ServerThread, inputs: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    folder, _ = inputs
    wav = folder / "goforward_8k.wav"
    out = tmp_path / "out"
    first = voxrelay("batch", "--server", server.address, "--format", "vtt", str(wav), "-o", str(out))
    assert first.returncode == 0, first.stderr
    vtt = (out / "goforward_8k.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and " --> " in vtt and "forward" in vtt.lower()
    (out / "goforward_8k.vtt").write_text("stale")
    redo = voxrelay("batch", "--server", server.address, "--format", "vtt", "--overwrite", str(wav), "-o", str(out))
    assert redo.returncode == 0, redo.stderr
    assert (out / "goforward_8k.vtt").read_text() == vtt
    assert [f["status"] for f in summary_of(out)["files"]] == ["ok"]
    assert not leftovers(out)


def test_ctrl_c_keeps_finished_outputs_and_a_rerun_does_the_rest(
    server: ServerThread, speech_dir: Path, tmp_path: Path
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    source = speech_dir / "asr" / "picovoice_cheetah_test_en.wav"
    names = [f"take{i}.wav" for i in range(6)]
    for name in names:
        (folder / name).write_bytes(source.read_bytes())
    cmd = [sys.executable, "-m", "voxrelay", "batch", "--server", server.address, "--format", "json"]
    cmd += ["--jobs", "1", str(folder), "-o", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # one line per finished file when stderr is not a terminal
        lines.append(line)
        if "[1/6]" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(lines) + rest
    assert "Traceback" not in rest and "interrupted" in rest

    summary = summary_of(out)
    assert summary["interrupted"] and not summary["complete"]
    done = sorted(p.name for p in out.glob("*.json") if p.name != "summary.json")
    assert 1 <= len(done) < len(names), done
    assert summary["totals"]["ok"] == len(done) and summary["totals"]["pending"] == len(names) - len(done)
    for name in done:
        assert "platforms" in json.loads((out / name).read_text())["text"].lower()
    assert not leftovers(out)
    mtimes = {name: (out / name).stat().st_mtime_ns for name in done}

    rerun = voxrelay(*cmd[3:])
    assert rerun.returncode == 0, rerun.stderr
    summary = summary_of(out)
    assert summary["complete"] and summary["totals"]["skipped"] == len(done)
    assert summary["totals"]["ok"] == len(names) - len(done)
    assert sorted(p.name for p in out.glob("*.json") if p.name != "summary.json") == [
        n.replace(".wav", ".json") for n in names
    ]
    assert {name: (out / name).stat().st_mtime_ns for name in done} == mtimes
    assert not leftovers(out)


def test_usage_errors_are_one_line() -> None:
    assert voxrelay("batch", "x.wav").returncode == 2  # no --output-dir
    bad_jobs = voxrelay("batch", "--jobs", "0", "x.wav", "-o", "/tmp")
    assert bad_jobs.returncode == 2 and "--jobs" in bad_jobs.stderr and "Traceback" not in bad_jobs.stderr


def test_inputs_files_folders_and_globs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a/x.wav", "a/sub/y.WAV", "a/.hidden/z.wav", "a/._x.wav", "a/notes.txt", "b/x.wav", "c.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    # a/sub/y.WAV is named twice (in a, then directly): it is transcribed once
    items = find_inputs(["a", "c.wav", "a/sub/y.WAV", "b/*.wav", "nothing/*.wav", "missing.wav"], ".txt")
    got = [(i.label, i.relative.as_posix(), i.problem is not None) for i in items]
    assert got == [
        (str(Path("a/x.wav")), "x", False),
        (str(Path("a/sub/y.WAV")), "sub/y", False),
        ("c.wav", "c", False),
        # b/x.wav would go to x.txt like a/x.wav: refused, not overwritten
        (str(Path("b/x.wav")), "x", True),
        ("nothing/*.wav", ".", True),
        ("missing.wav", "missing", False),  # tried, so that opening it names the problem
    ]
    assert "overwrite" in (items[3].problem or "") and "matches no file" in (items[4].problem or "")
    assert items[1].output(Path("out"), ".json") == Path("out/sub/y.json")


def test_the_window_holds_segments_back_until_results_free_it() -> None:
    stats = VadSummary("webrtc", 1.0, 1.0, -20.0, 0.0, False, 0.3, 0.3)

    async def events() -> Any:
        for i in range(3):
            yield SegmentOpened(i, float(i))
            yield SegmentClosed(i, i + 0.5, i + 0.5, stats)

    async def scenario() -> list[int]:
        window = asyncio.Semaphore(2)
        out = _windowed(events(), window)
        opened = []
        for _ in range(4):
            event = await out.__anext__()
            if isinstance(event, SegmentOpened):
                opened.append(event.sequence)
        pending = asyncio.ensure_future(out.__anext__())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not pending.done(), "a third segment went out with two awaiting results"
        window.release()
        assert isinstance(await pending, SegmentOpened)
        opened.append(2)
        await out.aclose()  # type: ignore[attr-defined]
        return opened

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_truncated_wav_is_recorded_as_truncated(tmp_path: Path) -> None:
    sample = (ROOT / "samples" / "voxrelay-sample.wav").read_bytes()
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "whole.wav").write_bytes(sample)
    (folder / "cut.wav").write_bytes(sample[:290000])
    out = tmp_path / "out"
    run = voxrelay("batch", str(folder), "--output-dir", str(out))
    assert run.returncode == 0, run.stderr
    records = {Path(r["input"]).name: r for r in json.loads((out / "summary.json").read_text())["files"]}
    assert records["cut.wav"]["truncated"] is True and records["cut.wav"]["missing_seconds"] > 1
    assert "truncated" not in records["whole.wav"]


def test_flac_and_ogg_in_a_folder_are_transcribed(tmp_path: Path) -> None:
    data, rate = soundfile.read(ROOT / "samples" / "voxrelay-sample.wav", dtype="int16")
    folder = tmp_path / "in"
    folder.mkdir()
    soundfile.write(folder / "a.flac", data, rate)
    soundfile.write(folder / "b.ogg", data, rate, format="OGG", subtype="VORBIS")
    out = tmp_path / "out"
    run = voxrelay("batch", str(folder), "--output-dir", str(out))
    assert run.returncode == 0, run.stderr
    for name in ("a.txt", "b.txt"):
        assert "quick brown fox" in (out / name).read_text().lower()
