"""Interim results: over a real gRPC Stream on loopback with tiny.en and real speech (marked, before
their segment's final and never after it, the final unchanged, none unless asked), the edge's JSON
output of them, and how the sinks show them (a terminal line rewritten in place; never in text files,
SRT or WebVTT)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import ROOT, ServerThread, load_pcm16
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.sinks import CLEAR_LINE, JsonSink, SubtitleSink, TextSink, wants_interim
from voxrelay.errors import InvalidArgument
from voxrelay.protos import pb, pb_grpc

SAMPLE = ROOT / "samples" / "voxrelay-sample.wav"
CHUNK = 1600  # 0.1 s of 16 kHz audio


def first_sentence() -> np.ndarray:
    """The sample's first spoken sentence (about 7 s) with the silence around it: one long segment."""
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is missing")
    return load_pcm16(SAMPLE)[: 16000 * 9]


def config(session_id: str, **extra: Any) -> pb.StreamRequest:
    return pb.StreamRequest(config=pb.SessionConfig(device_id="interim-test", session_id=session_id, **extra))


async def stream(address: str, audio: np.ndarray, session_id: str, paced: bool, **extra: Any) -> list[Any]:
    """One segment streamed (at real time when ``paced``); with interims asked for, its end is sent only
    once the first interim has come, so the test does not depend on how fast the machine is."""
    first_interim = asyncio.Event()
    asked = bool(extra.get("interim_results"))

    async def requests() -> Any:
        yield config(session_id, **extra)
        yield pb.StreamRequest(start=pb.SegmentStart(segment_id="seg-0", sequence=0))
        for i in range(0, audio.size, CHUNK):
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=audio[i : i + CHUNK].tobytes()))
            if paced:
                await asyncio.sleep(CHUNK / 16000)
        if asked:
            await asyncio.wait_for(first_interim.wait(), 120)
        yield pb.StreamRequest(end=pb.SegmentEnd(segment_id="seg-0"))

    received = []
    async with grpc.aio.insecure_channel(address) as channel:
        async for response in pb_grpc.RecognizerStub(channel).Stream(requests(), timeout=300):
            kind = response.WhichOneof("message")
            received.append((kind, getattr(response, kind)))
            if kind == "interim":
                first_interim.set()
    return received


@pytest.mark.slow
def test_interim_results_come_marked_before_the_final_which_is_unchanged(server: ServerThread) -> None:
    audio = first_sentence()
    with_interim = asyncio.run(stream(server.address, audio, "with-interim", paced=True, interim_results=True))
    kinds = [kind for kind, _ in with_interim]
    assert kinds[0] == "accepted" and kinds.count("result") == 1 and kinds[-1] == "result"
    interims = [message for kind, message in with_interim if kind == "interim"]
    assert interims, kinds
    # Every interim precedes the segment's ack and final result: none after its end was received.
    assert max(i for i, kind in enumerate(kinds) if kind == "interim") < kinds.index("ack")
    for message in interims:
        assert message.interim and message.segment_id == "seg-0" and message.text.strip()
        assert 0 < message.timings.audio_seconds <= audio.size / 16000
        assert message.end_seconds == pytest.approx(message.timings.audio_seconds)
        assert not message.phrases and not message.words
    assert len({m.text for m in interims}) == len(interims)  # only changed text goes out
    final = with_interim[-1][1]
    assert not final.interim and final.text.strip()

    # The same audio from an old-style client (no interim fields): no interims, the same final text.
    without = asyncio.run(stream(server.address, audio, "without-interim", paced=False))
    assert [kind for kind, _ in without] == ["accepted", "ack", "result"]
    assert without[-1][1].text == final.text and not without[-1][1].interim

    sent = server.call(_interim_count(server, "sent"))
    assert sent >= len(interims)


async def _interim_count(server: ServerThread, outcome: str) -> float:
    registry = server.server.core.metrics.registry
    value = registry.get_sample_value(
        "voxrelay_asr_interim_total", {"model": "tiny.en", "backend": "faster-whisper", "outcome": outcome}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"interim_interval_seconds": 1.0}, "is set but interim_results is not"),
        ({"interim_results": True, "interim_interval_seconds": 0.1}, "out of range"),
        ({"interim_results": True, "interim_interval_seconds": float("nan")}, "out of range"),
    ],
)
def test_interim_settings_are_checked(server: ServerThread, extra: dict[str, Any], named: str) -> None:
    with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError) as info:
        list(pb_grpc.RecognizerStub(channel).Stream(iter([config("bad-interim", **extra)]), timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.interim_interval_seconds" in info.value.details() and named in info.value.details()


def voxrelay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args], capture_output=True, text=True, timeout=600, cwd=ROOT
    )


@pytest.mark.slow
def test_json_interim_lines_come_before_their_final(server: ServerThread) -> None:
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is missing")
    run = voxrelay(
        "transcribe", str(SAMPLE), "--server", server.address, "--format", "json", "--interim", "--pace", "1"
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    finals = [line for line in lines if line["final"]]
    interims = [line for line in lines if not line["final"]]
    assert finals and interims
    done: set[str] = set()
    for line in lines:
        assert line["segment_id"] not in done, "an interim result came after its segment's final"
        if line["final"]:
            done.add(line["segment_id"])
        else:
            assert line["text"] and set(line) == {
                "file", "segment_id", "sequence", "text", "start", "end", "audio_seconds", "final"
            }  # fmt: skip
    # Without --interim: finals only, without the "final" key, and the same texts.
    plain = voxrelay("transcribe", str(SAMPLE), "--server", server.address, "--format", "json")
    assert plain.returncode == 0, plain.stderr
    plain_lines = [json.loads(line) for line in plain.stdout.splitlines()]
    assert all("final" not in line for line in plain_lines)
    assert [line["text"] for line in plain_lines] == [line["text"] for line in finals]


def test_interim_is_refused_for_subtitles() -> None:
    run = voxrelay("transcribe", str(SAMPLE), "--format", "srt", "--interim")
    assert run.returncode == 2 and "--interim: srt output holds final results only" in run.stderr
    assert "Traceback" not in run.stderr


def result(text: str, final: bool, end: float = 2.0) -> SegmentResult:
    return SegmentResult(segment_id="d/s/0", sequence=0, text=text, start=1.0, end=end, final=final)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_line_is_rewritten_until_the_final_replaces_it() -> None:
    out = Terminal()
    sink = TextSink(out, live=True)
    sink.begin("mic")
    sink.write(result("hello", False, 2.0))
    sink.write(result("hello and", False, 3.0))
    sink.write(result("Hello and welcome.", True, 3.5))
    sink.write(result("next", False, 5.0))
    sink.end()
    assert out.getvalue() == (
        f"{CLEAR_LINE}[00:00:01.000 --> 00:00:02.000] hello"
        f"{CLEAR_LINE}[00:00:01.000 --> 00:00:03.000] hello and"
        f"{CLEAR_LINE}[00:00:01.000 --> 00:00:03.500] Hello and welcome.\n"
        f"{CLEAR_LINE}[00:00:01.000 --> 00:00:05.000] next"
        f"{CLEAR_LINE}"
    )


def test_a_long_interim_line_keeps_its_end_within_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    out = Terminal()
    TextSink(out, live=True).write(result("word " * 40 + "last", False))
    line = out.getvalue().removeprefix(CLEAR_LINE)
    assert len(line) == 49 and line.endswith("word last") and "…" in line


def test_files_and_subtitles_never_hold_interims() -> None:
    for sink in (TextSink(io.StringIO()), SubtitleSink(io.StringIO(), vtt=True), JsonSink(io.StringIO())):
        sink.begin("f.wav")
        sink.write(result("partial", False))
        sink.write(result("Partial text.", True))
        sink.end()
        assert "partial" not in sink.out.getvalue()  # type: ignore[attr-defined]
        assert "Partial text." in sink.out.getvalue()  # type: ignore[attr-defined]


def test_when_interims_are_shown() -> None:
    tty, pipe = Terminal(), io.StringIO()
    assert wants_interim("text", None, tty, live=True)
    assert not wants_interim("text", False, tty, live=True)
    assert not wants_interim("text", None, tty, live=False)  # an unpaced file
    assert not wants_interim("text", True, pipe, live=True)  # a pipe or file: finals only
    assert not wants_interim("text", True, None, live=True)  # --output-dir
    assert wants_interim("json", True, pipe, live=False) and wants_interim("json", True, None, live=False)
    assert not wants_interim("json", None, tty, live=True)
    assert not wants_interim("srt", None, tty, live=True)
    with pytest.raises(InvalidArgument, match="vtt output holds final results only"):
        wants_interim("vtt", True, tty, live=True)


def test_json_without_interim_is_as_before() -> None:
    final = result("Hello.", True)
    assert "final" not in final.to_json()
    assert SegmentResult(**final.to_json()).final  # a result read back from the spool is final


def test_interim_decodes_are_greedy_in_a_short_window() -> None:
    from voxrelay.cloud.backends.base import DecodeOptions
    from voxrelay.cloud.backends.quick import window_frames

    quick = DecodeOptions(beam_size=5, word_timestamps=True, hotwords="voxrelay").for_interim()
    assert (quick.beam_size, quick.temperature, quick.word_timestamps) == (1, 0.0, False)
    assert quick.without_timestamps and quick.interim and quick.hotwords == "voxrelay"
    # At least 5 s of silence after the audio, 10 s at the least, Whisper's 30 s at the most.
    assert [window_frames(n) for n in (100, 500, 501, 1600, 2600, 3000)] == [1000, 1000, 1500, 2500, 3000, 3000]


@pytest.mark.slow
def test_paced_transcribe_on_a_terminal_rewrites_the_line(server: ServerThread) -> None:
    import os
    import pty

    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} is missing")
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "voxrelay", "transcribe", str(SAMPLE), "--server", server.address, "--pace", "1"]
    with subprocess.Popen(command, stdout=follower, stderr=subprocess.PIPE, cwd=ROOT) as proc:
        os.close(follower)
        shown = bytearray()
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other side closed: the command has ended
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(120) == 0
    os.close(leader)
    text = shown.decode().replace("\r\n", "\n")
    assert CLEAR_LINE in text  # interim lines were shown and rewritten
    finals = [line.removeprefix(CLEAR_LINE) for line in text.split("\n") if line.strip()]
    # Once the final text is in, the line is clean: each final line stands alone after the clearing.
    plain = voxrelay("transcribe", str(SAMPLE), "--server", server.address)
    assert [line.rsplit(CLEAR_LINE, 1)[-1] for line in finals] == plain.stdout.splitlines()
