"""Shared fixtures: the dev speech set (skipped when absent) and a real recognizer on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"
ROOT = Path(__file__).resolve().parents[1]


def read_manifest() -> list[dict[str, Any]]:
    with open(SPEECH / "manifest.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    if not (SPEECH / "manifest.jsonl").is_file():
        pytest.skip(f"the dev speech set is not at {SPEECH}")
    return SPEECH


@pytest.fixture(scope="session")
def manifest(speech_dir: Path) -> list[dict[str, Any]]:
    return read_manifest()


@pytest.fixture(scope="session")
def english_utterances(manifest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        row
        for row in manifest
        if row.get("text_kind") == "human_reference" and row.get("language") == "en" and row["audio"].startswith("asr/")
    ]


def load_pcm16(path: Path) -> np.ndarray:
    import soundfile

    data, rate = soundfile.read(str(path), dtype="int16")
    assert rate == 16000 and data.ndim == 1, f"{path} is not 16 kHz mono"
    return data


class ServerThread:
    """A real recognizer (grpc.aio) on an ephemeral loopback port, run by its own event loop thread."""

    def __init__(self, settings: Any, engines: Any = None, rollout: Any = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self.thread.start()
        from voxrelay.cloud.server import create_server

        self.server, self.port = self.call(create_server(settings, engines, rollout=rollout))
        self.address = f"127.0.0.1:{self.port}"

    def call(self, coro: Any, timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float = 5.0, close_engines: bool = True) -> None:
        self.call(self.server.stop(grace, close_engines=close_engines))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def engines() -> Iterator[dict[str, Any]]:
    """tiny.en on faster-whisper (int8), loaded once for the whole test session."""
    from voxrelay.cloud.server import load_engines
    from voxrelay.cloud.settings import ServerSettings

    loaded = load_engines(ServerSettings(port=0, inference_workers=1))
    yield loaded
    for engine in loaded.values():
        engine.close()


@pytest.fixture(scope="session")
def server(engines: dict[str, Any]) -> Iterator[ServerThread]:
    from voxrelay.cloud.settings import ServerSettings

    running = ServerThread(ServerSettings(port=0, max_segment_seconds=40.0), engines)
    yield running
    running.stop(close_engines=False)


@pytest.fixture(scope="session")
def base_engine() -> Iterator[Any]:
    """Multilingual base on faster-whisper (int8), loaded once (the rollout tests' candidate)."""
    from voxrelay.cloud.server import load_engines
    from voxrelay.cloud.settings import ServerSettings

    loaded = load_engines(ServerSettings(port=0, models=("base",)))
    yield loaded["base"]
    loaded["base"].close()
