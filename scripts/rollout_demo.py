#!/usr/bin/env python3
"""A model rollout from start to end on a real recognizer over loopback, printed as a timeline.

    python scripts/rollout_demo.py                 # about 5 minutes on two CPU cores
    python scripts/rollout_demo.py --interval 10   # the analysis interval (seconds)

Starts ``voxrelay serve`` with a deployments file (tiny.en stable; multilingual ``base`` forced to English;
``base-ja``, the same weights forced to Japanese, a deliberately broken candidate; ``green``, tiny.en
decoded greedily, for a blue-green switch) and an admin token, and drives it over the Admin service
while simulated devices stream real English utterances (the shortest of ../shared/data/speech, or
espeak-ng speech when that folder is absent):

1. ``base`` as a shadow of every segment: results still come from tiny.en; the disagreement WER is printed;
2. a passing shadow becomes a canary that the analysis ramps 5 % → 50 % → 100 % by itself;
3. ``base-ja`` as a canary: rolled back by the analysis within its window, the failing check named;
4. a blue-green switch ``base`` → ``green`` under 8 concurrent streams paced in real time: every segment
   gets exactly one result (none lost, none duplicated, none answered by both sides).

Each step waits for the server's own analysis (every ``--interval`` seconds), never calls it directly.
Exits 1 when any step's expectation fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "data" / "speech"
sys.path.insert(0, str(ROOT))

from serveproc import start_serve  # noqa: E402

from voxrelay.cloud.rollout.analysis import CHECKS  # noqa: E402
from voxrelay.cloud.rollout.router import devices_in_buckets as devices  # noqa: E402
from voxrelay.protos import admin_grpc, admin_pb, pb, pb_grpc  # noqa: E402

ADMIN_TOKEN = "demo-admin-token-0123456789"
SENTENCES = (
    "The weather is nice today.",
    "Please turn off the kitchen light.",
    "We will meet again on Monday morning.",
    "Set a timer for ten minutes.",
    "The train leaves at half past seven.",
    "Call my sister when you get home.",
)
began = time.monotonic()
failures: list[str] = []


def say(text: str) -> None:
    print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)


def expect(ok: bool, what: str) -> None:
    say(("  ok: " if ok else "  FAILED: ") + what)
    if not ok:
        failures.append(what)


def utterances(n: int) -> list[np.ndarray]:
    """The ``n`` shortest English utterances with human references, or espeak-ng speech."""
    import soundfile

    manifest = SPEECH / "manifest.jsonl"
    if manifest.exists():
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        rows = [
            r
            for r in rows
            if r.get("text_kind") == "human_reference" and r.get("language") == "en" and r["audio"].startswith("asr/")
        ]
        rows.sort(key=lambda r: r["duration_s"])
        return [soundfile.read(str(SPEECH / r["audio"]), dtype="int16")[0] for r in rows[:n]]
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit(f"no speech: {SPEECH} is absent and espeak-ng is not installed")
    import soxr

    out = []
    with tempfile.TemporaryDirectory() as folder:
        for i, text in enumerate(SENTENCES[:n]):
            wav = Path(folder) / f"{i}.wav"
            subprocess.run([espeak, "-v", "en-us", "-w", str(wav), text], check=True)
            audio, rate = soundfile.read(str(wav), dtype="float32")
            audio = soxr.resample(audio, rate, 16000)
            out.append((np.clip(audio, -1, 1) * 32767).astype(np.int16))
    return out


def requests(device: str, session: str, audios: list[np.ndarray], pace: bool = False) -> Iterator[pb.StreamRequest]:
    yield pb.StreamRequest(config=pb.SessionConfig(device_id=device, session_id=session))
    offset = 0.0
    for i, audio in enumerate(audios):
        sid = f"{device}/{session}/{i}"
        yield pb.StreamRequest(start=pb.SegmentStart(segment_id=sid, sequence=i, offset_seconds=offset))
        data = audio.astype("<i2").tobytes()
        for j in range(0, len(data), 6400):  # 200 ms per message
            if pace:
                time.sleep(0.2)
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=data[j : j + 6400]))
        yield pb.StreamRequest(end=pb.SegmentEnd(segment_id=sid, vad=pb.VadStats(vad="webrtc")))
        offset += len(audio) / 16000 + 1.0


def session(address: str, device: str, audios: list[np.ndarray], tag: str, pace: bool = False) -> list[Any]:
    out = []
    with grpc.insecure_channel(address) as channel:
        for response in pb_grpc.RecognizerStub(channel).Stream(requests(device, tag, audios, pace), timeout=600):
            kind = response.WhichOneof("message")
            if kind == "error":
                raise SystemExit(f"the server refused a segment: {response.error}")
            if kind == "result":
                out.append(response.result)
    return out


class Admin:
    def __init__(self, address: str) -> None:
        self.stub = admin_grpc.AdminStub(grpc.insecure_channel(address))
        self.md = [("authorization", f"Bearer {ADMIN_TOKEN}")]

    def status(self) -> Any:
        return self.stub.GetStatus(admin_pb.StatusRequest(), metadata=self.md, timeout=30)

    def do(self, method: str, request: Any) -> Any:
        reply = getattr(self.stub, method)(request, metadata=self.md, timeout=60)
        for line in reply.changes:
            say(f"  deploy {method.lower()}: {line}")
        return reply

    def audit(self) -> list[Any]:
        return list(self.stub.GetAudit(admin_pb.AuditRequest(limit=50), metadata=self.md, timeout=30).entries)


def where(st: Any) -> str:
    if st.phase == "canary":
        return f"canary {st.candidate} at {st.weight:g} %, {st.stable} the rest"
    if st.phase == "shadow":
        return f"{st.stable} serves, shadow {st.candidate} hears {st.mirror_percent:g} %"
    return f"{st.stable} serves everyone"


def checks(st: Any) -> str:
    a = st.analysis
    parts = [f"{c.check} {c.result} ({c.candidate:.3f})" for c in a.checks if c.result != "inconclusive"]
    return f"{a.result}: " + ", ".join(parts)


def run_until(address: str, admin: Admin, groups: list[str], audios: list[np.ndarray], done: Any, limit: float) -> Any:
    """Sessions of ``groups`` (devices) in rounds until ``done(status)``, printing each analysis."""
    deadline = time.monotonic() + limit
    seen_age = None
    n = 0
    while True:
        served: dict[str, int] = {}
        for device in groups:
            for r in session(address, device, audios, tag=f"r{n}"):
                key = f"{r.deployment}/{r.slot}"
                served[key] = served.get(key, 0) + 1
        n += 1
        st = admin.status()
        say(f"  traffic round {n}: " + ", ".join(f"{k} {v}" for k, v in sorted(served.items())))
        if st.analysis.result and (seen_age is None or st.analysis.age_seconds < seen_age):
            say(f"  analysis of {st.analysis.candidate}: {checks(st)} → {where(st)}")
        seen_age = st.analysis.age_seconds if st.analysis.result else None
        if done(st):
            return st
        if time.monotonic() > deadline:
            expect(False, f"no decision within {limit:.0f} s (now: {where(st)})")
            return st


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--interval", type=float, default=10.0, help="analysis interval in seconds (default %(default)g)")
    args = p.parse_args()
    audios = utterances(6)
    say(f"{len(audios)} utterances, {sum(len(a) for a in audios) / 16000:.1f} s of speech")
    work = Path(tempfile.mkdtemp(prefix="rollout-demo-"))
    (work / "admin.txt").write_text(f"{ADMIN_TOKEN} demo\n")
    interval = args.interval
    (work / "deployments.yaml").write_text(
        "stable: tiny\n"
        "deployments:\n"
        "  tiny: {model: tiny.en}\n"
        "  base: {model: base, options: {language: en}}\n"
        "  base-ja: {model: base, options: {language: ja}}\n"
        "  green: {model: tiny.en, options: {beam_size: 1}}\n"
        # The window spans several intervals: a round of base's slower decoding can outlast one interval.
        f"analysis: {{interval_seconds: {interval:g}, window_seconds: {6 * interval:g}, min_samples: 3,\n"
        "  failure_limit: 1, promote_after: 1,\n"
        "  steps: [5, 50, 100], thresholds: {latency_p95_ratio: 6.0}}\n"
        "grace_seconds: 600\n"
    )
    say("starting voxrelay serve with 4 deployments (tiny.en, base, base forced to Japanese, tiny.en greedy)")
    proc, address = start_serve(
        "--deployments",
        str(work / "deployments.yaml"),
        "--admin-token-file",
        str(work / "admin.txt"),
        "--data-dir",
        str(work / "data"),
        "--max-client-streams",
        "64",
        # Unpaced sessions on a slow or busy machine: not refused as a flood.
        "--max-queued-work",
        "600",
        "--max-client-queued-work",
        "600",
    )
    try:
        admin = Admin(address)
        st = admin.status()
        say(f"serving on {address}: {where(st)}")

        # 1. shadow
        alone = [r.text for r in session(address, "dev-alone", audios, tag="alone")]
        admin.do("Shadow", admin_pb.ShadowRequest(name="base", mirror_percent=100, reason="demo: shadow"))
        texts = [r.text for r in session(address, "dev-alone", audios, tag="shadowed")]
        expect(texts == alone, "with the shadow on, the client got exactly what tiny.en alone returned")
        st = run_until(address, admin, ["dev-s1", "dev-s2"], audios[:3], lambda s: s.phase != "shadow", 20 * interval)
        wer = next((c.candidate for c in st.analysis.checks if c.check == "disagreement_wer"), float("nan"))
        say(f"  shadow disagreement WER (base vs tiny.en, same segments): {wer:.3f}")
        expect(st.phase == "canary" and st.weight == 5, "a passing shadow became a 5 % canary")

        # 2. canary 5 → 50 → 100
        near = devices("base", below=5, count=1)
        mid = devices("base", below=50, above=5, count=1)
        far = devices("base", above=50, count=1)
        st = run_until(address, admin, near + mid + far, audios[:2], lambda s: s.weight != 5, 20 * interval)
        expect(st.phase == "canary" and st.weight == 50, "analysis passed: canary stepped to 50 %")
        st = run_until(address, admin, near + mid + far, audios[:2], lambda s: s.phase != "canary", 20 * interval)
        expect(st.phase == "steady" and st.stable == "base", "analysis passed at 50 %: base promoted to stable")

        # 3. broken candidate
        admin.do("Canary", admin_pb.CanaryRequest(name="base-ja", steps=[50, 100], reason="demo: broken candidate"))
        started = time.monotonic()
        broken = devices("base-ja", below=50, count=2) + devices("base-ja", above=50, count=2)
        st = run_until(address, admin, broken, audios[:2], lambda s: s.phase != "canary", 20 * interval)
        took = time.monotonic() - started
        rollback = [e for e in admin.audit() if e.action == "auto-rollback"]
        why = rollback[-1].why if rollback else ""
        say(f"  rolled back {took:.1f} s after the canary started — {why}")
        # Which check fails first depends on the traffic of the window (a Japanese decode of English speech
        # lowers avg_logprob and raises the estimated WER); the rollback must name the one that failed.
        failed = sorted({c for c in CHECKS if f"{c} fail" in why})
        expect(
            st.phase == "steady" and st.stable == "base" and bool(rollback) and bool(failed),
            f"the broken candidate was rolled back automatically, naming the failing check ({', '.join(failed)})",
        )
        promoted = [e for e in admin.audit() if e.action == "auto-promote" and any("base-ja" in c for c in e.changes)]
        for e in promoted:
            say(f"  {e.action}: {'; '.join(e.changes)}")
        expect(not promoted, "the broken candidate never served everyone before its rollback")

        # 4. blue-green under 8 paced streams
        say("blue-green: 8 devices stream 4 utterances each, paced in real time; switch base → green mid-way")
        if admin.status().phase != "steady":
            admin.do("Rollback", admin_pb.RollbackRequest(reason="demo: clear the way for blue-green"))
        results: dict[int, list[Any]] = {}
        errors: list[str] = []

        def stream(n: int) -> None:
            clips = [audios[(n + i) % len(audios)] for i in range(4)]
            try:
                results[n] = session(address, f"bg-{n}", clips, tag="bg", pace=True)
            except Exception as err:
                errors.append(f"stream {n}: {err}")

        threads = [threading.Thread(target=stream, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        time.sleep(4.0)
        admin.do("Promote", admin_pb.PromoteRequest(name="green", switch=True, reason="demo: blue-green"))
        for t in threads:
            t.join(600)
        ids = [r.segment_id for out in results.values() for r in out]
        expected = [f"bg-{n}/bg/{i}" for n in range(8) for i in range(4)]
        by = {d: sum(r.deployment == d for out in results.values() for r in out) for d in ("base", "green")}
        say(f"  {len(ids)} results for {len(expected)} segments: {by['base']} from base, {by['green']} from green")
        expect(not errors and sorted(ids) == sorted(expected), "every segment got exactly one result")
        backwards = [
            n for n, out in results.items() if [r.deployment for r in out] != sorted(r.deployment for r in out)
        ]
        expect(not backwards, "no stream went back from green to base after the switch")
        admin.do("Rollback", admin_pb.RollbackRequest(reason="demo: swap back"))
        say(f"now: {where(admin.status())}")
        say("audit log:")
        for e in admin.audit():
            print(f"    {e.time} {e.who}: {e.action}: {'; '.join(e.changes)}", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    say("done: " + ("every step as expected" if not failures else f"{len(failures)} step(s) failed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
