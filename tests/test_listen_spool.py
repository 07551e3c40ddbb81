"""`voxrelay listen --spool-dir` end to end, from a virtual ALSA microphone that speaks a dev-set utterance.

A first run is killed (kill -9) after it has spoken, leaving its segments in the spool; the next run
sends them before it listens again, and prints their results under the old microphone's label.
See tests/test_mic.py for how the virtual microphone works (an ALSA ``file`` PCM over ``null``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, ServerThread, load_pcm16
from tests.test_mic import _missing_audio_stack, file_pcm
from voxrelay.edge.link.spool import Spool, SpoolSettings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_missing_audio_stack() is not None, reason=str(_missing_audio_stack())),
]


def speaking_mic(folder: Path, speech: np.ndarray) -> Path:
    """An ALSA configuration whose default capture device says ``speech`` once, then stays silent."""
    raw = folder / "speech_f32le_mono_16k.raw"
    silence = np.zeros(16000 * 60, dtype=np.float32)
    np.concatenate([silence[:16000], speech.astype(np.float32) / 32768, silence]).astype("<f4").tofile(raw)
    conf = folder / "asound.conf"
    conf.write_text(f"pcm.default {file_pcm(raw)}\n")
    return conf


def listen(server: ServerThread, conf: Path, spool: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf)}
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "voxrelay", "listen", "--server", server.address),
            *("--spool-dir", str(spool), "--format", "json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_listen_spools_and_a_restart_replays_what_a_killed_run_left(
    server: ServerThread, speech_dir: Path, tmp_path: Path
) -> None:
    conf = speaking_mic(tmp_path, load_pcm16(speech_dir / "asr" / "jfk_inaugural_1961.wav"))
    spool = tmp_path / "spool"
    # Run 1 is stopped by SIGKILL as soon as its segment is in the spool (before or after sending it).
    first = listen(server, conf, spool)
    deadline = time.monotonic() + 120
    while first.poll() is None and time.monotonic() < deadline:
        if (spool / "spool.sqlite3").exists():
            with _peek(spool) as depth:
                if depth:
                    break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    with Spool(SpoolSettings(str(spool))) as left:
        (session,) = left.sessions()
        assert session.source == "mic:default" and session.pending >= 1

    # Run 2 first replays run 1's segments, then listens live (and hears the same speech again).
    second = listen(server, conf, spool)
    lines: list[dict] = []
    assert second.stdout is not None
    while len(lines) < 2:
        line = second.stdout.readline()
        assert line, f"listen ended early: {second.communicate(timeout=30)[1]}"
        lines.append(json.loads(line))
    second.send_signal(signal.SIGINT)
    out, err = second.communicate(timeout=120)
    lines += [json.loads(line) for line in out.splitlines() if line.strip()]
    assert second.returncode == 0, err
    assert "Traceback" not in err
    replayed = [o for o in lines if session.session_id in o["segment_id"]]
    live = [o for o in lines if session.session_id not in o["segment_id"]]
    assert replayed and "fellow americans" in " ".join(o["text"] for o in replayed).lower()
    assert live and "fellow americans" in " ".join(o["text"] for o in live).lower()
    assert len({o["segment_id"] for o in replayed}) == len(replayed)  # none twice
    with Spool(SpoolSettings(str(spool))) as after:
        assert after.sessions() == [] and after.depth == 0


class _peek:
    """The spool's depth, read without taking its lock (the running edge holds it)."""

    def __init__(self, spool: Path) -> None:
        import sqlite3

        self.db = sqlite3.connect(f"file:{spool / 'spool.sqlite3'}?mode=ro", uri=True, timeout=5)

    def __enter__(self) -> int:
        try:
            return int(self.db.execute("SELECT COUNT(*) FROM segments").fetchone()[0])
        except Exception:
            return 0

    def __exit__(self, *exc: object) -> None:
        self.db.close()
