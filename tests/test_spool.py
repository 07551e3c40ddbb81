"""The spool on its own: persistence across reopen (and kill -9), bounds, delivery bookkeeping, locking."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from voxrelay.edge.events import VadSummary
from voxrelay.edge.link.spool import Spool, SpooledSegment, SpoolSettings
from voxrelay.edge.results import SegmentResult, Word
from voxrelay.errors import InvalidArgument, VoxrelayError

VAD = VadSummary("webrtc", 0.8, 0.8, -23.5, 0.0, False, 0.6, 0.4)


def segment(session: str, sequence: int, seconds: float = 1.0, created: float | None = None) -> SpooledSegment:
    audio = bytes([sequence % 251]) * int(seconds * 32000)
    return SpooledSegment(
        segment_id=f"dev/{session}/{sequence}",
        session_id=session,
        sequence=sequence,
        offset=sequence * 2.0,
        end=sequence * 2.0 + seconds,
        speech_end=sequence * 2.0 + seconds - 0.4,
        vad=VAD,
        audio=audio,
        created=created if created is not None else 1e12,
    )


def result(seg: SpooledSegment, text: str) -> SegmentResult:
    return SegmentResult(
        seg.segment_id, seg.sequence, text, seg.offset, seg.end, words=(Word("hi", seg.offset, seg.end, 0.9),)
    )


def test_segments_survive_a_reopen_until_delivered(tmp_path: Path) -> None:
    with Spool(SpoolSettings(str(tmp_path))) as spool:
        spool.open_session("s1", source="/data/talk.wav", fingerprint="10:20", label="talk.wav")
        for i in range(3):
            assert spool.put(segment("s1", i)) == []
        spool.delivered("s1", result(segment("s1", 0), "first"))
        assert spool.depth == 2 and spool.pending_bytes == 2 * 32000
    with Spool(SpoolSettings(str(tmp_path))) as spool:
        found = spool.find_session("/data/talk.wav", "10:20")
        assert found is not None and found.session_id == "s1"
        assert found.next_sequence == 3 and found.pending == 2 and found.resume_offset == pytest.approx(5.0)
        assert spool.find_session("/data/talk.wav", "10:21") is None  # the file changed: not the same session
        pending = spool.pending("s1")
        assert [p.sequence for p in pending] == [1, 2]
        assert pending[0] == segment("s1", 1)  # audio, offsets and VAD summary intact
        assert spool.delivered_sequences("s1") == {0}
        (delivered,) = spool.delivered_results("s1")
        assert delivered.text == "first" and delivered.words == (Word("hi", 0.0, 1.0, 0.9),)
        spool.finish_session("s1")
        assert spool.sessions() == [] and spool.depth == 0 and spool.delivered_sequences("s1") == set()


def test_a_committed_segment_survives_kill_9(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import os, signal
        from voxrelay.edge.link.spool import Spool, SpoolSettings
        from tests.test_spool import segment
        spool = Spool(SpoolSettings({str(tmp_path)!r}))
        spool.open_session("s", source="mic:default")
        spool.put(segment("s", 0))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], timeout=60)
    assert run.returncode == -9
    with Spool(SpoolSettings(str(tmp_path))) as spool:  # the lock died with the process
        assert [p.segment_id for p in spool.pending("s")] == ["dev/s/0"]


def test_full_spool_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    with Spool(SpoolSettings(str(tmp_path), max_bytes=3 * 32000)) as spool:
        spool.open_session("s")
        for i in range(3):
            assert spool.put(segment("s", i)) == []
        dropped = spool.put(segment("s", 3))
        assert [d.segment_id for d in dropped] == ["dev/s/0"] and "full" in dropped[0].reason
        dropped = spool.put(segment("s", 4, seconds=2.0))
        assert [d.sequence for d in dropped] == [1, 2]
        assert [p.sequence for p in spool.pending("s")] == [3, 4]
        assert spool.dropped_segments == 3 and spool.dropped_bytes == 3 * 32000
        assert spool.pending_bytes <= 3 * 32000


def test_segments_older_than_the_age_limit_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import voxrelay.edge.link.spool as spool_module

    now = spool_module._now()
    with Spool(SpoolSettings(str(tmp_path), max_age_seconds=60)) as spool:
        spool.open_session("s")
        assert spool.put(segment("s", 0, created=now)) == []
        assert 0 <= spool.oldest_age_seconds < 60
        monkeypatch.setattr(spool_module, "_now", lambda: now + 3600)  # an hour offline
        assert spool.oldest_age_seconds == pytest.approx(3600, abs=1)
        dropped = spool.put(segment("s", 1, created=now + 3600))
        assert [d.sequence for d in dropped] == [0] and "age limit" in dropped[0].reason
        assert spool.depth == 1 and spool.dropped_segments == 1
        monkeypatch.setattr(spool_module, "_now", lambda: now + 7200)
        assert [d.sequence for d in spool.expire()] == [1]
        assert spool.sessions() == []  # an old session with nothing left is forgotten


def test_one_process_per_spool_directory(tmp_path: Path) -> None:
    with Spool(SpoolSettings(str(tmp_path))), pytest.raises(VoxrelayError, match="in use by another voxrelay"):
        Spool(SpoolSettings(str(tmp_path)))
    Spool(SpoolSettings(str(tmp_path))).close()  # released


def test_memory_spool_and_bad_settings(tmp_path: Path) -> None:
    with Spool() as spool:
        assert not spool.persistent
        spool.open_session("s")
        spool.put(segment("s", 0))
        assert spool.depth == 1
    with pytest.raises(InvalidArgument):
        SpoolSettings(max_bytes=10)
    with pytest.raises(InvalidArgument):
        SpoolSettings(max_age_seconds=0)
    not_a_db = tmp_path / "broken"
    not_a_db.mkdir()
    (not_a_db / "spool.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with Spool(SpoolSettings(str(not_a_db))) as spool:  # moved aside, a new spool in its place
        assert spool.damaged == 1 and not spool.in_memory_fallback
        spool.open_session("s")
        assert [s.session_id for s in spool.sessions()] == ["s"]
    (aside,) = not_a_db.glob("spool.sqlite3.damaged-*")
    assert aside.read_bytes().startswith(b"this is not sqlite")
