"""The spool on bad disks, as pure storage: checksums, the delivery journal after a rollback, a full
disk (a small tmpfs, mounted as root) and the way back to it."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.test_spool import result, segment
from voxrelay.edge.link.spool import Spool, SpoolSettings


def test_a_segment_whose_audio_was_damaged_is_not_resent(tmp_path: Path) -> None:
    with Spool(SpoolSettings(str(tmp_path))) as spool:
        spool.open_session("s")
        for i in range(2):
            spool.put(segment("s", i))
    with closing(sqlite3.connect(tmp_path / "spool.sqlite3")) as db:
        db.execute("UPDATE segments SET audio = zeroblob(32000) WHERE sequence = 1")  # the checksum stays
        db.commit()
    with Spool(SpoolSettings(str(tmp_path))) as spool:
        assert [p.sequence for p in spool.pending("s")] == [0]
        (damaged,) = spool.take_damaged("s")
        assert damaged.sequence == 1 and "checksum" in damaged.reason
        assert spool.take_damaged("s") == [] and spool.damaged == 1 and spool.depth == 1


def test_a_rolled_back_database_gets_its_deliveries_back_from_the_journal(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(SpoolSettings(str(directory))) as spool:
        spool.open_session("s", source="/talk.wav", fingerprint="1:2", label="talk.wav")
        for i in range(2):
            spool.put(segment("s", i))
    old = tmp_path / "old"
    shutil.copytree(directory, old)
    with Spool(SpoolSettings(str(directory))) as spool:
        spool.delivered("s", result(segment("s", 0), "first"))
    for name in ("spool.sqlite3", "spool.sqlite3-wal", "spool.sqlite3-shm"):  # the database rolls back
        (directory / name).unlink(missing_ok=True)
        if (old / name).exists():
            shutil.copy(old / name, directory / name)
    with Spool(SpoolSettings(str(directory))) as spool:
        assert spool.delivered_sequences("s") == {0}
        assert [p.sequence for p in spool.pending("s")] == [1]
        assert spool._store.restored == 1
    # A lost database: the session and its delivered result come back from the journal alone.
    for name in ("spool.sqlite3", "spool.sqlite3-wal", "spool.sqlite3-shm"):
        (directory / name).unlink(missing_ok=True)
    with Spool(SpoolSettings(str(directory))) as spool:
        found = spool.find_session("/talk.wav", "1:2")
        assert found is not None and found.session_id == "s"
        assert spool.delivered_sequences("s") == {0} and spool.pending("s") == []
        spool.finish_session("s")
    assert (directory / "delivered.log").read_text() == ""


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_moves_the_spool_into_memory_and_back(tiny_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(SpoolSettings(str(tiny_disk / "spool"))) as spool:
        spool.open_session("s")
        for i in range(12):  # 12 × 64 KB of audio on a 256 KB disk
            spool.put(segment("s", i, seconds=2.0))
        assert spool.in_memory_fallback and spool.fallbacks == 1
        assert [p.sequence for p in spool.pending("s")] == list(range(12)), "nothing was lost on the way"
        assert sum("keeping segments in memory" in r.getMessage() for r in caplog.records) == 1
        for i in range(12):
            spool.delivered("s", result(segment("s", i, seconds=2.0), f"text {i}"))
        spool._store._next_disk_try = 0.0  # the next operation tries the disk again now
        assert spool.depth == 0
        assert not spool.in_memory_fallback, "the spool did not go back to disk once there was room"
        assert spool.delivered_sequences("s") == set(range(12))
    with Spool(SpoolSettings(str(tiny_disk / "spool"))) as again:  # what memory held is on disk now
        assert again.delivered_sequences("s") == set(range(12)) and not again.in_memory_fallback
