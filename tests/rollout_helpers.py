"""Helpers of the rollout tests: sessions of real utterances, devices on a chosen side of a canary."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from tests.conftest import load_pcm16
from voxrelay.protos import pb, pb_grpc

ADMIN_TOKEN = "admin-token-0123456789abcdef"
DEVICE_TOKEN = "device-token-0123456789abcdef"


def utterances(speech_dir: Path, rows: list[dict[str, Any]], n: int) -> list[np.ndarray]:
    """The ``n`` shortest English utterances (16-bit samples)."""
    chosen = sorted(rows, key=lambda r: r["duration_s"])[:n]
    return [load_pcm16(speech_dir / r["audio"]) for r in chosen]


def requests(device: str, session: str, audios: Iterable[np.ndarray], pace: float = 0.0) -> Iterable[pb.StreamRequest]:
    yield pb.StreamRequest(config=pb.SessionConfig(device_id=device, session_id=session))
    offset = 0.0
    for i, audio in enumerate(audios):
        sid = f"{device}/{session}/{i}"
        yield pb.StreamRequest(start=pb.SegmentStart(segment_id=sid, sequence=i, offset_seconds=offset))
        data = audio.astype("<i2").tobytes()
        step = 3200 * 2  # 200 ms
        for j in range(0, len(data), step):
            if pace:
                time.sleep(0.2 / pace)
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=data[j : j + step]))
        yield pb.StreamRequest(end=pb.SegmentEnd(segment_id=sid, vad=pb.VadStats(vad="webrtc")))
        offset += len(audio) / 16000 + 1.0


def session(
    address: str,
    device: str,
    audios: list[np.ndarray],
    session_id: str = "s1",
    metadata: Any = None,
    pace: float = 0.0,
) -> list[pb.RecognitionResult]:
    """Stream ``audios`` as one session's segments; the results in order (errors fail the test)."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        out = []
        for response in stub.Stream(requests(device, session_id, audios, pace), timeout=300, metadata=metadata):
            kind = response.WhichOneof("message")
            assert kind != "error", response.error
            if kind == "result":
                out.append(response.result)
        return out


def wait_for(predicate: Any, timeout: float = 180.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
