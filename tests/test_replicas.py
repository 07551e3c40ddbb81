"""Replicas: the edge balancing over several recognizers itself (gRPC round_robin + health checks), and
haproxy in front of three of them (per-stream balancing); in both, a replica killed mid-run loses nothing
and every segment reaches the output exactly once, with the text a single recognizer gives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.replicas import ROOT, Haproxy, Replica, check_once, segments_of

pytestmark = pytest.mark.slow

LONG = "constructed/vad_bench_dev.wav"  # 145 s, 20 utterances
SHORT = [
    "asr/jfk_inaugural_1961.wav",
    "asr/librispeech_1272-141231-0002.wav",
    "asr/ljspeech_LJ050-0131.wav",
    "asr/picovoice_cheetah_test_en.wav",
]


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[Replica]]:
    started = [Replica().start() for _ in range(3)]
    yield started
    for replica in started:
        replica.stop()


def revive(replicas: list[Replica]) -> None:
    for replica in replicas:
        if not replica.alive:
            replica.start()


def batch(inputs: list[Path], out: Path, server: str, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "voxrelay", "-q", "batch", *map(str, inputs), "-o", str(out)]
    args += ["--format", "json", "--server", server, "--vad", "webrtc", *extra]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(replicas: list[Replica], speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every file through one replica, nothing killed: the segments and texts to expect."""
    out = tmp_path_factory.mktemp("reference")
    inputs = [speech_dir / LONG, *(speech_dir / name for name in SHORT)]
    proc = batch(inputs, out, replicas[0].address)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return {path.stem: segments_of(out / f"{path.stem}.json") for path in inputs}


def kill_busiest(replicas: list[Replica], deadline: float, min_segments: float = 2) -> tuple[Replica, int]:
    """Wait until replicas have recognised ``min_segments`` and one holds a stream; kill the busiest.
    Returns it and how many replicas held streams at that moment."""
    while time.monotonic() < deadline:
        done = sum(r.metric("voxrelay_asr_segments_total") for r in replicas)
        streams = [(r.metric("voxrelay_asr_active_streams"), r) for r in replicas]
        busy = [pair for pair in streams if pair[0] > 0]
        if done >= min_segments and busy:
            victim = max(busy, key=lambda pair: pair[0])[1]
            victim.kill()
            return victim, len(busy)
        time.sleep(0.2)
    raise AssertionError("no replica was busy in time")


def test_round_robin_over_replicas_survives_a_killed_replica(
    replicas: list[Replica], reference: dict[str, Any], speech_dir: Path
) -> None:
    revive(replicas)
    servers = ",".join(r.address for r in replicas)
    args = [sys.executable, "-m", "voxrelay", "transcribe", str(speech_dir / LONG), "--server", servers]
    args += ["--format", "json", "--pace", "6", "--vad", "webrtc"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, _ = kill_busiest(replicas, time.monotonic() + 120, min_segments=3)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    check_once(lines, reference[Path(LONG).stem], LONG)
    assert "reconnecting" in err  # the stream broke with the replica and went on elsewhere
    assert not victim.alive and any(r.metric("voxrelay_asr_segments_total") > 0 for r in replicas if r.alive)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_balances_streams_and_survives_a_killed_replica(
    replicas: list[Replica], reference: dict[str, Any], speech_dir: Path, tmp_path: Path
) -> None:
    revive(replicas)
    lb = Haproxy(replicas).start()
    try:
        inputs = [speech_dir / LONG, *(speech_dir / name for name in SHORT)]
        proc = batch(inputs, tmp_path, lb.address, "--jobs", "3")
        # One batch is one gRPC connection to haproxy; its three streams land on different replicas.
        victim, busy = kill_busiest(replicas, time.monotonic() + 120)
        _, err = proc.communicate(timeout=600)
    finally:
        lb.stop()
    assert proc.returncode == 0, err
    assert busy >= 2, "haproxy sent every stream of the connection to one replica"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [f["status"] for f in summary["files"]] == ["ok"] * len(inputs)
    for path in inputs:
        check_once(segments_of(tmp_path / f"{path.stem}.json"), reference[path.stem], path.name)
    assert not victim.alive
