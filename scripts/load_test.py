#!/usr/bin/env python3
"""Load test: many edge devices streaming real speech in real time to one `voxrelay serve`.

    python scripts/load_test.py                          # 50 streams for 2 minutes (the defaults)
    python scripts/load_test.py --streams 10 --duration 30 --drain 60

Starts ``voxrelay serve`` (tiny.en; limits from the flags) on a loopback port. Each simulated device
is a real edge uplink (its own channel, in-memory spool, reconnect with backoff) streaming one session
of English utterances from the dev set, paced in real time, 0.1 s per message, with 1-3 s of silence
between utterances. After ``--duration`` the devices stop speaking and get ``--drain`` seconds for
their last results. Printed: segments spoken and delivered, refusals and errors by status code,
end-to-end latency percentiles (segment close → result at the edge) and the server's resident memory
(RSS) over the run with its growth after warm-up. For scale, the same run first times faster-whisper
directly on the same utterances (real-time factor, so how many continuous speakers one core-bound
model can follow at best).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "data" / "speech"
sys.path.insert(0, str(ROOT))

from serveproc import start_serve  # noqa: E402

from voxrelay.edge.events import SegmentAudio, SegmentClosed, SegmentOpened, VadSummary  # noqa: E402
from voxrelay.edge.link.channel import open_channel  # noqa: E402
from voxrelay.edge.link.uplink import Uplink, UplinkError, UplinkSettings  # noqa: E402

CHUNK = 1600  # 0.1 s at 16 kHz
VAD = VadSummary("load", 1.0, 1.0, -20.0, 0.0, False, 0.0, 0.0)


def utterances() -> list[np.ndarray]:
    import soundfile

    rows = [json.loads(line) for line in (SPEECH / "manifest.jsonl").read_text().splitlines() if line.strip()]
    chosen = [
        r
        for r in rows
        if r.get("text_kind") == "human_reference" and r.get("language") == "en" and r["audio"].startswith("asr/")
    ]
    if not chosen:
        raise SystemExit(f"no English utterances found under {SPEECH}")
    return [soundfile.read(str(SPEECH / r["audio"]), dtype="int16")[0] for r in chosen]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def direct_rtf(clips: list[np.ndarray], beam_size: int) -> float:
    """faster-whisper alone on the same utterances: seconds of compute per second of audio."""
    from faster_whisper import WhisperModel

    from voxrelay.models.catalogue import resolve_model

    model = WhisperModel(resolve_model("tiny.en").path, device="cpu", compute_type="int8")
    audio = sum(len(c) for c in clips[:6]) / 16000
    began = time.perf_counter()
    for clip in clips[:6]:
        list(model.transcribe(clip.astype(np.float32) / 32768, beam_size=beam_size, vad_filter=False)[0])
    return (time.perf_counter() - began) / audio


class Device:
    """One simulated edge device: a session of paced utterances over its own channel."""

    def __init__(
        self,
        index: int,
        address: str,
        clips: list[np.ndarray],
        stop_at: float,
        outage: float,
        session_id: str = "",
    ) -> None:
        self.index = index
        # A run's own session id: the server's result cache answers a segment id it has seen with the same audio.
        self.session_id = session_id or f"load-{index:03d}"
        self.settings = UplinkSettings(
            server=address, device_id=f"load-{index:03d}", max_outage_seconds=outage, connect_timeout=30
        )
        self.clips = clips
        self.stop_at = stop_at
        self.rng = random.Random(index)
        self.spoken = 0
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.failure: str | None = None
        self.uplink: Uplink | None = None

    async def events(self):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        offset = 0.0
        sequence = 0
        await asyncio.sleep(self.rng.uniform(0, 3))  # devices do not all start at once
        while loop.time() < self.stop_at:
            clip = self.clips[self.rng.randrange(len(self.clips))]
            yield SegmentOpened(sequence, offset)
            began = loop.time()
            for i in range(0, len(clip), CHUNK):
                yield SegmentAudio(sequence, clip[i : i + CHUNK])
                delay = began + (i + CHUNK) / 16000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            seconds = len(clip) / 16000
            yield SegmentClosed(sequence, offset + seconds, offset + seconds, VAD)
            self.spoken += 1
            sequence += 1
            gap = self.rng.uniform(1.0, 3.0)
            offset += seconds + gap
            await asyncio.sleep(gap)

    async def run(self) -> None:
        channel = open_channel(self.settings)
        self.uplink = Uplink(self.settings, channel)
        try:
            async for result in self.uplink.session(self.session_id, self.events()):
                if result.error:
                    self.errors[result.error.split(":", 1)[0]] += 1
                else:
                    self.latencies.append(result.latency_seconds)
        except UplinkError as err:
            self.failure = err.message
        finally:
            self.uplink.close()
            await channel.close()


async def run_load(args: argparse.Namespace, address: str, pid: int, clips: list[np.ndarray]) -> int:
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + args.duration
    devices = [Device(i, address, clips, stop_at, args.duration + args.drain) for i in range(args.streams)]
    tasks = [asyncio.create_task(d.run()) for d in devices]
    samples: list[tuple[float, float]] = []

    async def sample() -> None:
        while True:
            samples.append((loop.time() - start, rss_mib(pid)))
            await asyncio.sleep(5)

    sampler = asyncio.create_task(sample())
    _, pending = await asyncio.wait(tasks, timeout=args.duration + args.drain)
    sampler.cancel()
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    samples.append((loop.time() - start, rss_mib(pid)))

    spoken = sum(d.spoken for d in devices)
    latencies = np.array([x for d in devices for x in d.latencies])
    errors = sum((d.errors for d in devices), Counter())
    refusals = sum((d.uplink.stats.refusals for d in devices if d.uplink), Counter())
    resent = sum(d.uplink.stats.resent_segments for d in devices if d.uplink)
    failures = [d.failure for d in devices if d.failure]
    print(f"\n{args.streams} streams, {args.duration:g} s of speaking, {args.drain:g} s to drain")
    print(
        f"segments: {spoken} spoken, {len(latencies)} delivered with text, {sum(errors.values())} with an error, "
        f"{len(pending)} sessions still waiting at the end, {resent} segment sends were resends"
    )
    print(f"stream refusals and reconnects by status: {dict(refusals) or 'none'}")
    print(f"segment errors by status: {dict(errors) or 'none'}")
    print(f"sessions that gave up: {len(failures)}" + (f" (first: {failures[0]})" if failures else ""))
    if latencies.size:
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        print(
            f"latency from segment close to result (s): p50 {p50:.2f}  p95 {p95:.2f}  p99 {p99:.2f}  "
            f"max {latencies.max():.2f}"
        )
    # RSS is sampled every 5 s and jumps with each inference and burst of streams: compare medians of
    # 30 s windows (just after warm-up, and at the end) rather than two single samples.
    warm_window = [rss for t, rss in samples if args.warmup <= t < args.warmup + 30] or [samples[-1][1]]
    end_window = [rss for _, rss in samples[-6:]]
    warm, final = float(np.median(warm_window)), float(np.median(end_window))
    peak = max(rss for t, rss in samples if t >= args.warmup) if samples[-1][0] >= args.warmup else final
    print("server RSS (MiB) every 5 s: " + " ".join(f"{rss:.0f}" for _, rss in samples[:: max(1, len(samples) // 40)]))
    print(
        f"server RSS: start {samples[0][1]:.0f} MiB; median of 30 s after warm-up ({args.warmup:g} s) {warm:.0f} MiB, "
        f"of the last 30 s {final:.0f} MiB, peak {peak:.0f} MiB; growth after warm-up "
        f"{100 * (final - warm) / warm:+.1f} % (peak {100 * (peak - warm) / warm:+.1f} %)"
    )
    # grpc's asyncio client reports a stream the server closed while a message was being written as
    # INTERNAL "Internal error from Core" (the server's status is lost in that race); it is retried.
    unexpected = {code: n for code, n in refusals.items() if code not in ("RESOURCE_EXHAUSTED", "INTERNAL_TRANSPORT")}
    unexpected.update({code: n for code, n in errors.items()})
    print(f"errors other than RESOURCE_EXHAUSTED: {unexpected or 'none'}")
    return 1 if unexpected or failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=50, help="simulated devices (default %(default)s)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of speaking (default %(default)s)")
    parser.add_argument("--drain", type=float, default=180.0, help="seconds to wait for the last results")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the RSS baseline is taken")
    parser.add_argument("--max-streams", type=int, default=64, help="server: concurrent stream limit")
    parser.add_argument("--max-queued-audio", type=float, default=60.0, help="server: queued audio limit, seconds")
    parser.add_argument("--workers", type=int, default=1, help="server: inference workers")
    parser.add_argument("--beam-size", type=int, default=5, help="server: beam width")
    parser.add_argument("--no-direct", action="store_true", help="skip timing faster-whisper directly first")
    args = parser.parse_args()

    import logging

    # Reconnects are counted below; one warning line per refusal of 50 devices would drown the report.
    logging.basicConfig(level=logging.ERROR)
    clips = utterances()
    if not args.no_direct:
        rtf = direct_rtf(clips, args.beam_size)
        print(
            f"faster-whisper tiny.en direct on this machine: real-time factor {rtf:.3f} "
            f"(at most ~{1 / rtf:.0f} continuous speakers, before any serving overhead)"
        )
    serve, address = start_serve(
        *("--max-streams", str(args.max_streams), "--max-queued-audio", str(args.max_queued_audio)),
        *("--workers", str(args.workers), "--beam-size", str(args.beam_size), "--max-segment-seconds", "40"),
    )
    print(
        f"voxrelay serve at {address}: --max-streams {args.max_streams} --max-queued-audio {args.max_queued_audio:g} "
        f"--workers {args.workers}"
    )
    try:
        return asyncio.run(run_load(args, address, serve.pid, clips))
    finally:
        serve.terminate()
        serve.wait(60)


if __name__ == "__main__":
    raise SystemExit(main())
