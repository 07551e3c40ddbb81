"""The recognizer's allocator tuning: what it sets, and that settings from the environment win."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CODE = (
    "import json, os\n"
    "from voxrelay.cloud.memory import tune_memory\n"
    "print(json.dumps({'set': tune_memory(), 'mkl': os.environ.get('MKL_DISABLE_FAST_MM')}))\n"
)


def tuned(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "MKL_DISABLE"))}
    result = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, env={**clean, **env}, check=True
    )
    return dict(json.loads(result.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_serve_returns_freed_memory_unless_the_environment_says_otherwise() -> None:
    assert tuned() == {
        "set": [
            "MKL_DISABLE_FAST_MM=1",
            "MALLOC_MMAP_THRESHOLD=131072",
            "MALLOC_TRIM_THRESHOLD=131072",
            "MALLOC_ARENA_MAX=2",
        ],
        "mkl": "1",
    }
    given = tuned(MALLOC_ARENA_MAX="4", MKL_DISABLE_FAST_MM="0")
    assert given == {"set": ["MALLOC_MMAP_THRESHOLD=131072", "MALLOC_TRIM_THRESHOLD=131072"], "mkl": "0"}
