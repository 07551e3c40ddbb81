"""Local recognizer replicas (`voxrelay serve` subprocesses) and haproxy in front of them, on loopback.

Shared by the replica tests and scripts/bench_scale.py. Every process is started here and stopped by
its PID; a replica can be killed (SIGKILL, as a crashed machine) and started again on the same ports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from voxrelay.quality.wer import NO_ERRORS, word_errors

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One `voxrelay serve` with its gRPC, HTTP (health for haproxy) and metrics ports."""

    def __init__(self, *extra: str) -> None:
        self.port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Replica:
        args = [sys.executable, "-m", "voxrelay", "-q", "serve", "--port", str(self.port)]
        args += ["--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("http on "):
                return self
        raise RuntimeError(f"replica on {self.address} did not start (exit {self.proc.wait()})")

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on this replica's /metrics (0 when the replica is down)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.M)
        return sum(float(v) for v in pattern.findall(text))

    def kill(self) -> None:
        """SIGKILL, as a replica whose machine died: no drain, connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class Haproxy:
    """haproxy with the shipped deploy/haproxy/haproxy.cfg, its addresses set through the environment."""

    def __init__(self, replicas: list[Replica]) -> None:
        if len(replicas) != 3:
            raise ValueError("the shipped haproxy.cfg names three replicas")
        self.port = free_port()
        self.replicas = replicas
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ, VOXRELAY_LB_BIND=self.address)
        for i, replica in enumerate(self.replicas, 1):
            env[f"VOXRELAY_REPLICA_{i}"] = replica.address
            env[f"VOXRELAY_REPLICA_{i}_HTTP"] = str(replica.http_port)
        return env

    def start(self) -> Haproxy:
        binary = shutil.which("haproxy")
        if binary is None:
            raise FileNotFoundError("haproxy is not installed (apt-get install haproxy)")
        self.proc = subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CFG)], env=self.environment())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                time.sleep(2.5)  # rise 2 x inter 1 s: the replicas are marked up
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("haproxy did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def segments_of(document: Path) -> list[dict[str, Any]]:
    data = json.loads(document.read_text())
    return list(data["segments"])


def check_once(segments: list[dict[str, Any]], expected: list[dict[str, Any]], what: str) -> None:
    """Each expected segment exactly once, none failed; the same text (give or take a close call, see
    below) wherever Whisper decoded it by beam search both times (``temperature`` 0). Where its first
    decode looked unreliable, Whisper's temperature fallback samples (``temperature`` above 0), and a
    segment recognised again may read differently; the results say so, and those are compared only for
    being there."""
    sequences = [s["sequence"] for s in segments]
    assert len(sequences) == len(set(sequences)), f"{what}: a segment reached the output twice"
    assert sorted(sequences) == sorted(s["sequence"] for s in expected), f"{what}: segments lost or added"
    assert not [s for s in segments if s.get("error")], f"{what}: a segment failed"
    got = {s["sequence"]: s for s in segments}
    beam = [s for s in expected if s["temperature"] == 0 and got[s["sequence"]]["temperature"] == 0]
    assert len(beam) >= len(expected) // 2, f"{what}: most segments needed the temperature fallback"
    # A beam-search decode is the same run after run in one configuration; across configurations (worker
    # threads, which segments shared a batched model call) int8 arithmetic differs in its last digits, and
    # on short segments a close call between words can go the other way. So each segment must stay close
    # to its counterpart (at most half its words, or three, differ: another segment's text would be far
    # off), and the file as a whole must read nearly the same.
    # Digits read out one by one come back as "0 1 8 0 3" or "01803" alike: compared as one number.
    total = NO_ERRORS
    for s in beam:
        text = got[s["sequence"]]["text"]
        errors = word_errors(_joined_digits(s["text"]), _joined_digits(text))
        total += errors
        assert errors.errors <= max(3, 0.5 * errors.reference_words), (
            f"{what}: segment {s['sequence']}: {text!r} vs {s['text']!r}"
        )
    assert total.wer <= 0.35, f"{what}: the beam-search segments differ by {total.wer:.0%} of their words"


def _joined_digits(text: str) -> str:
    return re.sub(r"(?<=\d)[\s,.-]+(?=\d)", "", text)
