"""The recognizer's allocator tuning: what it sets, and that settings from the environment win."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
