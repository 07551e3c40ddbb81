#!/usr/bin/env python3
"""Edge benchmark: VAD + segmenter throughput, the agent's CPU and memory, end-of-speech latency.

    python scripts/bench_edge.py [--speech DIR] [--file long/silero_vad_test.wav] [--pace 1.0] [--vad webrtc]

1. Throughput in x real time of voxrelay's VAD + segmenter (SpeechSegmenter, 20 ms blocks in) next to
   raw webrtcvad on the same 30 ms frames (and silero next to its raw ONNX model), over the constructed
   VAD benchmark (target: >= 50 % of raw webrtcvad).
2. `voxrelay transcribe --server ... --pace 1.0` streaming a file in real time to a `voxrelay serve`
   process: the agent's CPU (% of one core, user + system over wall time) and peak RSS, from the
   kernel's accounting of the agent process (targets on the webrtc path: <= 5 %, <= 80 MB), and the
   end-of-speech -> final-result latency p50/p95 that the agent observed per segment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voxrelay.edge.events import AudioBlock  # noqa: E402
from voxrelay.edge.segments import SpeechSegmenter  # noqa: E402
from voxrelay.edge.vad import make_vad  # noqa: E402

DEFAULT_SPEECH = ROOT.parent / "shared" / "data" / "speech"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def throughput(audio: np.ndarray, repeats: int) -> None:
    import webrtcvad

    seconds = len(audio) / 16000
    frame = 480
    frames = [audio[i : i + frame].tobytes() for i in range(0, len(audio) - frame + 1, frame)]

    def raw_webrtc() -> None:
        vad = webrtcvad.Vad(3)
        for f in frames:
            vad.is_speech(f, 16000)

    def pipeline(name: str) -> None:
        segmenter = SpeechSegmenter(make_vad(name))
        block = 320
        for i in range(0, len(audio), block):
            segmenter.feed(AudioBlock(audio[i : i + block], i / 16000))
        segmenter.flush()

    def raw_silero() -> None:
        vad = make_vad("silero")
        n = vad.frame_samples
        for i in range(0, len(audio) - n + 1, n):
            vad.speech_probability(audio[i : i + n])

    raw = seconds / best_of(repeats, raw_webrtc)
    ours = seconds / best_of(repeats, lambda: pipeline("webrtc"))
    print(f"VAD + segmenter throughput over {seconds:.1f} s of audio (best of {repeats}):")
    print(f"  raw webrtcvad (30 ms frames)            {raw:10.0f} x real time")
    print(
        f"  voxrelay webrtc VAD + segmenter          {ours:10.0f} x real time  ({ours / raw:.0%} of raw; target >= 50 %)"
    )
    try:
        raw_s = seconds / best_of(repeats, raw_silero)
        ours_s = seconds / best_of(repeats, lambda: pipeline("silero"))
        print(f"  silero ONNX model alone (32 ms windows)  {raw_s:10.0f} x real time")
        print(f"  voxrelay silero VAD + segmenter          {ours_s:10.0f} x real time  ({ours_s / raw_s:.0%} of raw)")
    except Exception as err:  # silero extra not installed
        print(f"  silero: skipped ({err})")


def paced_run(path: Path, pace: float, vad: str) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "voxrelay", "serve", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    address = server.stdout.readline().strip().removeprefix("listening on ")
    try:
        began = time.perf_counter()
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxrelay",
                "transcribe",
                "--server",
                address,
                "--pace",
                str(pace),
                "--vad",
                vad,
                "--format",
                "json",
                str(path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert agent.stdout is not None
        out = agent.stdout.read()
        _, status, usage = os.wait4(agent.pid, 0)
        wall = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(60)
    if status != 0:
        print(f"the agent failed (status {status})")
        return
    results = [json.loads(line) for line in out.splitlines() if line.strip()]
    cpu = usage.ru_utime + usage.ru_stime
    duration = soundfile.info(str(path)).duration
    latencies = [r["latency_seconds"] for r in results]
    print(f"\nagent streaming {path.name} ({duration:.1f} s) at pace {pace:g} with the {vad} VAD, to `voxrelay serve`:")
    print(f"  wall {wall:.1f} s, CPU {cpu:.2f} s = {100 * cpu / wall:.1f} % of one core (target <= 5 %)")
    print(f"  peak RSS {usage.ru_maxrss / 1024:.1f} MB (target <= 80 MB)")
    if latencies:
        print(
            f"  {len(results)} segments; end of speech -> final result latency "
            f"p50 {percentile(latencies, 0.5):.3f} s, p95 {percentile(latencies, 0.95):.3f} s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--file", default="long/silero_vad_test.wav", help="file to stream, relative to --speech")
    parser.add_argument("--pace", type=float, default=1.0)
    parser.add_argument("--vad", default="webrtc", choices=("webrtc", "silero"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-paced", action="store_true")
    args = parser.parse_args()
    bench = args.speech / "constructed" / "vad_bench_dev.wav"
    if not bench.is_file():
        print(f"no dev speech set at {args.speech}", file=sys.stderr)
        return 1
    audio, rate = soundfile.read(str(bench), dtype="int16")
    assert rate == 16000
    throughput(audio, args.repeats)
    if not args.skip_paced:
        paced_run(args.speech / args.file, args.pace, args.vad)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
