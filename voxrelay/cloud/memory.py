"""How the recognizer's process allocates memory: glibc's malloc tuned so that freed memory goes back.

A Whisper call allocates and frees tens of megabytes of activations (tiny.en: about 75 MB in an
encoder pass, its attention scores in blocks of about 50 MB); loading the model allocates and frees
more. With glibc's defaults those blocks stay in the heap of the thread's arena once freed (the mmap
threshold grows to fit them, up to 32 MiB, and every worker thread gets an arena of its own), so the
process's resident memory settles near the largest it ever was. At start ``serve`` therefore sets,
through ``mallopt``:

- ``M_MMAP_THRESHOLD`` 8 MiB: blocks this large are mapped on their own and unmapped when freed
  (this also fixes the threshold, which glibc would otherwise raise after the first large free);
- ``M_TRIM_THRESHOLD`` 8 MiB: free memory at the top of a heap above this is given back;
- ``M_ARENA_MAX`` 2: two arenas for every thread, rather than one per thread.

Measured with ``scripts/bench_throughput.py`` on 2 cores, 8 unpaced streams (README: The recognizer):
RSS after start 273 → 234 MB, peak 468 → 381 MB, for about 15 % more CPU per audio second (fresh
pages to fault in); a 128 KiB threshold gave 352 MB at about 30 % more. A setting already in the
environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_ARENA_MAX``) is left as
it is. Not glibc (musl, macOS): nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


@dataclass(frozen=True)
class MallocTuning:
    mmap_threshold: int = 8 << 20
    trim_threshold: int = 8 << 20
    arena_max: int = 2


def tune_memory(tuning: MallocTuning | None = None) -> list[str]:
    """Apply ``tuning`` to this process (see the module docstring); returns what was set."""
    tuning = tuning or MallocTuning()
    done: list[str] = []
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return done
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    for env, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, tuning.mmap_threshold),
        ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, tuning.trim_threshold),
        ("MALLOC_ARENA_MAX", M_ARENA_MAX, tuning.arena_max),
    ):
        if env in os.environ:
            continue
        if mallopt(param, value) == 1:
            done.append(f"{env.rstrip('_')}={value}")
        else:
            log.warning("mallopt(%d, %d) failed; memory stays at glibc's defaults", param, value)
    return done
