"""The recognizer's allocator tuning: what it sets, that settings from the environment win, and that
freed memory is handed back once the recognizer is idle (never while it works)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import load_pcm16
from voxrelay.cloud.backends.base import DecodeOptions
from voxrelay.cloud.engine import InferenceEngine
from voxrelay.cloud.memory import IdleTrimmer, release_free_memory

CODE = "import json\nfrom voxrelay.cloud.memory import tune_memory\nprint(json.dumps(tune_memory()))\n"


def tuned(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, env={**clean, **env}, check=True
    )
    return list(json.loads(result.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_serve_returns_freed_memory_unless_the_environment_says_otherwise() -> None:
    assert tuned() == ["MALLOC_MMAP_THRESHOLD=8388608", "MALLOC_TRIM_THRESHOLD=8388608", "MALLOC_ARENA_MAX=2"]
    assert tuned(MALLOC_ARENA_MAX="4") == ["MALLOC_MMAP_THRESHOLD=8388608", "MALLOC_TRIM_THRESHOLD=8388608"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_memory_can_be_released() -> None:
    assert release_free_memory() in (True, False)  # glibc: whether pages went back; no error either way


def test_the_trimmer_releases_memory_once_the_recognizer_stays_idle() -> None:
    released = threading.Event()
    trimmer = IdleTrimmer(lambda: True, delay=0.01, release=released.set)
    try:
        trimmer.idle()
        assert released.wait(30)
    finally:
        trimmer.close()
    assert trimmer.trims == 1


def test_the_trimmer_does_nothing_while_work_runs() -> None:
    asked = threading.Event()
    releases: list[int] = []

    def busy() -> bool:
        asked.set()
        return False

    trimmer = IdleTrimmer(busy, delay=0.01, release=lambda: releases.append(1))
    try:
        trimmer.idle()
        assert asked.wait(30)
    finally:
        trimmer.close()  # joins its thread: a release after the check would have happened by now
    assert releases == [] and trimmer.trims == 0


def test_the_engine_says_when_its_last_work_is_done(
    engines: dict[str, Any], speech_dir: Path, english_utterances: list[dict[str, Any]]
) -> None:
    served = next(iter(engines.values()))
    assert served.on_idle is not None  # serve's engines give memory back when idle
    audio = load_pcm16(speech_dir / english_utterances[0]["audio"]).astype(np.float32) / 32768
    engine = InferenceEngine(served.backend, workers=2)
    idle = threading.Event()
    engine.on_idle = idle.set
    try:
        assert engine.idle
        result = asyncio.run(engine.recognize(audio, DecodeOptions(), "client"))
        assert idle.wait(30) and engine.idle
    finally:
        engine.scheduler.close()
    assert result.transcript.text


def test_huge_page_malloc_is_asked_for_once_and_never_against_the_environment() -> None:
    from voxrelay.cloud.memory import huge_pages_environment, malloc_huge_pages

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's tunables")
    env = huge_pages_environment({"PATH": "/bin"}, available=True)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"} and malloc_huge_pages(env)
    other = huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, available=True)
    assert other is not None and other["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"
    assert huge_pages_environment(env, available=True) is None  # already restarted: no second time
    assert huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, available=True) is None
    assert not malloc_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert huge_pages_environment({}, available=False) is None  # the kernel has them off


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_with_huge_pages_the_thresholds_are_small() -> None:
    from voxrelay.cloud.memory import huge_pages_available

    if not huge_pages_available():
        pytest.skip("transparent huge pages are off on this machine")
    assert tuned(GLIBC_TUNABLES="glibc.malloc.hugetlb=1") == [
        "MALLOC_MMAP_THRESHOLD=1048576",
        "MALLOC_TRIM_THRESHOLD=1048576",
        "MALLOC_ARENA_MAX=2",
        "huge pages",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's tunables")
def test_serve_restarts_itself_with_huge_page_malloc_in_the_same_process() -> None:
    from voxrelay.cloud.memory import huge_pages_available

    if not huge_pages_available():
        pytest.skip("transparent huge pages are off on this machine")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay", "-v", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stderr is not None
        line = next(line for line in proc.stderr if "memory:" in line)
        with open(f"/proc/{proc.pid}/environ", "rb") as f:  # the pid started is the one serving
            environ = f.read().split(b"\0")
    finally:
        proc.kill()
        proc.wait()
    assert line.rstrip().endswith(
        "MALLOC_MMAP_THRESHOLD=1048576, MALLOC_TRIM_THRESHOLD=1048576, MALLOC_ARENA_MAX=2, huge pages"
    )
    assert b"GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in environ
