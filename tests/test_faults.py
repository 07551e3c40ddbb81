"""Faults with real processes on loopback: nothing said is lost, nothing is delivered twice.

Each test streams the same ~52 s talk (five English utterances of the dev set with pauses between)
with ``voxrelay transcribe --pace 4 --spool-dir D --format json`` and breaks something mid-stream:
(a) ``kill -9`` of the server, restarted on the same port a few seconds later; (b) the connection
cut for 10 s by a TCP proxy; (c) ``kill -9`` of the edge, restarted with the same spool. Every
segment of an undisturbed run must arrive exactly once, with the same text.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import ROOT, ServerThread, load_pcm16
from voxrelay.quality.wer import normalize

pytestmark = pytest.mark.slow

UTTERANCES = (
    "jfk_inaugural_1961",
    "librispeech_1272-128104-0000",
    "picovoice_cheetah_test_en",
    "pocketsphinx_goforward",
    "librispeech_1272-141231-0002",
)
PACE = "4"


@pytest.fixture(scope="module")
def talk(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    gap = np.zeros(40_000, dtype=np.int16)  # 2.5 s: long enough that the segmenter cuts there
    parts: list[np.ndarray] = []
    for name in UTTERANCES:
        parts += [gap, load_pcm16(speech_dir / "asr" / f"{name}.wav")]
    path = tmp_path_factory.mktemp("faults") / "talk.wav"
    soundfile.write(str(path), np.concatenate([*parts, gap]), 16000, subtype="PCM_16")
    return path


def texts(lines: list[str]) -> list[tuple[int, str]]:
    """(sequence, text) of each JSON result line, in output order."""
    return [(obj["sequence"], obj["text"]) for obj in map(json.loads, lines) if obj.get("text") is not None]


@pytest.fixture(scope="module")
def baseline(server: ServerThread, talk: Path) -> dict[int, str]:
    run = subprocess.run(
        [sys.executable, "-m", "voxrelay", "transcribe", "--server", server.address, "--format", "json", str(talk)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    result = dict(texts(run.stdout.splitlines()))
    # Words compared without punctuation or case: the model may write "Ask, not!" as well as "ask not".
    said = f" {normalize(' '.join(result[k] for k in sorted(result)))} "
    assert len(result) >= 4 and " ask not " in said, result
    return result


class Edge:
    """``voxrelay transcribe`` as a process, its stdout lines collected (with arrival times) by a thread."""

    def __init__(self, server: str, spool: Path, talk: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "voxrelay", "transcribe", "--server", server, *extra),
                *("--pace", PACE, "--spool-dir", str(spool), "--format", "json", str(talk)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self.arrived: list[float] = []
        self.new_line = threading.Condition()
        self._errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.new_line:
                self.lines.append(line)
                self.arrived.append(time.monotonic())
                self.new_line.notify_all()

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        self._errors.extend(self.proc.stderr)

    def wait_for_lines(self, n: int, timeout: float = 120) -> None:
        with self.new_line:
            assert self.new_line.wait_for(lambda: len(self.lines) >= n or self.proc.poll() is not None, timeout)
        assert len(self.lines) >= n, f"the edge ended early: {self.finish(1)[1]}"

    def wait_quiet(self, seconds: float) -> None:
        """Until no result line has arrived for ``seconds`` (so a kill does not land mid-delivery)."""
        while True:
            with self.new_line:
                last = self.arrived[-1] if self.arrived else time.monotonic()
            left = last + seconds - time.monotonic()
            if left <= 0:
                return
            time.sleep(left)

    def finish(self, timeout: float = 240) -> tuple[int, str]:
        self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return self.proc.returncode, "".join(self._errors)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on"):
        proc.kill()
        raise AssertionError(f"serve did not start: {line!r} {proc.communicate()[1]}")
    return proc


def assert_exactly_once(lines: list[str], baseline: dict[int, str]) -> None:
    got = texts(lines)
    sequences = [sequence for sequence, _ in got]
    assert sorted(sequences) == sorted(baseline), f"delivered {sequences}, expected each of {sorted(baseline)} once"
    for sequence, text in got:
        assert text == baseline[sequence], f"segment {sequence}: {text!r} != {baseline[sequence]!r}"


def test_server_killed_and_restarted_on_the_same_port(talk: Path, baseline: dict[int, str], tmp_path: Path) -> None:
    port = free_port()
    server = start_serve(port)
    try:
        edge = Edge(f"127.0.0.1:{port}", tmp_path / "spool", talk)
        edge.wait_for_lines(1)
        server.send_signal(signal.SIGKILL)
        server.wait(30)
        time.sleep(3)
        server = start_serve(port)
        code, stderr = edge.finish()
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "reconnecting" in stderr, stderr
    assert_exactly_once(edge.lines, baseline)


class TcpProxy:
    """A TCP forwarder on loopback that can cut every connection and refuse new ones for a while."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tcp-proxy", daemon=True)
        self.thread.start()
        self.cut_until = 0.0
        self.cuts = 0
        self.refused = 0
        self._transports: set[asyncio.BaseTransport] = set()
        self._server: asyncio.AbstractServer | None = None
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.cut_until:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for transport in pair:
                self._transports.discard(transport)
                transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    def cut(self, seconds: float) -> None:
        def now() -> None:
            self.cut_until = time.monotonic() + seconds
            self.cuts += len(self._transports)
            for transport in list(self._transports):
                transport.abort()

        self.loop.call_soon_threadsafe(now)

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for transport in list(self._transports):
                transport.abort()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture()
def proxy(server: ServerThread) -> Iterator[TcpProxy]:
    running = TcpProxy(server.port)
    yield running
    running.close()


def test_connection_cut_for_ten_seconds(proxy: TcpProxy, talk: Path, baseline: dict[int, str], tmp_path: Path) -> None:
    metrics = tmp_path / "edge.prom"
    edge = Edge(f"127.0.0.1:{proxy.port}", tmp_path / "spool", talk, "--metrics-file", str(metrics))
    edge.wait_for_lines(1)
    proxy.cut(10.0)
    code, stderr = edge.finish()
    assert code == 0, stderr
    assert proxy.cuts >= 2, "the cut did not break a live connection"
    assert "Traceback" not in stderr and "reconnecting" in stderr, stderr
    assert_exactly_once(edge.lines, baseline)
    samples = {line.split()[0]: float(line.split()[1]) for line in metrics.read_text().splitlines() if line[:1] != "#"}
    assert samples["voxrelay_edge_reconnects_total"] >= 1
    assert samples["voxrelay_edge_spool_segments"] == 0 and samples["voxrelay_edge_spool_dropped_segments_total"] == 0


def test_edge_killed_and_restarted_with_the_same_spool(
    server: ServerThread, talk: Path, baseline: dict[int, str], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    first = Edge(server.address, spool, talk)
    first.wait_for_lines(1)
    first.wait_quiet(0.8)
    first.proc.send_signal(signal.SIGKILL)
    first.finish(30)
    delivered_before = len(first.lines)
    assert delivered_before < len(baseline), "the edge finished before it could be killed"

    second = Edge(server.address, spool, talk)
    code, stderr = second.finish()
    assert code == 0, stderr
    assert "resuming the interrupted session" in stderr and "Traceback" not in stderr, stderr
    assert_exactly_once(first.lines + second.lines, baseline)
    assert len(second.lines) == len(baseline) - delivered_before
    # The finished session is gone from the spool.
    from voxrelay.edge.link.spool import Spool, SpoolSettings

    with Spool(SpoolSettings(str(spool))) as left:
        assert left.sessions() == [] and left.depth == 0
