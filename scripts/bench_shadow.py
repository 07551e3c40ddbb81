#!/usr/bin/env python3
"""What a shadow costs the stable: end-to-end latency with shadow off and on (mirror 100 %), side by side.

    python scripts/bench_shadow.py                      # 4 streams, 2 rounds of 40 s per condition
    python scripts/bench_shadow.py --streams 4 --seconds 30 --rounds 3

One ``voxrelay serve`` holds two deployments: tiny.en (stable) and multilingual ``base`` (the
candidate). Rounds alternate shadow off / shadow on (``base`` mirroring every segment, at background
CPU priority and dropped first under load), switched over the Admin service, so both conditions share
the process, its warm-up and the machine's background load. In each round ``--streams`` simulated
edge devices (load_test's: a real uplink each, utterances paced in real time) speak for ``--seconds``.
Printed per condition: segments, latency p50/p95 (segment close → result at the edge) and the added
p50 in percent (target ≤ 5 %); the shadow's compared/dropped segments; and whether a sequential pass
over the same utterances returned word-for-word the same texts with the shadow off and on.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from load_test import Device, utterances  # noqa: E402
from rollout_demo import ADMIN_TOKEN, Admin, session  # noqa: E402
from serveproc import start_serve  # noqa: E402

from voxrelay.protos import admin_pb  # noqa: E402


async def load(address: str, streams: int, seconds: float, clips: list[np.ndarray], tag: str) -> list[float]:
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds
    # The same devices (the same utterances in the same order) in every round, each round a new session:
    # a segment id already answered would come from the result cache, not the model.
    fleet = [Device(i, address, clips, stop_at, outage=120, session_id=f"load-{i:03d}-{tag}") for i in range(streams)]
    await asyncio.gather(*(d.run() for d in fleet))
    failed = [d.failure for d in fleet if d.failure] + [f"{k} ×{v}" for d in fleet for k, v in d.errors.items()]
    if failed:
        raise SystemExit(f"the load failed: {failed[:3]}")
    return [x for d in fleet for x in d.latencies]


def shadow(admin: Admin, on: bool) -> None:
    st = admin.status()
    if on and st.phase != "shadow":
        admin.stub.Shadow(
            admin_pb.ShadowRequest(name="base", mirror_percent=100, reason="bench"), metadata=admin.md, timeout=60
        )
    elif not on and st.phase == "shadow":
        admin.stub.Rollback(admin_pb.RollbackRequest(reason="bench"), metadata=admin.md, timeout=60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--seconds", type=float, default=40.0, help="speaking time per round (default %(default)g)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per condition (default %(default)s)")
    args = p.parse_args()
    clips = sorted(utterances(), key=len)[:12]
    work = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    (work / "admin.txt").write_text(f"{ADMIN_TOKEN} bench\n")
    (work / "deployments.yaml").write_text(
        "stable: tiny\n"
        "deployments:\n  tiny: {model: tiny.en}\n  base: {model: base, options: {language: en}}\n"
        "analysis: {interval_seconds: 3600}\n"  # judged never: the shadow stays a shadow
    )
    proc, address = start_serve(
        "--deployments",
        str(work / "deployments.yaml"),
        "--admin-token-file",
        str(work / "admin.txt"),
        "--data-dir",
        str(work / "data"),
        # The texts pass sends its utterances unpaced; on a slow or busy machine they are more than a client's
        # default 30 s of queued inference. The figures are about latency, not admission.
        "--max-queued-work",
        "600",
        "--max-client-queued-work",
        "600",
    )
    try:
        admin = Admin(address)
        # Warm both models, then the same utterances with the shadow off and on, one at a time.
        shadow(admin, True)
        texts = {}
        for on in (False, True):
            shadow(admin, on)
            texts[on] = [r.text for r in session(address, "bench-texts", clips, tag=f"texts-{on}")]
        same = texts[False] == texts[True]
        latencies: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                shadow(admin, on)
                began = time.monotonic()
                got = asyncio.run(load(address, args.streams, args.seconds, clips, f"r{r}-{on}"))
                latencies[on] += got
                print(
                    f"round {r + 1} shadow {'on ' if on else 'off'}: {len(got)} segments, "
                    f"p50 {np.percentile(got, 50):.3f} s ({time.monotonic() - began:.0f} s)",
                    flush=True,
                )
        deployment = next(d for d in admin.status().deployments if d.spec.name == "base")
    finally:
        proc.terminate()
        proc.wait(60)
    print(f"\n{args.streams} paced streams, {args.rounds} rounds of {args.seconds:g} s per condition, tiny.en stable")
    print(f"{'shadow':<22} {'segments':>8} {'p50 s':>7} {'p95 s':>7}")
    p50 = {}
    for on in (False, True):
        xs = latencies[on]
        p50[on] = float(np.percentile(xs, 50))
        label = "off" if not on else "on (base, mirror 100%)"
        print(f"{label:<22} {len(xs):>8} {p50[on]:>7.3f} {np.percentile(xs, 95):>7.3f}")
    added = (p50[True] / p50[False] - 1) * 100
    print(f"added p50: {added:+.1f} % (target ≤ 5 %): {'met' if added <= 5 else 'missed'}")
    print(f"shadow segments: {deployment.shadow_compared} compared, {deployment.shadow_dropped} dropped under load")
    verdict = "identical" if same else "DIFFERENT"
    print(f"returned texts with the shadow off and on: {verdict} ({len(clips)} utterances)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
