"""The edge on bad disks and with a late server, and a server drained while streams are mid-segment —
all with real processes.

The edge runs ``voxrelay transcribe --pace 4 --spool-dir D --format json`` on the five-utterance talk
of test_faults; every segment of an undisturbed run must come out exactly once, with one line (no
traceback) about what went wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import ROOT, ServerThread, load_pcm16
from tests.test_faults import Edge, assert_exactly_once, baseline, free_port, start_serve, talk
from voxrelay.protos import pb, pb_grpc

pytestmark = pytest.mark.slow

__all__ = ["baseline", "talk"]  # fixtures shared with test_faults


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "OperationalError" not in stderr, stderr


@pytest.fixture()
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted for the test (root only); the spool fills it within seconds."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip() or made.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_moves_the_spool_into_memory_and_every_segment_arrives(
    server: ServerThread, talk: Path, baseline: dict[int, str], small_tmpfs: Path
) -> None:
    edge = Edge(server.address, small_tmpfs / "spool", talk)
    code, stderr = edge.finish()
    assert code == 0, stderr
    no_traceback(stderr)
    assert stderr.count("keeping segments in memory") == 1, stderr
    assert_exactly_once(edge.lines, baseline)


def test_an_unusable_spool_dir_is_one_warning_and_the_run_goes_on(
    server: ServerThread, talk: Path, baseline: dict[int, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    edge = Edge(server.address, blocker / "spool", talk)
    code, stderr = edge.finish()
    assert code == 0, stderr
    no_traceback(stderr)
    assert "cannot use" in stderr and stderr.count("keeping segments in memory") == 1, stderr
    assert_exactly_once(edge.lines, baseline)


def interrupted_run(server: ServerThread, spool: Path, talk: Path) -> list[str]:
    """An edge killed (-9) between two results, its spool left as it was."""
    first = Edge(server.address, spool, talk)
    first.wait_for_lines(2)
    first.wait_quiet(0.8)
    first.proc.send_signal(signal.SIGKILL)
    first.finish(30)
    return first.lines


def overwrite_middle(path: Path) -> None:
    """Junk over the middle half of a file (its first and last quarter kept)."""
    size = path.stat().st_size
    assert size >= 16384, f"{path} is only {size} bytes"
    with open(path, "r+b") as f:
        f.seek(size // 4)
        f.write(os.urandom(size // 2))


def test_a_damaged_spool_database_is_moved_aside_and_nothing_prints_twice(
    server: ServerThread, talk: Path, baseline: dict[int, str], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    before = interrupted_run(server, spool, talk)
    # The same session goes on with the server gone, so that segments pile up in the spool...
    offline = Edge(f"127.0.0.1:{free_port()}", spool, talk)
    time.sleep(10)
    offline.proc.send_signal(signal.SIGKILL)
    offline.finish(30)
    assert offline.lines == []
    # ...then the database is made to hold everything (as after a checkpoint) and its middle is damaged.
    with contextlib.closing(sqlite3.connect(spool / "spool.sqlite3")) as db:
        assert db.execute("SELECT COUNT(*) FROM segments").fetchone()[0] >= 1
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    overwrite_middle(spool / "spool.sqlite3")
    second = Edge(server.address, spool, talk)
    code, stderr = second.finish()
    assert code == 0, stderr
    no_traceback(stderr)
    damaged = [line for line in stderr.splitlines() if "is damaged" in line]
    assert len(damaged) == 1 and "moved it to" in damaged[0], stderr
    # The database moved aside (with its -wal and -shm beside it when they were there).
    (aside,) = [p for p in spool.glob("spool.sqlite3.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert str(aside) in damaged[0]
    assert_exactly_once(before + second.lines, baseline)


def test_a_damaged_wal_rolls_nothing_back_that_was_printed(
    server: ServerThread, talk: Path, baseline: dict[int, str], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    before = interrupted_run(server, spool, talk)
    wal = spool / "spool.sqlite3-wal"
    overwrite_middle(wal)
    # What SQLite makes of the damaged pair, seen on a copy: the deliveries it rolled back.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("spool.sqlite3", "spool.sqlite3-wal"):
        shutil.copy(spool / name, copy / name)
    with contextlib.closing(sqlite3.connect(copy / "spool.sqlite3")) as db:
        lost = len(before) - db.execute("SELECT COUNT(*) FROM delivered").fetchone()[0]
    second = Edge(server.address, spool, talk)
    code, stderr = second.finish()
    assert code == 0, stderr
    no_traceback(stderr)
    restored = [line for line in stderr.splitlines() if "restored them from" in line]
    assert len(restored) == (1 if lost > 0 else 0), (lost, stderr)
    assert all(f"{lost} delivered result(s) were missing" in line for line in restored), stderr
    assert_exactly_once(before + second.lines, baseline)


def test_an_edge_started_before_its_server_delivers_everything(
    talk: Path, baseline: dict[int, str], tmp_path: Path
) -> None:
    port = free_port()
    edge = Edge(f"127.0.0.1:{port}", tmp_path / "spool", talk, "--retry-for", "60")
    time.sleep(15)
    assert edge.proc.poll() is None, edge.finish(1)[1]
    assert edge.lines == []
    server = start_serve(port)
    try:
        code, stderr = edge.finish()
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)
    assert code == 0, stderr
    no_traceback(stderr)
    assert "spooling segments" in stderr, stderr
    assert_exactly_once(edge.lines, baseline)


class MidSegment(threading.Thread):
    """A Stream call that sends half of a segment in real time, waits to be told, then sends the rest."""

    def __init__(self, address: str, name: str, audio: bytes) -> None:
        super().__init__(daemon=True)
        self.address, self.name, self.audio = address, name, audio
        self.halfway = threading.Event()
        self.go_on = threading.Event()
        self.responses: list[pb.StreamResponse] = []
        self.error: grpc.RpcError | None = None

    def _requests(self) -> Iterator[pb.StreamRequest]:
        yield pb.StreamRequest(config=pb.SessionConfig(device_id=self.name, session_id="drain"))
        yield pb.StreamRequest(start=pb.SegmentStart(segment_id=f"{self.name}/drain/0"))
        half = len(self.audio) // 2 // 3200 * 3200
        for i in range(0, half, 3200):  # 0.1 s chunks, paced
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=self.audio[i : i + 3200]))
            time.sleep(0.1)
        self.halfway.set()
        self.go_on.wait(60)
        for i in range(half, len(self.audio), 3200):
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=self.audio[i : i + 3200]))
            time.sleep(0.02)
        yield pb.StreamRequest(end=pb.SegmentEnd(segment_id=f"{self.name}/drain/0"))

    def run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            try:
                self.responses = list(pb_grpc.RecognizerStub(channel).Stream(self._requests(), timeout=120))
            except grpc.RpcError as err:
                self.error = err


def test_sigterm_while_four_streams_are_mid_segment_loses_none(speech_dir: Path) -> None:
    audio = load_pcm16(speech_dir / "asr" / "jfk_inaugural_1961.wav")[: 4 * 16000].tobytes()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay", "serve", "--port", str(port), "--grace", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("listening on")
        address = f"127.0.0.1:{port}"
        streams = [MidSegment(address, f"dev{i}", audio) for i in range(4)]
        for stream in streams:
            stream.start()
        for stream in streams:
            assert stream.halfway.wait(60)
        with grpc.insecure_channel(address) as channel:
            unary = pb_grpc.RecognizerStub(channel).Recognize.future(pb.RecognizeRequest(audio=audio), timeout=120)
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            # Draining: a new stream is refused, the open segments go on.
            with pytest.raises(grpc.RpcError) as info:
                config = pb.SessionConfig(device_id="late", session_id="late")
                list(pb_grpc.RecognizerStub(channel).Stream(iter([pb.StreamRequest(config=config)]), timeout=10))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            for stream in streams:
                stream.go_on.set()
            for stream in streams:
                stream.join(120)
            assert "fellow" in unary.result().text.lower()
        for stream in streams:
            assert stream.error is None, stream.error
            results = [r.result for r in stream.responses if r.HasField("result")]
            assert len(results) == 1 and "fellow" in results[0].text.lower(), stream.responses
        _, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, stderr
        no_traceback(stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
