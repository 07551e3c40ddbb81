#!/usr/bin/env python3
"""Recognizer benchmark: Recognize over gRPC (both backends) next to the models called directly.

    python scripts/bench_recognizer.py [--speech DIR] [--model tiny.en] [--beam-size 5] [--repeats 1]

For each utterance of the dev set's English files with a human reference, it times one call of:
  - faster-whisper used directly (WhisperModel.transcribe, the same model, compute type and beam),
  - voxrelay Recognize over a real gRPC server on loopback, faster-whisper backend,
  - openai-whisper used directly (model.transcribe on the converted checkpoint, fp16=False),
  - voxrelay Recognize over gRPC, openai-whisper backend,
and prints per-call latency p50/p95, the real-time factor (compute seconds / audio seconds), WER,
the service overhead over direct faster-whisper and the speed-up of faster-whisper over openai-whisper.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voxrelay.cloud.server import create_server, load_engines  # noqa: E402
from voxrelay.cloud.settings import ServerSettings  # noqa: E402
from voxrelay.protos import pb, pb_grpc  # noqa: E402
from voxrelay.quality.wer import NO_ERRORS, word_errors  # noqa: E402

DEFAULT_SPEECH = ROOT.parent / "shared" / "data" / "speech"


def load_set(speech: Path) -> list[tuple[str, np.ndarray, str]]:
    rows = [json.loads(line) for line in (speech / "manifest.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for row in rows:
        if (
            row.get("text_kind") == "human_reference"
            and row.get("language") == "en"
            and row["audio"].startswith("asr/")
        ):
            audio, rate = soundfile.read(str(speech / row["audio"]), dtype="float32")
            assert rate == 16000
            out.append((row["audio"], audio, row["text"]))
    return out


class Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.audio = 0.0
        self.errors = NO_ERRORS

    def add(self, seconds: float, audio_seconds: float, reference: str, text: str) -> None:
        self.latencies.append(seconds)
        self.audio += audio_seconds
        self.errors = self.errors + word_errors(reference, text)

    @property
    def total(self) -> float:
        return sum(self.latencies)

    def line(self) -> str:
        return (
            f"{self.name:<38} {np.percentile(self.latencies, 50):8.3f} {np.percentile(self.latencies, 95):8.3f} "
            f"{statistics.fmean(self.latencies):8.3f} {self.total / self.audio:8.3f} {self.errors.wer:7.2%}"
        )


def run(row: Row, data: list[tuple[str, np.ndarray, str]], call: Callable[[np.ndarray], str], repeats: int) -> Row:
    call(data[0][1])  # warm-up
    for _ in range(repeats):
        for _name, audio, reference in data:
            began = time.perf_counter()
            text = call(audio)
            row.add(time.perf_counter() - began, len(audio) / 16000, reference, text)
    return row


class InProcessServer:
    def __init__(self, settings: ServerSettings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        engines = load_engines(settings)
        self.server, port = asyncio.run_coroutine_threadsafe(create_server(settings, engines), self.loop).result()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.RecognizerStub(self.channel)

    def recognize(self, audio: np.ndarray) -> str:
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        return self.stub.Recognize(pb.RecognizeRequest(audio=pcm), timeout=600).text

    def close(self) -> None:
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(5), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if not (args.speech / "manifest.jsonl").is_file():
        print(f"no dev speech set at {args.speech}", file=sys.stderr)
        return 1
    data = load_set(args.speech)
    audio_s = sum(len(a) for _, a, _ in data) / 16000
    print(
        f"{len(data)} English utterances, {audio_s:.1f} s of audio, model {args.model}, beam {args.beam_size}, "
        f"compute {args.compute_type}, repeats {args.repeats}\n"
    )
    rows: list[Row] = []

    from faster_whisper import WhisperModel

    from voxrelay.models.catalogue import local_model, resolve_model

    resolved = local_model(resolve_model(args.model))
    fw = WhisperModel(resolved.path, device="cpu", compute_type=args.compute_type)

    def fw_call(audio: np.ndarray) -> str:
        segments, _ = fw.transcribe(audio, beam_size=args.beam_size, vad_filter=False)
        return " ".join(s.text for s in segments)

    rows.append(run(Row("faster-whisper direct"), data, fw_call, args.repeats))

    base = ServerSettings(port=0, models=(args.model,), compute_type=args.compute_type, beam_size=args.beam_size)
    server = InProcessServer(base)
    rows.append(run(Row("voxrelay Recognize (faster-whisper)"), data, server.recognize, args.repeats))
    server.close()

    import whisper

    from voxrelay.models.convert import openai_checkpoint

    ow = whisper.load_model(openai_checkpoint(resolve_model(args.model)), device="cpu")

    def ow_call(audio: np.ndarray) -> str:
        return str(ow.transcribe(audio, fp16=False, beam_size=args.beam_size, best_of=5, verbose=None)["text"])

    rows.append(run(Row("openai-whisper direct"), data, ow_call, args.repeats))

    server = InProcessServer(
        ServerSettings(port=0, models=(args.model,), backend="openai-whisper", beam_size=args.beam_size)
    )
    rows.append(run(Row("voxrelay Recognize (openai-whisper)"), data, server.recognize, args.repeats))
    server.close()

    print(f"{'system':<38} {'p50 s':>8} {'p95 s':>8} {'mean s':>8} {'RTF':>8} {'WER':>7}")
    for row in rows:
        print(row.line())
    fw_direct, fw_service, ow_direct, ow_service = rows
    print()
    print(f"service overhead over direct faster-whisper: {fw_service.total / fw_direct.total - 1:+.1%} (target ≤ +10%)")
    print(
        f"faster-whisper backend vs openai-whisper backend: {ow_service.total / fw_service.total:.2f}x faster "
        "(target ≥ 2x)"
    )
    print(f"openai-whisper backend overhead over direct openai-whisper: {ow_service.total / ow_direct.total - 1:+.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
