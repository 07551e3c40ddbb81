"""Benchmark ``voxrelay batch`` against faster-whisper and openai-whisper used directly, in one run.

Over the dev set's English utterances with human references, with the same model (tiny.en: the
CTranslate2 weights, and for openai-whisper the checkpoint converted losslessly from them) and the same
beam (5), it prints for each contender: model load time, transcription wall time, × real time (audio
seconds / transcription wall seconds) and corpus WER (Whisper's English normaliser).

- ``voxrelay batch``: the batch runner (plan_batch + run_batch, what the CLI runs) against the embedded
  recognizer, int8, its default VAD, jobs and inference workers; outputs as JSON documents.
- faster-whisper: ``WhisperModel.transcribe(path, beam_size=5, vad_filter=True)`` file by file, int8.
- openai-whisper: ``transcribe(audio, beam_size=5, best_of=5, fp16=False)`` file by file (no ffmpeg is
  needed: the dev files are 16 kHz mono and are read with soundfile).

Every contender transcribes each file once per round; with ``--rounds N`` the best round counts (the
least disturbed by other load on the machine) and rounds alternate between contenders.

    python scripts/bench_batch.py [--rounds 3] [--copies 2] [--jobs N] [--skip-openai]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech"
sys.path.insert(0, str(ROOT))

from voxrelay.quality.wer import NO_ERRORS, word_errors  # noqa: E402

MODEL = "tiny.en"
BEAM = 5


@dataclass(frozen=True)
class Row:
    path: Path
    reference: str
    duration: float


@dataclass
class Result:
    name: str
    load_seconds: float
    wall_seconds: float = float("inf")
    cpu_seconds: float = float("nan")
    wer: float = float("nan")
    note: str = ""


def english_rows(speech: Path) -> list[Row]:
    rows = []
    with open(speech / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("text_kind") == "human_reference" and row.get("language") == "en":
                rows.append(Row(speech / row["audio"], row["text"], float(row["duration_s"])))
    return rows


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    total = NO_ERRORS
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        total = total + word_errors(reference, hypothesis)
    return total.wer


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """Yields a list that receives the wall seconds and the CPU seconds of this process (all threads)."""
    out: list[float] = []
    began, cpu = time.perf_counter(), time.process_time()
    yield out
    out.extend((time.perf_counter() - began, time.process_time() - cpu))


class VoxrelayBatch:
    """The embedded recognizer stays up across rounds; each round is a fresh batch into a fresh folder."""

    def __init__(self, jobs: int | None, workers: int | None, window: int | None, vad: str | None) -> None:
        from voxrelay.batch.run import DEFAULT_JOBS, DEFAULT_WINDOW, embedded_workers
        from voxrelay.edge.agent import VadSettings

        self.vad = VadSettings(vad) if vad else VadSettings()

        self.jobs = jobs or DEFAULT_JOBS
        self.window = window or DEFAULT_WINDOW
        self.workers = workers or embedded_workers(self.jobs)
        self.loop = asyncio.new_event_loop()
        self._stack = contextlib.AsyncExitStack()
        from voxrelay.embedded import embedded_recognizer

        recognizer = embedded_recognizer(model=MODEL, beam_size=BEAM, inference_workers=self.workers)
        with timed() as t:
            self.address = self.loop.run_until_complete(self._stack.enter_async_context(recognizer))
        self.load_seconds = t[0]

    @property
    def label(self) -> str:
        return f"voxrelay batch ({self.vad.vad} VAD, jobs {self.jobs}, workers {self.workers}, window {self.window})"

    def transcribe(self, paths: list[Path]) -> list[str]:
        from voxrelay.batch.run import BatchSettings, plan_batch, run_batch
        from voxrelay.edge.link.uplink import UplinkSettings

        with tempfile.TemporaryDirectory(prefix="bench-batch-") as out:
            # Copies of a file get their own names, so that each is transcribed.
            links = []
            for i, path in enumerate(paths):
                link = Path(out) / "in" / f"{i:04d}-{path.name}"
                link.parent.mkdir(exist_ok=True)
                link.symlink_to(path)
                links.append(link)
            settings = BatchSettings(str(Path(out) / "out"), fmt="json", jobs=self.jobs, window=self.window)
            plan = plan_batch([str(link) for link in links], settings)
            uplink = UplinkSettings(server=self.address, device_id="bench", beam_size=BEAM)
            status = self.loop.run_until_complete(run_batch(plan, uplink, self.vad, quiet=True))
            if status != 0:
                raise SystemExit(f"voxrelay batch failed (exit {status}); see {settings.output_dir}")
            texts = []
            for link in links:
                with open(Path(out) / "out" / (link.stem + ".json"), encoding="utf-8") as f:
                    texts.append(json.load(f)["text"])
            return texts

    def close(self) -> None:
        self.loop.run_until_complete(self._stack.aclose())
        self.loop.close()


class FasterWhisper:
    def __init__(self, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel

        from voxrelay.models.catalogue import local_model, resolve_model

        self.cpu_threads = cpu_threads
        with timed() as t:
            local = local_model(resolve_model(MODEL))
            self.model = WhisperModel(local.path, device="cpu", compute_type="int8", cpu_threads=cpu_threads)
        self.load_seconds = t[0]

    @property
    def label(self) -> str:
        threads = "default threads" if self.cpu_threads == 0 else f"cpu_threads {self.cpu_threads}"
        return f"faster-whisper transcribe(vad_filter=True), {threads}"

    def transcribe(self, paths: list[Path]) -> list[str]:
        texts = []
        for path in paths:
            segments, _ = self.model.transcribe(str(path), beam_size=BEAM, vad_filter=True)
            texts.append(" ".join(s.text.strip() for s in segments))
        return texts

    def close(self) -> None:
        pass


class OpenAIWhisper:
    def __init__(self) -> None:
        import whisper

        from voxrelay.models.catalogue import local_model, resolve_model
        from voxrelay.models.convert import openai_checkpoint

        checkpoint = openai_checkpoint(local_model(resolve_model(MODEL)))  # converted once, cached
        with timed() as t:
            self.model = whisper.load_model(str(checkpoint), device="cpu")
        self.load_seconds = t[0]
        self.label = "openai-whisper transcribe (fp32, torch)"

    def transcribe(self, paths: list[Path]) -> list[str]:
        import soundfile

        texts = []
        for path in paths:
            audio, rate = soundfile.read(str(path), dtype="float32")
            assert rate == 16000 and audio.ndim == 1, f"{path}: expected 16 kHz mono"
            out = self.model.transcribe(audio, beam_size=BEAM, best_of=5, fp16=False, verbose=None)
            texts.append(str(out["text"]).strip())
        return texts

    def close(self) -> None:
        pass


def run(contenders: list[Any], rows: list[Row], rounds: int) -> list[Result]:
    paths = [row.path for row in rows]
    references = [row.reference for row in rows]
    results = [Result(c.label, c.load_seconds) for c in contenders]
    for round_ in range(rounds):
        for contender, result in zip(contenders, results, strict=True):
            with timed() as t:
                texts = contender.transcribe(paths)
            wer = corpus_wer(references, texts)
            print(
                f"  round {round_ + 1}: {contender.label}: {t[0]:.2f} s wall, {t[1]:.2f} s CPU, WER {wer:.2%}",
                file=sys.stderr,
            )
            if t[0] < result.wall_seconds:
                result.wall_seconds, result.cpu_seconds = t[0], t[1]
            if result.wer == result.wer and abs(result.wer - wer) > 1e-9:
                result.note = "WER varied between rounds"
            result.wer = wer
    return results


def table(results: list[Result], audio_seconds: float, files: int) -> str:
    lines = [
        f"{files} files, {audio_seconds:.1f} s of audio, model {MODEL}, beam {BEAM}, {os.cpu_count()} CPU cores",
        f"{'contender':<62} {'load s':>7} {'wall s':>7} {'CPU s':>7} {'x real time':>12} {'WER':>7}",
    ]
    for r in results:
        lines.append(
            f"{r.name:<62} {r.load_seconds:>7.2f} {r.wall_seconds:>7.2f} {r.cpu_seconds:>7.2f} "
            f"{audio_seconds / r.wall_seconds:>12.1f} {r.wer:>7.2%}" + (f"  ({r.note})" if r.note else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech-dir", type=Path, default=SPEECH)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender; the fastest counts")
    parser.add_argument("--copies", type=int, default=1, help="transcribe the file list this many times")
    parser.add_argument("--jobs", type=int, help="voxrelay batch --jobs (default: its default)")
    parser.add_argument("--workers", type=int, help="embedded inference workers (default: the batch's)")
    parser.add_argument("--window", type=int, help="segments per file ahead of their results")
    parser.add_argument("--vad", help="voxrelay's VAD: auto, webrtc or silero (default: the batch's default)")
    parser.add_argument("--fw-threads", type=int, default=0, help="faster-whisper cpu_threads (0: its default)")
    parser.add_argument("--skip-openai", action="store_true", help="leave openai-whisper out")
    args = parser.parse_args(argv)
    if not (args.speech_dir / "manifest.jsonl").is_file():
        print(f"bench_batch: no dev speech set at {args.speech_dir}", file=sys.stderr)
        return 2
    rows = english_rows(args.speech_dir) * max(1, args.copies)
    audio = sum(row.duration for row in rows)
    makers: list[Callable[[], Any]] = [
        lambda: VoxrelayBatch(args.jobs, args.workers, args.window, args.vad),
        lambda: FasterWhisper(args.fw_threads),
    ]
    if not args.skip_openai:
        makers.append(OpenAIWhisper)
    contenders = [make() for make in makers]
    try:
        for contender in contenders:  # warm-up: first-call allocations, page cache
            contender.transcribe([rows[0].path])
        results = run(contenders, rows, max(1, args.rounds))
    finally:
        for contender in contenders:
            contender.close()
    print(table(results, audio, len(rows)))
    batch, fw = results[0], results[1]
    print(
        f"voxrelay batch vs faster-whisper: {fw.wall_seconds / batch.wall_seconds:.2f}x the throughput, "
        f"WER {batch.wer:.2%} vs {fw.wer:.2%}"
    )
    if len(results) > 2:
        ow = results[2]
        print(f"voxrelay batch vs openai-whisper: {ow.wall_seconds / batch.wall_seconds:.2f}x the throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
