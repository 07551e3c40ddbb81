"""`voxrelay transcribe` end to end: the CLI against a real server, the dev set's English speech."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import srt
import webvtt

from tests.conftest import ROOT, SPEECH, ServerThread
from voxrelay.quality.wer import WordErrors, word_errors

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "samples" / "voxrelay-sample.wav"
SAMPLE_TEXT = (
    "Hello, and welcome. This is a short test of speech recognition. The quick brown fox jumps over the lazy dog."
)


def voxrelay(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_pipeline_wer_matches_faster_whisper_direct(server: ServerThread, english_utterances: list) -> None:
    from faster_whisper import WhisperModel

    from voxrelay.models.catalogue import resolve_model

    paths = [str(SPEECH / row["audio"]) for row in english_utterances]
    run = voxrelay("transcribe", "--server", server.address, "--format", "json", "--beam-size", "5", *paths)
    assert run.returncode == 0, run.stderr
    texts: dict[str, list[str]] = defaultdict(list)
    for obj in json_lines(run.stdout):
        assert {
            "file",
            "segment_id",
            "start",
            "end",
            "text",
            "avg_logprob",
            "no_speech_prob",
            "compression_ratio",
            "language",
            "latency_seconds",
            "close_to_result_seconds",
        } <= obj.keys()
        assert obj["start"] <= obj["end"]
        # Counted from the end of speech, which comes no later than the segment's close.
        assert obj["latency_seconds"] >= obj["close_to_result_seconds"] > 0
        texts[obj["file"]].append(obj["text"])

    model = WhisperModel(resolve_model("tiny.en").path, device="cpu", compute_type="int8", cpu_threads=2)
    pipeline, direct = WordErrors(0, 0, 0, 0), WordErrors(0, 0, 0, 0)
    for row, path in zip(english_utterances, paths, strict=True):
        segments, _ = model.transcribe(path, beam_size=5)
        direct_text = " ".join(s.text for s in segments)
        pipeline = pipeline + word_errors(row["text"], " ".join(texts[path]))
        direct = direct + word_errors(row["text"], direct_text)
    print(
        f"\nWER over {len(paths)} English utterances: voxrelay transcribe {pipeline.wer:.2%}, "
        f"faster-whisper direct {direct.wer:.2%}"
    )
    # Segments cut at pauses inside sentences cost a few words (README: The segmenter and its defaults):
    # 10.0 % against 9.1 % once, 12.4 % with another set of package versions that moved segment bounds
    # by a frame or two (the same 15 utterances; faster-whisper direct unchanged). Lost or garbled
    # segments cost far more (one utterance is about 5 points).
    assert pipeline.wer <= direct.wer + 0.04


@pytest.fixture(scope="module")
def beam_server(engines: dict[str, Any]) -> Iterator[ServerThread]:
    """The recognizer with ``serve --temperature 0``: beam search only, no sampled fallback."""
    from voxrelay.cloud.settings import ServerSettings

    running = ServerThread(ServerSettings(port=0, temperature=(0.0,), max_segment_seconds=40.0), engines)
    yield running
    running.stop(close_engines=False)


def test_the_same_files_twice_give_identical_text(beam_server: ServerThread, speech_dir: Path) -> None:
    server = beam_server
    # Several segments each, split at pauses inside sentences: where Whisper is least sure of itself.
    names = ("jfk_inaugural_1961.wav", "librispeech_1272-128104-0004_8k.wav")
    paths = [str(speech_dir / "asr" / name) for name in names]
    runs = [voxrelay("transcribe", "--server", server.address, "--format", "json", *paths) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    first, second = ([(o["file"], o["start"], o["text"]) for o in json_lines(run.stdout)] for run in runs)
    assert len(first) > len(paths)
    assert first == second


def test_exit_status_and_errors_name_the_file(server: ServerThread, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n")
    run = voxrelay(
        "transcribe",
        "--server",
        server.address,
        "--format",
        "json",
        str(corrupt),
        str(SAMPLE),
        str(empty),
        str(text),
        str(tmp_path / "missing.wav"),
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("voxrelay transcribe:")]
    assert len(lines) == 4, run.stderr
    for path in (corrupt, empty, text, tmp_path / "missing.wav"):
        assert sum(str(path) in line for line in lines) == 1, run.stderr
    objs = json_lines(run.stdout)
    assert {o["file"] for o in objs} == {str(SAMPLE)}
    assert "quick brown fox" in " ".join(o["text"] for o in objs).lower()


def test_usage_errors_exit_2(server: ServerThread) -> None:
    assert voxrelay("transcribe").returncode == 2
    assert voxrelay("transcribe", "--format", "docx", str(SAMPLE)).returncode == 2
    bad = voxrelay("transcribe", "--server", "nonsense", str(SAMPLE))
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr and "Traceback" not in bad.stderr


def test_unreachable_server_is_one_clear_line() -> None:
    run = voxrelay("transcribe", "--server", "127.0.0.1:9", str(SAMPLE), timeout=120)
    assert run.returncode == 1
    assert "127.0.0.1:9" in run.stderr and "Traceback" not in run.stderr


def test_unusual_wav_layouts_are_converted(server: ServerThread, tmp_path: Path) -> None:
    audio, rate = soundfile.read(str(SAMPLE), dtype="float32")
    import soxr

    stereo44 = tmp_path / "stereo44k_float.wav"
    x = soxr.resample(audio, rate, 44100)
    soundfile.write(str(stereo44), np.stack([x, x], axis=1), 44100, subtype="FLOAT")
    pcm24 = tmp_path / "mono8k_24bit.wav"
    soundfile.write(str(pcm24), soxr.resample(audio, rate, 8000), 8000, subtype="PCM_24")
    u8 = tmp_path / "u8.wav"
    soundfile.write(str(u8), audio, rate, subtype="PCM_U8")
    run = voxrelay("transcribe", "--server", server.address, "--format", "json", str(stereo44), str(pcm24), str(u8))
    assert run.returncode == 0, run.stderr
    by_file: dict[str, str] = defaultdict(str)
    for obj in json_lines(run.stdout):
        by_file[obj["file"]] += " " + obj["text"]
    for path in (stereo44, pcm24, u8):
        errors = word_errors(SAMPLE_TEXT, by_file[str(path)])
        assert errors.wer <= 0.35, (path, by_file[str(path)])


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_subtitle_and_text_formats(server: ServerThread, tmp_path: Path, fmt: str) -> None:
    run = voxrelay(
        "transcribe", "--server", server.address, "--format", fmt, "--output-dir", str(tmp_path), str(SAMPLE)
    )
    assert run.returncode == 0, run.stderr
    suffix = {"text": ".txt", "srt": ".srt", "vtt": ".vtt"}[fmt]
    out = (tmp_path / f"voxrelay-sample{suffix}").read_text()
    assert [p.name for p in tmp_path.iterdir()] == [f"voxrelay-sample{suffix}"]  # no temporary left behind
    assert "quick brown fox" in out.lower()
    if fmt == "srt":
        blocks = out.strip().split("\n\n")
        assert [b.splitlines()[0] for b in blocks] == [str(i + 1) for i in range(len(blocks))]
        assert all(" --> " in b.splitlines()[1] and "," in b.splitlines()[1] for b in blocks)
        cues = list(srt.parse(out))
        assert all(c.end > c.start for c in cues)
        assert all(b.start >= a.end for a, b in itertools.pairwise(cues))
    elif fmt == "vtt":
        assert out.startswith("WEBVTT\n\n") and "00:00:" in out
        captions = list(webvtt.from_buffer(io.StringIO(out)))
        assert captions and all(c.end > c.start for c in captions)
        assert all(b.start >= a.end for a, b in itertools.pairwise(captions))
    else:
        assert all(line.startswith("[00:00:") for line in out.splitlines())


def test_embedded_recognizer_runs_the_sample_with_no_server() -> None:
    run = voxrelay("transcribe", str(SAMPLE), timeout=300)
    assert run.returncode == 0, run.stderr
    assert "welcome" in run.stdout.lower() and "lazy dog" in run.stdout.lower()


def test_importing_the_edge_side_loads_no_heavy_package() -> None:
    modules = [
        "voxrelay.cli",
        "voxrelay.edge.agent",
        "voxrelay.edge.transcribe",
        "voxrelay.edge.link.uplink",
        "voxrelay.edge.capture.mic",
        "voxrelay.edge.capture.files",
        "voxrelay.edge.vad.detectors",
        "voxrelay.edge.sinks",
        "voxrelay.batch.run",
        "voxrelay.edge.link.spool",
        "voxrelay.edge.metrics",
        "voxrelay.edge.vad.speech",
        "voxrelay.edge.drift",
    ]
    heavy = ("torch", "ctranslate2", "faster_whisper", "whisper", "onnxruntime", "scipy", "voxrelay.cloud.server")
    code = (
        f"import sys, importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
        "from voxrelay.cli import build_parser; build_parser()\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"the edge imported {out.stdout.strip()}"


def test_same_stem_outputs_are_refused_before_any_work(tmp_path: Path) -> None:
    wav = tmp_path / "talk.wav"
    flac = tmp_path / "talk.flac"
    soundfile.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    soundfile.write(flac, np.zeros(16000, dtype=np.float32), 16000)
    out = tmp_path / "out"
    run = voxrelay("transcribe", "--output-dir", str(out), str(wav), str(flac))
    assert run.returncode == 2, run.stderr
    assert str(wav) in run.stderr and str(flac) in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_several_subtitle_inputs_on_stdout_are_refused(tmp_path: Path, fmt: str) -> None:
    paths = []
    for name in ("a.wav", "b.wav"):
        soundfile.write(tmp_path / name, np.zeros(16000, dtype=np.float32), 16000)
        paths.append(str(tmp_path / name))
    run = voxrelay("transcribe", "--format", fmt, *paths)
    assert run.returncode == 2, run.stderr
    assert "--output-dir" in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""


def test_a_truncated_wav_is_warned_about(tmp_path: Path) -> None:
    cut = tmp_path / "t.wav"
    cut.write_bytes(SAMPLE.read_bytes()[:290000])
    run = voxrelay("transcribe", str(cut))
    assert "truncated" in run.stderr and str(cut) in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    whole = voxrelay("transcribe", str(SAMPLE))
    assert "truncated" not in whole.stderr, whole.stderr


def test_the_embedded_recognizer_runs_with_the_command_lines_compute_type_and_threads() -> None:
    import asyncio

    import grpc

    from voxrelay.cli import build_parser
    from voxrelay.cli_recognizer import embedded_options
    from voxrelay.embedded import embedded_recognizer
    from voxrelay.protos import pb, pb_grpc

    args = build_parser().parse_args(
        ["transcribe", str(SAMPLE), "--compute-type", "float32", "--threads", "1", "--temperature", "0"]
    )

    async def info() -> pb.ServerInfo:
        async with (
            embedded_recognizer(**embedded_options(args)) as address,
            grpc.aio.insecure_channel(address) as channel,
        ):
            return await pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=30)

    got = asyncio.run(info())
    assert got.models[0].compute == "cpu/float32" and got.inference.cpu_threads == 1


def test_translate_turns_german_speech_into_english() -> None:
    german = SPEECH / "multilingual" / "picovoice_cheetah_test_de.wav"
    if not german.is_file():
        pytest.skip("the development speech set is not here")
    said = voxrelay("transcribe", str(german), "--model", "base", "--language", "de")
    translated = voxrelay("transcribe", str(german), "--model", "base", "--language", "de", "--task", "translate")
    assert said.returncode == translated.returncode == 0, translated.stderr
    assert "Werbung" in said.stdout  # "Die Werbung vermittelt einen falschen Eindruck."
    words = set(translated.stdout.lower().replace(".", " ").split())
    assert "werbung" not in words and words & {"the", "a", "an", "false", "impression"}
