"""The OpenAI-compatible HTTP API and the Wyoming server, against real clients: the official `openai`
package, curl -F, and the `wyoming` package's own async client, over a real recognizer (tiny.en)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ServerThread

TOKEN = "front-test-token-0123456789abcdef"
JFK = "asr/jfk_inaugural_1961.wav"
MAX_UPLOAD = 1 << 20


@pytest.fixture(scope="module")
def fronts(engines: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    from voxrelay.cloud.settings import ServerSettings

    tokens = tmp_path_factory.mktemp("fronts") / "tokens.txt"
    tokens.write_text(f"{TOKEN} front-tests\n")
    settings = ServerSettings(
        port=0,
        http_port=0,
        wyoming_port=0,
        http_max_upload_bytes=MAX_UPLOAD,
        auth_token_file=str(tokens),
        wyoming_trusted=True,
        max_segment_seconds=40.0,
    )
    running = ServerThread(settings, engines)
    yield running
    for front in running.server.fronts:
        running.call(front.stop(1.0))
    running.stop(close_engines=False)


def http_url(server: ServerThread) -> str:
    return f"http://127.0.0.1:{server.server.front('http').port}"


def client(server: ServerThread, key: str = TOKEN) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=http_url(server) + "/v1", api_key=key, max_retries=0, timeout=120)


def sample(server: ServerThread, name: str, front: str, code: str) -> float:
    value = server.server.core.metrics.registry.get_sample_value(
        "voxrelay_asr_requests_total", {"front": front, "code": code}
    )
    return value or 0.0


@pytest.mark.slow
def test_openai_client_transcribes_in_every_response_format(fronts: ServerThread, speech_dir: Path) -> None:
    api = client(fronts)
    before = sample(fronts, "", "http", "OK")
    with open(speech_dir / JFK, "rb") as f:
        result = api.audio.transcriptions.create(model="whisper-1", file=f)
    assert "ask not what your country can do for you" in result.text.lower()

    with open(speech_dir / JFK, "rb") as f:
        verbose = api.audio.transcriptions.create(
            model="tiny.en",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
            temperature=0.0,
        )
    assert verbose.language == "en" and verbose.duration == pytest.approx(11.0, abs=0.1)
    assert verbose.segments and verbose.segments[0].avg_logprob < 0
    assert all(s.temperature == 0.0 for s in verbose.segments)  # asked for 0: no fallback sampled
    words = [w.word.lower().strip(",.") for w in verbose.words]
    assert "country" in words and all(w.end >= w.start for w in verbose.words)
    assert verbose.text == result.text

    with open(speech_dir / JFK, "rb") as f:
        srt = api.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:00,") and " --> " in srt and "country" in srt
    with open(speech_dir / JFK, "rb") as f:
        vtt = api.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT") and "00:00:0" in vtt
    with open(speech_dir / JFK, "rb") as f:
        text = api.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
    assert text.strip() == result.text
    # The same unary path as gRPC Recognize: counted under its front, with the model's own metrics.
    assert sample(fronts, "", "http", "OK") == before + 5
    assert [m.id for m in api.models.list().data] == ["tiny.en"]


def test_openai_client_errors_have_openai_shape(fronts: ServerThread, speech_dir: Path, tmp_path: Path) -> None:
    import openai

    with pytest.raises(openai.AuthenticationError) as refused:
        client(fronts, key="not-a-known-token-at-all").audio.transcriptions.create(
            model="whisper-1", file=("a.wav", b"RIFF")
        )
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"

    api = client(fronts)
    with pytest.raises(openai.BadRequestError) as not_audio:
        api.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"this is not audio at all " * 40))
    body = not_audio.value.body
    assert isinstance(body, dict) and body["param"] == "file" and body["type"] == "invalid_request_error"
    assert "notes.txt is not audio" in body["message"]

    with pytest.raises(openai.NotFoundError) as unknown, open(speech_dir / JFK, "rb") as f:
        api.audio.transcriptions.create(model="large-v9", file=f)
    assert unknown.value.code == "model_not_found" and "served: tiny.en" in unknown.value.message

    with pytest.raises(openai.BadRequestError) as english_only, open(speech_dir / JFK, "rb") as f:
        api.audio.translations.create(model="whisper-1", file=f)
    assert "English-only" in english_only.value.message

    big = tmp_path / "big.wav"
    import soundfile

    soundfile.write(big, np.zeros(40 * 16000, np.int16), 16000)  # 1.2 MiB, over the 1 MiB limit
    with pytest.raises(openai.APIStatusError) as too_large, open(big, "rb") as f:
        api.audio.transcriptions.create(model="whisper-1", file=f)
    assert too_large.value.status_code == 413 and too_large.value.body["param"] == "file"  # type: ignore[index]
    assert "over the limit of 1 MiB" in too_large.value.message
    # The server goes on, and counted every refusal.
    assert sample(fronts, "", "http", "INVALID_ARGUMENT") >= 2
    assert sample(fronts, "", "http", "RESOURCE_EXHAUSTED") >= 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_form_upload_and_errors(fronts: ServerThread, speech_dir: Path) -> None:
    url = http_url(fronts) + "/v1/audio/transcriptions"
    auth = ["-H", f"Authorization: Bearer {TOKEN}"]

    def curl(*form: str) -> tuple[int, str]:
        out = subprocess.run(
            ["curl", "-sS", "-w", "\n%{http_code}", *auth, url, *[a for f in form for a in ("-F", f)]],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        body, _, status = out.rpartition("\n")
        return int(status), body

    status, body = curl(
        f"file=@{speech_dir / 'asr/pocketsphinx_goforward.wav'}", "model=whisper-1", "response_format=text"
    )
    assert status == 200 and "forward" in body.lower()
    status, body = curl(f"file=@{speech_dir / JFK}", "response_format=docx")
    error = json.loads(body)["error"]
    assert status == 400 and error["param"] == "response_format" and "docx" in error["message"]
    status, body = curl(f"file=@{speech_dir / JFK}", "response_format=json", "timestamp_granularities[]=word")
    assert status == 400 and "verbose_json" in json.loads(body)["error"]["message"]
    status, body = curl(f"file=@{speech_dir / JFK}", "temperature=hot")
    assert status == 400 and json.loads(body)["error"]["param"] == "temperature"
    status, body = curl("model=whisper-1")
    assert status == 400 and json.loads(body)["error"]["param"] == "file"
    health = subprocess.run(
        ["curl", "-sS", http_url(fronts) + "/healthz"], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(health.stdout) == {"status": "SERVING"}


def _chunks(audio: np.ndarray, rate: int = 16000, size: int = 1024) -> list[Any]:
    from wyoming.audio import AudioChunk

    data = audio.astype("<i2").tobytes()
    return [AudioChunk(rate=rate, width=2, channels=1, audio=data[i : i + size]) for i in range(0, len(data), size)]


async def _wyoming_session(port: int, audio: np.ndarray) -> list[Any]:
    from wyoming.asr import Transcribe
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe

    events = []
    async with AsyncTcpClient("127.0.0.1", port) as wy:
        await wy.write_event(Describe().event())
        events.append(await wy.read_event())
        # Audio before audio-start: an error event, and the connection goes on.
        await wy.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0" * 160).event())
        events.append(await wy.read_event())
        await wy.write_event(AudioStart(rate=16000, width=4, channels=1).event())  # 32-bit: refused
        events.append(await wy.read_event())
        await wy.write_event(Transcribe(name="tiny.en", language="en").event())
        await wy.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for chunk in _chunks(audio):
            await wy.write_event(chunk.event())
        await wy.write_event(AudioStop().event())
        events.append(await asyncio.wait_for(wy.read_event(), 120))
    return events


@pytest.mark.slow
def test_wyoming_client_describe_transcribe_and_bad_order(fronts: ServerThread, speech_dir: Path) -> None:
    from wyoming.asr import Transcript
    from wyoming.error import Error
    from wyoming.info import Info

    from tests.conftest import load_pcm16

    audio = load_pcm16(speech_dir / "asr/picovoice_cheetah_test_en.wav")
    port = fronts.server.front("wyoming").port
    info, early, wide, final = asyncio.run(_wyoming_session(port, audio))
    described = Info.from_event(info)
    assert described.asr[0].name == "voxrelay" and described.asr[0].models[0].name == "tiny.en"
    assert described.asr[0].models[0].languages == ["en"]
    assert Error.is_type(early.type) and "before audio-start" in Error.from_event(early).text
    assert Error.is_type(wide.type) and "width" in Error.from_event(wide).text
    transcript = Transcript.from_event(final)
    assert "platforms 1 and 3" in transcript.text.lower() and transcript.language == "en"
    assert sample(fronts, "", "wyoming", "OK") >= 1


def test_wyoming_needs_trust_when_tokens_are_required(tmp_path: Path) -> None:
    from voxrelay.cloud.settings import ServerSettings
    from voxrelay.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="--wyoming-trusted"):
        ServerSettings(port=0, wyoming_port=10300, auth_token_file=str(tmp_path / "t"))
    with pytest.raises(InvalidArgument, match="collide"):
        ServerSettings(port=50051, http_port=50051)


def test_upload_decoding_of_compressed_audio(speech_dir: Path) -> None:
    """An Ogg/Opus upload decodes to the same 16 kHz mono audio length; garbage names the file."""
    import av

    from tests.conftest import load_pcm16
    from voxrelay.cloud.fronts.uploads import decode_upload
    from voxrelay.errors import AudioError, LimitExceeded

    pcm = load_pcm16(speech_dir / JFK)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16000
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for f in resampler.resample(frame):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    audio = decode_upload("file", buffer.getvalue(), "jfk.ogg", 60)
    assert audio.dtype == np.float32 and abs(audio.size - pcm.size) < 0.1 * 16000
    with pytest.raises(LimitExceeded, match="longer than the limit of 5 s"):
        decode_upload("file", buffer.getvalue(), "jfk.ogg", 5)
    with pytest.raises(AudioError, match=r"file: x\.bin is not audio"):
        decode_upload("file", b"\x00\x01garbage" * 100, "x.bin", 60)
