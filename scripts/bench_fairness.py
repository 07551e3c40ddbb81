#!/usr/bin/env python3
"""Fair share under abuse: a well-behaved client's latency alone and next to each abusive client,
and the server's memory under a burst of large unauthenticated requests.

    python scripts/bench_fairness.py                 # 8 utterances per condition (the default)
    python scripts/bench_fairness.py --segments 5    # quicker
    python scripts/bench_fairness.py --only "short-call flood"   # alone, then just that abusive client

Starts ``voxrelay serve`` (tiny.en, default limits and workers: one per core) with a device-token file
on a loopback port. The *good* client streams English utterances of the dev set one after another
on one ``Stream`` session (each segment sent whole, then its end) and measures end → result. It runs
alone, then next to each abusive client, each with its own token:

* ``idle streams``: 64 Stream calls that send a config and nothing else, and 64 that send nothing;
* ``trickling streams``: 16 streams each with an open segment fed one 10 ms frame a second;
* ``short-call flood``: 120 concurrent 0.5 s ``Recognize`` calls, each resent as soon as it ends;
* ``long prompts``: 8 concurrent calls with a 1,000-word initial_prompt and 8 with a prompt at
  Whisper's 223-token limit, resent as they end.

A refused abusive call is resent after the server's retry hint (0.5 s without one): the abusers run on
the same machine as the server, and a resend storm would measure the CPU they take, not the scheduler.

Printed per condition: the good client's p50/p95 and its ratio to alone, how often it was refused,
and what the abuser got. Targets: never refused, p95 within 2× alone. For scale, faster-whisper
called directly on the same utterances comes first (inference only, nothing queued). Last: the
server's RSS before and after 48 concurrent 23 MB ``Recognize`` calls without a token (target: growth
under 50 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "data" / "speech"
sys.path.insert(0, str(ROOT))

from serveproc import start_serve  # noqa: E402

from voxrelay.protos import pb, pb_grpc  # noqa: E402

TOKENS = {name: f"{name}-token-{'0123456789abcdef' * 2}" for name in ("good", "idle", "trickle", "flood", "prompt")}
SETTLE_SECONDS = 10.0
BIG_SEND = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


def auth(name: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[name]}"),)


def utterances(limit: int) -> list[np.ndarray]:
    import soundfile

    rows = [json.loads(line) for line in (SPEECH / "manifest.jsonl").read_text().splitlines() if line.strip()]
    chosen = [
        soundfile.read(str(SPEECH / r["audio"]), dtype="int16")[0]
        for r in rows
        if r.get("text_kind") == "human_reference" and r.get("language") == "en" and r["audio"].startswith("asr/")
    ]
    chosen = [c for c in chosen if 1.5 * 16000 <= len(c) <= 6 * 16000] or chosen
    if not chosen:
        raise SystemExit(f"no English utterances found under {SPEECH}")
    return [chosen[i % len(chosen)] for i in range(limit)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def direct(clips: list[np.ndarray]) -> list[float]:
    """faster-whisper alone on each utterance: seconds of inference."""
    from faster_whisper import WhisperModel

    from voxrelay.models.catalogue import resolve_model

    model = WhisperModel(resolve_model("tiny.en").path, device="cpu", compute_type="int8")
    list(model.transcribe(clips[0].astype(np.float32) / 32768, beam_size=5, vad_filter=False)[0])  # warm up
    times = []
    for clip in clips:
        began = time.perf_counter()
        list(model.transcribe(clip.astype(np.float32) / 32768, beam_size=5, vad_filter=False)[0])
        times.append(time.perf_counter() - began)
    del model
    return times


STAGES: dict[str, list[tuple[float, float]]] = {}


async def good_client(address: str, clips: list[np.ndarray], name: str) -> tuple[list[float], Counter[str]]:
    """One session, one segment at a time: seconds from each end to its result; refusals by code.
    The server's queue wait and inference time of each result go to ``STAGES[name]``."""
    latencies: list[float] = []
    stages = STAGES.setdefault(name, [])
    refusals: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        for attempt in range(3):
            ended: dict[str, float] = {}
            go = asyncio.Event()

            async def requests(
                session: str, go: asyncio.Event = go, ended: dict[str, float] = ended
            ) -> AsyncIterator[pb.StreamRequest]:
                yield pb.StreamRequest(config=pb.SessionConfig(device_id="good", session_id=session))
                for i, clip in enumerate(clips[len(latencies) :]):
                    segment_id = f"good/{session}/{i}"
                    go.clear()
                    yield pb.StreamRequest(start=pb.SegmentStart(segment_id=segment_id))
                    audio = clip.tobytes()
                    for j in range(0, len(audio), 32000):
                        yield pb.StreamRequest(audio=pb.AudioChunk(audio=audio[j : j + 32000]))
                    ended[segment_id] = time.perf_counter()
                    yield pb.StreamRequest(end=pb.SegmentEnd(segment_id=segment_id))
                    await go.wait()

            try:
                session = f"{name.replace(' ', '-')}-{attempt}"  # new segment ids: nothing comes from the cache
                async for response in stub.Stream(requests(session), metadata=auth("good"), timeout=600):
                    if response.HasField("result"):
                        latencies.append(time.perf_counter() - ended[response.result.segment_id])
                        timings = response.result.timings
                        stages.append((timings.queue_wait_seconds, timings.inference_seconds))
                        go.set()
                    elif response.HasField("error"):
                        refusals[response.error.code] += 1
                        go.set()
                return latencies, refusals
            except grpc.aio.AioRpcError as err:
                refusals[err.code().name] += 1
                await asyncio.sleep(1.0)
    return latencies, refusals


class Abuser:
    """Runs a misbehaving client until stopped; counts what it got."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.outcomes: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        raise NotImplementedError

    def record(self, err: BaseException | None) -> None:
        if err is None:
            self.outcomes["OK"] += 1
        elif isinstance(err, grpc.aio.AioRpcError):
            self.outcomes[err.code().name] += 1
        else:
            self.outcomes[type(err).__name__] += 1


class IdleStreams(Abuser):
    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = pb_grpc.RecognizerStub(channel)

            async def hold(send_config: bool, n: int) -> None:
                while not self.stop.is_set():

                    async def requests() -> AsyncIterator[pb.StreamRequest]:
                        if send_config:
                            yield pb.StreamRequest(config=pb.SessionConfig(device_id=f"idle{n}", session_id="x"))
                        await self.stop.wait()

                    try:
                        async for _ in stub.Stream(requests(), metadata=auth("idle"), timeout=120):
                            pass
                        self.record(None)
                    except grpc.aio.AioRpcError as err:
                        self.record(err)
                        await asyncio.sleep(0.5)  # and again, as a hostile client would

            await asyncio.gather(*(hold(i % 2 == 0, i) for i in range(128)))


class TricklingStreams(Abuser):
    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = pb_grpc.RecognizerStub(channel)

            async def trickle(n: int) -> None:
                while not self.stop.is_set():

                    async def requests() -> AsyncIterator[pb.StreamRequest]:
                        yield pb.StreamRequest(config=pb.SessionConfig(device_id=f"trickle{n}", session_id="t"))
                        yield pb.StreamRequest(start=pb.SegmentStart(segment_id=f"trickle{n}/t/0"))
                        while not self.stop.is_set():
                            yield pb.StreamRequest(audio=pb.AudioChunk(audio=bytes(320)))
                            await asyncio.sleep(1.0)

                    try:
                        async for _ in stub.Stream(requests(), metadata=auth("trickle"), timeout=120):
                            pass
                        self.record(None)
                    except grpc.aio.AioRpcError as err:
                        self.record(err)
                        await asyncio.sleep(0.5)

            await asyncio.gather(*(trickle(i) for i in range(16)))


class Calls(Abuser):
    """``concurrency`` Recognize calls in flight at once, each resent as soon as it ends."""

    def __init__(self, address: str, token: str, requests: list[tuple[pb.RecognizeRequest, int]]) -> None:
        super().__init__(address)
        self.token = token
        self.requests = requests

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.address, options=BIG_SEND) as channel:
            stub = pb_grpc.RecognizerStub(channel)

            async def loop(request: pb.RecognizeRequest) -> None:
                while not self.stop.is_set():
                    try:
                        await stub.Recognize(request, metadata=auth(self.token), timeout=120)
                        self.record(None)
                    except grpc.aio.AioRpcError as err:
                        self.record(err)
                        # A refused call waits for the server's retry hint (0.5 s without one) before it is
                        # resent: on this one machine a client resending without pause would starve the
                        # server of CPU, which measures the machine rather than the scheduler.
                        hint = dict(err.trailing_metadata() or ()).get("grpc-retry-pushback-ms")
                        await asyncio.sleep(int(hint) / 1000 if hint else 0.5)

            await asyncio.gather(*(loop(r) for r, n in self.requests for _ in range(n)))


async def beside(
    abuser: Abuser | None, address: str, clips: list[np.ndarray], name: str
) -> tuple[list[float], Counter[str], Counter[str]]:
    task = asyncio.ensure_future(abuser.run()) if abuser is not None else None
    if task is not None:
        await asyncio.sleep(5.0)  # the abuse is in full swing before the good client starts
    try:
        latencies, refusals = await good_client(address, clips, name)
    finally:
        if abuser is not None and task is not None:
            abuser.stop.set()
            try:
                await asyncio.wait_for(task, 30)
            except (asyncio.TimeoutError, grpc.aio.AioRpcError):
                task.cancel()
            # What the abuser left queued or running drains before the next condition (and the burst).
            await asyncio.sleep(SETTLE_SECONDS)
    return latencies, refusals, abuser.outcomes if abuser is not None else Counter()


async def burst(address: str, pid: int, calls: int, megabytes: float) -> tuple[float, float, float, Counter[str]]:
    """``calls`` concurrent Recognize requests of ``megabytes`` without a token: RSS before, peak, after."""
    payload = pb.RecognizeRequest(
        audio=bytes(int(megabytes * 1e6) // 8 * 8), format=pb.AudioFormat(encoding=pb.FLOAT32, sample_rate_hz=48000)
    )
    before = rss_mib(pid)
    peak = before
    codes: Counter[str] = Counter()
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample())
    async with grpc.aio.insecure_channel(address, options=BIG_SEND) as channel:
        stub = pb_grpc.RecognizerStub(channel)

        async def one() -> None:
            try:
                await stub.Recognize(payload, timeout=120)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as err:
                codes[err.code().name] += 1

        await asyncio.gather(*(one() for _ in range(calls)))
    await asyncio.sleep(2.0)
    done.set()
    await sampler
    return before, peak, rss_mib(pid), codes


def describe(outcomes: Counter[str]) -> str:
    return ", ".join(f"{code} {n}" for code, n in outcomes.most_common()) or "-"


async def bench(
    address: str, clips: list[np.ndarray], only: set[str]
) -> list[tuple[str, list[float], Counter, Counter]]:
    short = np.asarray(clips[0][:8000]).tobytes()
    words = " ".join(["the quick brown fox jumps over the lazy dog"] * 112)[:5000]
    at_limit = " ".join(["Fellow Americans, ask what you can do."] * 24)
    utterance = clips[0].tobytes()
    conditions: list[tuple[str, Callable[[], Abuser | None]]] = [
        ("alone", lambda: None),
        ("idle streams", lambda: IdleStreams(address)),
        ("trickling streams", lambda: TricklingStreams(address)),
        ("short-call flood", lambda: Calls(address, "flood", [(pb.RecognizeRequest(audio=short), 120)])),
        (
            "long prompts",
            lambda: Calls(
                address,
                "prompt",
                [
                    (pb.RecognizeRequest(audio=utterance, options=pb.RecognitionOptions(initial_prompt=words)), 8),
                    (pb.RecognizeRequest(audio=utterance, options=pb.RecognitionOptions(initial_prompt=at_limit)), 8),
                ],
            ),
        ),
    ]
    rows = []
    for name, make in conditions:
        if only and name != "alone" and name not in only:
            continue
        latencies, refusals, outcomes = await beside(make(), address, clips, name)
        rows.append((name, latencies, refusals, outcomes))
        print(f"  {name}: done ({len(latencies)} results)", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=8, help="utterances the good client sends per condition")
    parser.add_argument("--burst-calls", type=int, default=48)
    parser.add_argument("--burst-mb", type=float, default=23.0)
    parser.add_argument(
        "--only", action="append", default=[], metavar="CONDITION", help="just this abusive client (repeatable)"
    )
    args = parser.parse_args()
    clips = utterances(args.segments)
    seconds = [len(c) / 16000 for c in clips]
    print(f"utterances: {len(clips)} of {np.mean(seconds):.1f} s on average (dev set, English)", flush=True)
    reference = direct(clips)
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.txt"
        tokens.write_text("".join(f"{token} {name}\n" for name, token in TOKENS.items()))
        proc, address = start_serve("--auth-token-file", str(tokens))
        try:
            rows = asyncio.run(bench(address, clips, set(args.only)))
            before, peak, after, codes = asyncio.run(burst(address, proc.pid, args.burst_calls, args.burst_mb))
        finally:
            proc.terminate()
            proc.wait(60)
    alone = rows[0][1]
    print()
    print(
        f"{'':24}{'p50 s':>8}{'p95 s':>8}{'p95/alone':>11}{'refused':>9}{'wait/infer':>12}"
        "   what the abusive client got"
    )
    print(
        f"{'faster-whisper direct':24}{percentile(reference, 50):8.3f}{percentile(reference, 95):8.3f}{'':>11}{'':>9}"
    )
    ok = True
    for name, latencies, refusals, outcomes in rows:
        ratio = percentile(latencies, 95) / percentile(alone, 95)
        refused = sum(refusals.values())
        ok = ok and refused == 0 and ratio <= 2.0 and len(latencies) == len(clips)
        waits, infers = zip(*STAGES.get(name, [(float("nan"), float("nan"))]), strict=True)
        print(
            f"{'good, ' + name:24}{percentile(latencies, 50):8.3f}{percentile(latencies, 95):8.3f}"
            f"{ratio:10.2f}×{refused:9d}{np.mean(waits):6.2f}/{np.mean(infers):4.2f}"
            f"   {describe(outcomes) if name != 'alone' else ''}"
        )
    print("wait/infer: the server's mean queue wait and inference time of the good client's segments (s)")
    print(f"target (never refused, p95 within 2x alone): {'met' if ok else 'NOT met'}")
    print()
    growth = after - before
    print(
        f"server RSS, {args.burst_calls} concurrent {args.burst_mb:g} MB Recognize calls without a token: "
        f"before {before:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB (growth {growth:+.0f} MB; "
        f"target < 50 MB: {'met' if growth < 50 else 'NOT met'}); answers: {describe(codes)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
