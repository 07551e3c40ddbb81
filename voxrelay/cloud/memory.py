"""How the recognizer's process allocates memory: glibc's malloc tuned so that freed memory goes back.

A Whisper call allocates and frees tens of megabytes of activations (tiny.en: about 75 MB in an
encoder pass); loading the model allocates and frees more. With glibc's defaults those blocks stay
in the heap of the thread's arena after they are freed (the mmap threshold grows to fit them, and
every worker thread gets an arena of its own), so the process's resident memory settles at the
largest it ever was. At start ``serve`` therefore sets, through ``mallopt``:

- ``M_MMAP_THRESHOLD`` 128 KiB: large blocks are mapped on their own and unmapped when freed (this
  also fixes the threshold, which glibc would otherwise raise after the first large free);
- ``M_TRIM_THRESHOLD`` 128 KiB: free memory at the top of a heap above this is returned at once;
- ``M_ARENA_MAX`` 2: two arenas for every thread, rather than one per thread.

and ``MKL_DISABLE_FAST_MM=1`` before CTranslate2 first allocates: CTranslate2 allocates through
Intel MKL on x86-64, whose own pool would otherwise keep every freed buffer. Measured with
``scripts/bench_throughput.py`` (README: The recognizer); any of them already set in the environment
(``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MKL_DISABLE_FAST_MM``)
is left as it is. Not glibc (musl, macOS): nothing is changed.
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
    mmap_threshold: int = 128 * 1024
    trim_threshold: int = 128 * 1024
    arena_max: int = 2


def tune_memory(tuning: MallocTuning | None = None) -> list[str]:
    """Apply ``tuning`` to this process (see the module docstring); returns what was set."""
    tuning = tuning or MallocTuning()
    done: list[str] = []
    if "MKL_DISABLE_FAST_MM" not in os.environ:
        os.environ["MKL_DISABLE_FAST_MM"] = "1"
        done.append("MKL_DISABLE_FAST_MM=1")
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
