#!/usr/bin/env python3
"""Edge benchmark: VAD + segmenter throughput, the agent's CPU and memory, end-of-speech latency.

    python scripts/bench_edge.py [--speech DIR] [--file long/silero_vad_test.wav] [--pace 1.0] [--vad webrtc]

1. Throughput in x real time (audio seconds per CPU second of this process, best of --repeats) of
   voxrelay's VAD + segmenter (SpeechSegmenter) over the constructed VAD benchmark, next to raw webrtcvad
   on the same 30 ms frames (target: >= 50 % of raw webrtcvad): the webrtc path in the blocks that an
   unpaced file source delivers (1 s) and in live 20 ms blocks, the webrtc path without its voicing
   gate, and the silero path next to its raw ONNX model.
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
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serveproc import start_serve  # noqa: E402

from voxrelay.edge.capture.files import FILE_BLOCK_SECONDS, LIVE_BLOCK_SECONDS  # noqa: E402
from voxrelay.edge.events import AudioBlock  # noqa: E402
from voxrelay.edge.vad.detectors import Vad, WebRtcVad, make_vad, silero_model_path  # noqa: E402
from voxrelay.edge.vad.speech import SpeechSegmenter  # noqa: E402

DEFAULT_SPEECH = ROOT.parent / "shared" / "data" / "speech"


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    """The least CPU time of this process that ``fn()`` took in ``n`` runs (other load does not count)."""
    times = []
    for _ in range(n):
        began = time.process_time()
        fn()
        times.append(time.process_time() - began)
    return min(times)


def throughput(audio: np.ndarray, repeats: int) -> None:
    import webrtcvad

    seconds = len(audio) / 16000
    frame = 480
    frames = [audio[i : i + frame].tobytes() for i in range(0, len(audio) - frame + 1, frame)]
    file_block = round(FILE_BLOCK_SECONDS * 16000)
    live_block = round(LIVE_BLOCK_SECONDS * 16000)

    def raw_webrtc() -> None:
        vad = webrtcvad.Vad(3)
        for f in frames:
            vad.is_speech(f, 16000)

    def pipeline(vad: Vad, block: int) -> None:
        vad.reset()
        segmenter = SpeechSegmenter(vad)
        for i in range(0, len(audio), block):
            segmenter.feed(AudioBlock(audio[i : i + block], i / 16000))
        segmenter.flush()

    def speed(vad: Vad, block: int) -> float:
        return seconds / best_of(repeats, lambda: pipeline(vad, block))

    def show(label: str, value: float, reference: float | None = None, target: str = "") -> None:
        share = f"  ({value / reference:.0%} of raw{target})" if reference else ""
        print(f"  {label:<52} {value:8.0f} x real time{share}")

    print(f"VAD + segmenter throughput over {seconds:.1f} s of audio (CPU time, best of {repeats}):")
    raw = seconds / best_of(repeats, raw_webrtc)
    show("raw webrtcvad (30 ms frames)", raw)
    webrtc = make_vad("webrtc")
    file_label, live_label = f"{FILE_BLOCK_SECONDS:g} s blocks", f"{LIVE_BLOCK_SECONDS * 1000:g} ms blocks"
    show(f"voxrelay webrtc VAD + segmenter, {file_label}", speed(webrtc, file_block), raw, "; target >= 50 %")
    show(f"voxrelay webrtc VAD + segmenter, {live_label}", speed(webrtc, live_block), raw)
    show(f"  the same without the voicing gate, {file_label}", speed(WebRtcVad(voicing_threshold=0.0), file_block), raw)
    try:
        silero = make_vad("silero")
        raw_model = raw_silero(audio)
    except Exception as err:  # the silero extra is not installed
        print(f"  silero: skipped ({err})")
        return
    raw_s = seconds / best_of(repeats, raw_model)
    show("silero ONNX model alone (32 ms windows)", raw_s)
    show(f"voxrelay silero VAD + segmenter, {file_label}", speed(silero, file_block), raw_s)


def raw_silero(audio: np.ndarray) -> Callable[[], None]:
    """A run of the silero ONNX model alone over ``audio`` (512-sample windows with 64 samples of context
    and the recurrent state, as voxrelay feeds it); the session and the windows are made beforehand."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(silero_model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    x = np.concatenate([np.zeros(64, np.float32), audio.astype(np.float32) / 32768.0])
    windows = [x[i : i + 576][np.newaxis, :] for i in range(0, len(x) - 575, 512)]
    sr = np.array(16000, dtype=np.int64)

    def run() -> None:
        state = np.zeros((2, 1, 128), dtype=np.float32)
        for window in windows:
            _, state = session.run(None, {"input": window, "state": state, "sr": sr})

    return run


class PeakRss:
    """Polls the agent's VmHWM (its peak resident set since exec; the rusage figure would also count the
    benchmark process it was forked from)."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.wait(0.05):
            try:
                for line in self.path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.kib = max(self.kib, int(line.split()[1]))
            except (OSError, ValueError):
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def paced_run(path: Path, pace: float, vad: str) -> None:
    server, address = start_serve()
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
        peak = PeakRss(agent.pid)
        out = agent.stdout.read()
        peak.stop()
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
    print(f"  peak RSS {peak.kib / 1024:.1f} MB (target <= 80 MB)")
    if latencies:
        print(
            f"  {len(results)} segments; end of speech -> final result latency "
            f"p50 {np.percentile(latencies, 50):.3f} s, p95 {np.percentile(latencies, 95):.3f} s"
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
