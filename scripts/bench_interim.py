#!/usr/bin/env python3
"""Interim results: how soon the first interim text shows, how often it updates, and what it costs finals.

    python scripts/bench_interim.py                     # 1 and 4 paced streams, interims off and on
    python scripts/bench_interim.py --streams 1 4 --rounds 2 --interval 1.0

One ``voxrelay serve`` on loopback (its default workers × threads for this machine) serves every
condition. In each, ``N`` streams (one device each) send every English dev utterance with a human
reference as one segment, at real time in 0.1 s chunks, each stream starting at a different
utterance; with interims on, each stream's config asks for them every ``--interval`` seconds.
Conditions alternate off / on, so both share the process, its warm-up and the machine's background
load. Printed per condition:

- final latency p50/p95: the segment's end sent → its final result received, and with interims on
  the change of p50 against off at the same number of streams (the target: within 10 %);
- first interim p50/p95: the segment's first audio sent (its speech onset: the utterances are cut to
  speech) → its first interim text received, over segments that got one; the share that got one;
- updates per second: interim texts received per second of segment audio;
- last interim = final: the share of segments whose last interim text already read as the final one
  (words compared without case and punctuation);
- the server's interim outcomes (sent, unchanged, dropped, stale, failed) and the model time
  interims took (its /metrics) as a share of the finals' (each final's batch time / batch size).

Then (``--no-window-check`` skips it) the short-window interim decode against faster-whisper's own
greedy decode in its 30-second window, both on one thread in this process, on every utterance cut
every 2 s: how often the words agree, and the time of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from serveproc import start_serve  # noqa: E402

from voxrelay.protos import pb, pb_grpc  # noqa: E402

DEFAULT_SPEECH = ROOT.parent / "shared" / "data" / "speech"
CHUNK = 1600  # 0.1 s
GAP = 0.5  # seconds between one stream's segments


def utterances(speech: Path, limit: int | None) -> list[np.ndarray]:
    rows = [json.loads(line) for line in (speech / "manifest.jsonl").read_text().splitlines() if line.strip()]
    clips = []
    for row in rows:
        if (
            row.get("text_kind") == "human_reference"
            and row.get("language") == "en"
            and row["audio"].startswith("asr/")
        ):
            audio, rate = soundfile.read(str(speech / row["audio"]), dtype="int16")
            assert rate == 16000 and audio.ndim == 1, row["audio"]
            clips.append(audio)
    return clips[:limit] if limit else clips


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


@dataclass
class Segment:
    audio_seconds: float
    first_interim: float | None = None  # seconds from the first audio sent
    interims: list[str] = field(default_factory=list)
    final: str = ""
    final_latency: float = 0.0
    final_model: float = 0.0  # its share of the model call that decoded it (batch time / batch size)


async def one_stream(address: str, device: str, clips: list[np.ndarray], interim: float | None) -> list[Segment]:
    segments: list[Segment] = []
    began: dict[str, float] = {}
    ended: dict[str, float] = {}
    by_id: dict[str, Segment] = {}

    async def requests():  # type: ignore[no-untyped-def]
        extra = {"interim_results": True, "interim_interval_seconds": interim} if interim else {}
        # A new session each run: the server answers a segment id it has seen from its cache.
        session = f"{device}-{uuid.uuid4().hex[:8]}"
        yield pb.StreamRequest(config=pb.SessionConfig(device_id=device, session_id=session, **extra))
        for n, clip in enumerate(clips):
            segment_id = f"{device}/{n}"
            seg = Segment(clip.size / 16000)
            segments.append(seg)
            by_id[segment_id] = seg
            yield pb.StreamRequest(start=pb.SegmentStart(segment_id=segment_id, sequence=n))
            start = time.perf_counter()
            began[segment_id] = start
            for i in range(0, clip.size, CHUNK):
                yield pb.StreamRequest(audio=pb.AudioChunk(audio=clip[i : i + CHUNK].tobytes()))
                # Paced against the clock, not by sleeps that add up.
                await asyncio.sleep(max(0.0, start + (i + CHUNK) / 16000 - time.perf_counter()))
            ended[segment_id] = time.perf_counter()
            yield pb.StreamRequest(end=pb.SegmentEnd(segment_id=segment_id))
            await asyncio.sleep(GAP)

    async with grpc.aio.insecure_channel(address) as channel:
        async for response in pb_grpc.RecognizerStub(channel).Stream(requests()):
            now = time.perf_counter()
            kind = response.WhichOneof("message")
            if kind == "interim":
                seg = by_id[response.interim.segment_id]
                if seg.first_interim is None:
                    seg.first_interim = now - began[response.interim.segment_id]
                seg.interims.append(response.interim.text)
            elif kind in ("result", "error"):
                segment_id = response.result.segment_id if kind == "result" else response.error.segment_id
                seg = by_id[segment_id]
                seg.final = response.result.text if kind == "result" else f"<{response.error.code}>"
                timings = response.result.timings
                seg.final_model = timings.inference_seconds / max(1, timings.batch_size)
                seg.final_latency = max(now - ended[segment_id], 1e-9)
    return segments


def scrape(port: int) -> dict[str, float]:
    """The server's interim outcomes and the model seconds of interims and finals."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'voxrelay_asr_interim_total\{.*outcome="(\w+)".*\} (\S+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
        elif line.startswith("voxrelay_asr_interim_inference_seconds_total{"):
            out["interim_seconds"] = out.get("interim_seconds", 0.0) + float(line.split()[-1])
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)}


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=1, help="off/on pairs per number of streams")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds of new audio between interims")
    parser.add_argument("--limit", type=int, help="use only the first N utterances")
    parser.add_argument("--no-window-check", action="store_true", help="skip the short-window check")
    parser.add_argument("serve_args", nargs="*", help="extra `voxrelay serve` arguments (after --)")
    args = parser.parse_args()
    if not (args.speech / "manifest.jsonl").is_file():
        print(f"bench_interim: no dev speech set at {args.speech} (give --speech DIR)", file=sys.stderr)
        return 2
    clips = utterances(args.speech, args.limit)
    metrics_port = free_port()
    proc, address = start_serve("--metrics-port", str(metrics_port), *args.serve_args)
    print(f"voxrelay serve at {address}; {len(clips)} utterances, {sum(c.size for c in clips) / 16000:.1f} s each pass")
    rows = []
    try:
        asyncio.run(one_stream(address, "warmup", clips[:2], args.interval))  # load, warm the caches
        for streams in args.streams:
            for _ in range(args.rounds):
                for interim in (None, args.interval):
                    before = scrape(metrics_port)
                    began = time.monotonic()

                    async def run(streams: int = streams, interim: float | None = interim) -> list[list[Segment]]:
                        jobs = [
                            one_stream(address, f"dev{k}", clips[k % len(clips) :] + clips[: k % len(clips)], interim)
                            for k in range(streams)
                        ]
                        return list(await asyncio.gather(*jobs))

                    got = [seg for stream in asyncio.run(run()) for seg in stream]
                    server = delta(scrape(metrics_port), before)
                    rows.append((streams, interim is not None, got, server))
                    print(
                        f"  {streams} stream(s), interims {'on ' if interim else 'off'}: {len(got)} segments "
                        f"in {time.monotonic() - began:.0f} s",
                        flush=True,
                    )
    finally:
        proc.terminate()
        proc.wait(30)
    report(rows, args.interval)
    if not args.no_window_check:
        window_check(clips)
    return 0


def window_check(clips: list[np.ndarray]) -> None:
    """The interim decode (short window) next to faster-whisper's greedy decode (30 s), cut by cut."""
    from voxrelay.cloud.backends import load_backend
    from voxrelay.cloud.backends.base import DecodeOptions

    backend = load_backend("tiny.en", "faster-whisper", cpu_threads=1)
    greedy = DecodeOptions(beam_size=1, temperature=0.0, without_timestamps=True)
    quick = greedy.for_interim()
    same = cuts = 0
    times = {"short": 0.0, "30 s": 0.0}
    for clip in clips:
        audio = clip.astype(np.float32) / 32768
        for cut in np.arange(1.0, audio.size / 16000, 2.0):
            part = audio[: int(cut * 16000)]
            texts = {}
            for name, options in (("short", quick), ("30 s", greedy)):
                began = time.perf_counter()
                texts[name] = backend.transcribe(part, options).text
                times[name] += time.perf_counter() - began
            cuts += 1
            same += words(texts["short"]) == words(texts["30 s"])
    backend.close()
    print()
    print(
        f"short-window interim decode vs faster-whisper greedy (30 s window), {cuts} cuts every 2 s: same words in "
        f"{same}/{cuts} ({same / max(1, cuts):.0%}); time {times['short']:.1f} s vs {times['30 s']:.1f} s "
        f"({times['short'] / max(times['30 s'], 1e-9):.0%})"
    )


def report(rows: list[tuple[int, bool, list[Segment], dict[str, float]]], interval: float) -> None:
    print()
    print(f"interval {interval:g} s of new audio; latencies in seconds")
    header = (
        f"{'streams':>7} {'interim':>7} {'segs':>5} {'final p50':>9} {'p95':>6} {'Δp50':>7} "
        f"{'first p50':>9} {'p95':>6} {'got one':>7} {'upd/s':>6} {'last=final':>10} {'model':>6}"
    )
    print(header)
    off_p50: dict[int, list[float]] = {}
    for streams, on, segs, _ in rows:
        if not on:
            off_p50.setdefault(streams, []).extend(s.final_latency for s in segs)
    for streams, on, segs, server in rows:
        finals = [s.final_latency for s in segs]
        p50 = pct(finals, 50)
        base = pct(off_p50.get(streams, []), 50)
        change = f"{(p50 / base - 1) * 100:+.0f} %" if on and base == base else ""
        if on:
            long_enough = [s for s in segs if s.audio_seconds >= 1.5 * interval]
            firsts = [s.first_interim for s in segs if s.first_interim is not None]
            got = sum(1 for s in long_enough if s.first_interim is not None) / max(1, len(long_enough))
            updates = sum(len(s.interims) for s in segs) / sum(s.audio_seconds for s in segs)
            with_interim = [s for s in segs if s.interims]
            same = sum(1 for s in with_interim if words(s.interims[-1]) == words(s.final)) / max(1, len(with_interim))
            model = server.get("interim_seconds", 0.0) / max(sum(s.final_model for s in segs), 1e-9)
            extra = (
                f"{pct(firsts, 50):>9.2f} {pct(firsts, 95):>6.2f} {got:>7.0%} {updates:>6.2f} {same:>10.0%} "
                f"{model:>6.0%}"
            )
        else:
            extra = f"{'':>9} {'':>6} {'':>7} {'':>6} {'':>10} {'':>6}"
        print(
            f"{streams:>7} {'on' if on else 'off':>7} {len(segs):>5} {p50:>9.3f} {pct(finals, 95):>6.3f} "
            f"{change:>7} {extra}"
        )
    if any(n > 1 for n in Counter((streams, on) for streams, on, _, _ in rows).values()):
        print()
        print("all rounds together:")
        for streams in dict.fromkeys(streams for streams, _, _, _ in rows):
            pooled = {
                on: [s.final_latency for n, o, segs, _ in rows if n == streams and o == on for s in segs]
                for on in (False, True)
            }
            off, on_ = pct(pooled[False], 50), pct(pooled[True], 50)
            print(
                f"  {streams} stream(s): final p50 off {off:.3f} s, on {on_:.3f} s ({(on_ / off - 1) * 100:+.0f} %); "
                f"p95 off {pct(pooled[False], 95):.3f} s, on {pct(pooled[True], 95):.3f} s"
            )
    print()
    print("server interim outcomes (interims on):")
    for streams, on, segs, server in rows:
        if on:
            outcomes = ", ".join(
                f"{k} {server.get(k, 0):.0f}" for k in ("sent", "unchanged", "dropped", "stale", "failed")
            )
            print(
                f"  {streams} stream(s): {outcomes}; interim model time {server.get('interim_seconds', 0):.1f} s "
                f"vs finals {sum(s.final_model for s in segs):.1f} s"
            )
    print(
        "got one: segments of at least 1.5 intervals that got an interim; upd/s: interim texts per second of "
        "audio; last=final: last interim text equal to the final's words; model: interim model time / finals'"
    )


if __name__ == "__main__":
    raise SystemExit(main())
