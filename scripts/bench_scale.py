"""Scale: replicas behind haproxy, and Ray batch against the single-process batch, in one run.

1. Balancer overhead at one replica: per-call latency of gRPC ``Recognize`` over the dev set's English
   utterances, straight to a replica and through haproxy (deploy/haproxy/haproxy.cfg, all three server
   entries pointing at that one replica), calls alternating between the two paths; target <= 5 %.
2. Throughput 1 vs 3 replicas behind haproxy: ``--concurrency`` callers sending the utterances
   ``--passes`` times (audio seconds per wall second), next to faster-whisper called directly in one
   process, one utterance after another. On 2 cores three replicas share the same CPUs: expect little gain.
3. ``voxrelay batch`` on the dev set: single process (embedded recognizer) vs ``--ray`` on a local Ray
   cluster started here (``--ray-cpus`` worker slots), wall time and x real time (cluster start apart).

    python scripts/bench_scale.py [--passes 2] [--concurrency 6] [--rounds 3] [--skip-ray]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from tests.replicas import Haproxy, Replica, free_port  # noqa: E402
from voxrelay.protos import pb, pb_grpc  # noqa: E402


def utterances() -> list[tuple[str, bytes, float]]:
    rows = [json.loads(line) for line in (SPEECH / "manifest.jsonl").read_text().splitlines() if line.strip()]
    found = []
    for row in rows:
        if (
            row.get("text_kind") == "human_reference"
            and row.get("language") == "en"
            and row["audio"].startswith("asr/")
        ):
            data, rate = soundfile.read(SPEECH / row["audio"], dtype="int16")
            if data.ndim > 1:
                data = data.mean(axis=1).astype(np.int16)
            found.append((row["audio"], data.astype("<i2").tobytes(), rate))
    return [(name, audio, float(rate)) for name, audio, rate in found]


def request(audio: bytes, rate: float) -> pb.RecognizeRequest:
    return pb.RecognizeRequest(
        audio=audio, format=pb.AudioFormat(encoding=pb.LINEAR16, sample_rate_hz=int(rate), channels=1)
    )


async def call(stub: pb_grpc.RecognizerStub, req: pb.RecognizeRequest) -> float:
    began = time.perf_counter()
    await stub.Recognize(req, timeout=300, wait_for_ready=True)
    return time.perf_counter() - began


async def latency(direct: str, balanced: str, items: list, rounds: int) -> tuple[list[float], list[float]]:
    import grpc

    async with grpc.aio.insecure_channel(direct) as a, grpc.aio.insecure_channel(balanced) as b:
        stubs = (pb_grpc.RecognizerStub(a), pb_grpc.RecognizerStub(b))
        for stub in stubs:  # warm both paths
            await call(stub, request(*items[0][1:]))
        times: tuple[list[float], list[float]] = ([], [])
        for r in range(rounds):
            for i, (_, audio, rate) in enumerate(items):
                order = (0, 1) if (i + r) % 2 == 0 else (1, 0)
                for which in order:
                    times[which].append(await call(stubs[which], request(audio, rate)))
    return times


async def throughput(address: str, items: list, passes: int, concurrency: int) -> float:
    import grpc

    work = [request(audio, rate) for _ in range(passes) for _, audio, rate in items]
    audio_seconds = sum(len(r.audio) / 2 / r.format.sample_rate_hz for r in work)
    gate = asyncio.Semaphore(concurrency)
    # One channel per caller: haproxy balances per stream anyway, but several connections are what
    # several edges would open.
    channels = [grpc.aio.insecure_channel(address) for _ in range(concurrency)]
    try:
        stubs = [pb_grpc.RecognizerStub(c) for c in channels]

        async def one(i: int, req: pb.RecognizeRequest) -> None:
            async with gate:
                await call(stubs[i % concurrency], req)

        await call(stubs[0], work[0])
        began = time.perf_counter()
        await asyncio.gather(*(one(i, req) for i, req in enumerate(work)))
        return audio_seconds / (time.perf_counter() - began)
    finally:
        for c in channels:
            await c.close()


def faster_whisper_direct(items: list, passes: int) -> float:
    from faster_whisper import WhisperModel

    from voxrelay.models.catalogue import local_model, resolve_model

    model = WhisperModel(str(local_model(resolve_model("tiny.en")).path), device="cpu", compute_type="int8")
    total = 0.0
    began = time.perf_counter()
    for _ in range(passes):
        for _, audio, rate in items:
            samples = np.frombuffer(audio, "<i2").astype(np.float32) / 32768
            if rate != 16000:
                import soxr

                samples = soxr.resample(samples, rate, 16000)
            segments, _ = model.transcribe(samples, beam_size=5, language="en")
            list(segments)
            total += samples.size / 16000
    return total / (time.perf_counter() - began)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def replicas_part(args: argparse.Namespace) -> None:
    items = utterances()
    print(f"{len(items)} English utterances, {sum(len(a) / 2 / r for _, a, r in items):.1f} s of audio")
    replicas = [Replica("--workers", "1").start() for _ in range(3)]
    try:
        one = Haproxy([replicas[0]] * 3).start()
        try:
            direct, balanced = asyncio.run(latency(replicas[0].address, one.address, items, args.rounds))
            fw = faster_whisper_direct(items, args.passes)
            t1 = asyncio.run(throughput(one.address, items, args.passes, args.concurrency))
        finally:
            one.stop()
        three = Haproxy(replicas).start()
        try:
            t3 = asyncio.run(throughput(three.address, items, args.passes, args.concurrency))
        finally:
            three.stop()
    finally:
        for replica in replicas:
            replica.stop()
    overhead = (sum(balanced) - sum(direct)) / sum(direct) * 100
    print(f"\nRecognize latency at one replica ({len(direct)} calls each, alternating):")
    print(f"  direct            p50 {pct(direct, 50):.3f} s  p95 {pct(direct, 95):.3f} s  total {sum(direct):.2f} s")
    print(
        f"  through haproxy   p50 {pct(balanced, 50):.3f} s  p95 {pct(balanced, 95):.3f} s  total {sum(balanced):.2f} s"
    )
    diffs = [b - a for a, b in zip(direct, balanced, strict=True)]
    print(
        f"  balancer overhead {overhead:+.1f} % of total time "
        f"(median per call {statistics.median(diffs) * 1000:+.1f} ms; target <= 5 %)"
    )
    print(f"\nThroughput ({args.concurrency} concurrent callers, {args.passes} passes; audio s per wall s):")
    print(f"  faster-whisper direct, sequential      {fw:6.2f}x real time")
    print(f"  haproxy -> 1 replica                   {t1:6.2f}x real time")
    print(
        f"  haproxy -> 3 replicas                  {t3:6.2f}x real time  "
        f"({t3 / t1:.2f}x of one replica; {os.cpu_count()} cores)"
    )


def ray_part(args: argparse.Namespace) -> None:
    ray = shutil.which("ray")
    if ray is None:
        print("\nRay: not installed (pip install 'voxrelay[ray]'); skipped")
        return
    files = sorted(str(p) for p in (SPEECH / "asr").glob("*.wav"))
    audio = sum(soundfile.info(f).duration for f in files)
    print(f"\nvoxrelay batch on the dev set ({len(files)} files, {audio:.1f} s of audio, --vad webrtc):")
    results = {}
    port = free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    began = time.perf_counter()
    head = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--block",
            "--num-cpus",
            str(args.ray_cpus),
            "--port",
            str(port),
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert head.stdout is not None
    for line in head.stdout:
        if "block forever" in line:
            break
    start_seconds = time.perf_counter() - began
    try:
        for name, extra in (
            ("single process", []),
            (f"ray, {args.ray_cpus} worker slots", ["--ray", f"127.0.0.1:{port}"]),
        ):
            best = None
            for _ in range(args.batch_rounds):
                with tempfile.TemporaryDirectory() as out:
                    t0 = time.perf_counter()
                    subprocess.run(
                        [sys.executable, "-m", "voxrelay", "-q", "batch", *files, "-o", out, "--vad", "webrtc", *extra],
                        check=True,
                        cwd=ROOT,
                    )
                    wall = time.perf_counter() - t0
                best = wall if best is None else min(best, wall)
            results[name] = best
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(60)
    for name, wall in results.items():
        print(
            f"  {name:28s} wall {wall:6.2f} s  {audio / wall:6.2f}x real time "
            "(command start to exit, model loads included)"
        )
    print(f"  (starting the local Ray cluster took {start_seconds:.1f} s, not counted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds over the utterances")
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--batch-rounds", type=int, default=1)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    if not (SPEECH / "manifest.jsonl").is_file():
        raise SystemExit(f"the dev speech set is not at {SPEECH}")
    replicas_part(args)
    if not args.skip_ray:
        ray_part(args)


if __name__ == "__main__":
    main()
