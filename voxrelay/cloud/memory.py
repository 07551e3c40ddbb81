"""How the recognizer's process allocates memory: glibc's malloc tuned so that freed memory goes back.

A Whisper call allocates and frees tens of megabytes of activations (tiny.en: about 75 MB in an
encoder pass, its attention scores in blocks of about 50 MB); loading the model allocates and frees
more. With glibc's defaults those blocks stay in the heap of the thread's arena once freed (the mmap
threshold grows to fit them, up to 32 MiB, and every worker thread gets an arena of its own), so the
process's resident memory settles near the largest it ever was. At start ``serve`` therefore sets,
through ``mallopt``:

- ``M_MMAP_THRESHOLD``: blocks this large are mapped on their own and unmapped when freed (this also
  fixes the threshold, which glibc would otherwise raise after the first large free);
- ``M_TRIM_THRESHOLD``: free memory at the top of a heap above this is given back;
- ``M_ARENA_MAX`` 2: two arenas for every thread, rather than one per thread.

A small threshold returns more, but every block mapped afresh is faulted in page by page: 1 MiB
cost about 20 % more CPU per audio second than 8 MiB in ``scripts/bench_throughput.py`` (2 cores,
8 streams). Unless transparent huge pages are off, ``serve`` therefore restarts itself once at start
with glibc's ``glibc.malloc.hugetlb=1`` tunable (:func:`restart_with_huge_pages`; tunables are read
only when a process starts), so that large mapped blocks come in 2 MiB pages, and then uses 1 MiB
thresholds: peak RSS under 8 unpaced streams 326–331 MB against 374–395 MB with 8 MiB, at the
same CPU per audio second. Without huge pages the thresholds stay at 8 MiB (glibc's defaults:
468 MB). A setting already in the environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_ARENA_MAX``, ``GLIBC_TUNABLES``) is left as it is. Not glibc (musl, macOS): nothing is changed.

Even so, a heap keeps the free blocks between those it still uses (2 arenas shared by the workers
fragment): after a burst of work ``serve`` held about 195 MB where the same process holds 165 MB once
``malloc_trim`` has handed the free pages back. :class:`IdleTrimmer` does that once the recognizer has
been idle for a moment (not after every batch: trimming between batches cost about 10 % more CPU per
audio second for one stream, every freed page being faulted in again, and did not lower the peak
under load, which is the work in flight: about 75 MB per tiny.en encoder pass per worker).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"
SMALL_THRESHOLD = 1 << 20  # with huge pages
LARGE_THRESHOLD = 8 << 20  # without


@dataclass(frozen=True)
class MallocTuning:
    mmap_threshold: int = LARGE_THRESHOLD
    trim_threshold: int = LARGE_THRESHOLD
    arena_max: int = 2


def huge_pages_available(mode_file: str = THP_MODE) -> bool:
    """Whether the kernel gives transparent huge pages to memory that asks for them (mode not "never")."""
    try:
        with open(mode_file, encoding="ascii") as f:
            mode = f.read()
    except OSError:
        return False
    return "[never]" not in mode


def malloc_huge_pages(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process's glibc malloc was started with huge pages asked for (a hugetlb tunable >= 1)."""
    tunables = (os.environ if environ is None else environ).get("GLIBC_TUNABLES", "")
    for item in tunables.replace(":", " ").split():
        name, _, value = item.partition("=")
        if name == "glibc.malloc.hugetlb":
            return value.strip() not in ("", "0")
    return False


def huge_pages_environment(
    environ: Mapping[str, str] | None = None, available: bool | None = None
) -> dict[str, str] | None:
    """The environment to restart with for huge-page malloc, or None when there is nothing to do: the
    tunable is already set (to anything), the kernel has huge pages off, or the C library is not glibc."""
    environ = os.environ if environ is None else environ
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables or not (sys.platform.startswith("linux") and ctypes.util.find_library("c")):
        return None
    if not (huge_pages_available() if available is None else available):
        return None
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables else HUGE_PAGES_TUNABLE}


def restart_with_huge_pages() -> None:
    """Replace this process with itself (same pid, arguments and interpreter) started with glibc's
    huge-page tunable, if :func:`huge_pages_environment` says so; otherwise return at once.

    Only for a process run as a command (``voxrelay serve``), before it opens sockets or starts threads.
    """
    env = huge_pages_environment()
    if env is None:
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as err:  # carry on as we are
        log.warning("cannot restart with huge-page malloc (%s); memory thresholds stay at 8 MiB", err)


def default_tuning() -> MallocTuning:
    """1 MiB thresholds where malloc has huge pages (see the module docstring), else 8 MiB."""
    if malloc_huge_pages() and huge_pages_available():
        return MallocTuning(SMALL_THRESHOLD, SMALL_THRESHOLD)
    return MallocTuning()


def tune_memory(tuning: MallocTuning | None = None) -> list[str]:
    """Apply ``tuning`` (by default :func:`default_tuning`) to this process; returns what was set."""
    tuning = tuning or default_tuning()
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
    if malloc_huge_pages():
        done.append("huge pages")
    return done


_libc: ctypes.CDLL | None = None


def release_free_memory() -> bool:
    """Give the free pages of every malloc arena back to the system (glibc's ``malloc_trim(0)``).

    Returns whether anything was released; False where the C library has no ``malloc_trim``.
    """
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = _libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


class IdleTrimmer:
    """Releases free memory once the recognizer has stayed idle for ``delay`` seconds.

    ``idle()`` is called whenever the last running work finishes; ``is_idle`` says whether that is
    still so when the delay is over (new work started meanwhile: nothing is done until it goes idle
    again). ``release`` is :func:`release_free_memory` unless a test gives another.
    """

    def __init__(
        self,
        is_idle: Callable[[], bool],
        delay: float = 1.0,
        release: Callable[[], object] = release_free_memory,
    ) -> None:
        self.is_idle = is_idle
        self.delay = delay
        self.release = release
        self.trims = 0
        self._due: float | None = None  # monotonic time of the next trim, if one is armed
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="voxrelay-memory-trim", daemon=True)
        self._thread.start()

    def idle(self) -> None:
        """The recognizer has just become idle: trim after ``delay`` unless work comes first."""
        with self._wake:
            self._due = time.monotonic() + self.delay
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                if self._due is None:
                    self._wake.wait()
                    continue
                left = self._due - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                self._due = None
                if self.is_idle():
                    self.release()
                    self.trims += 1

    def close(self) -> None:
        """Stop the trimmer's thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()


class _Idling(Protocol):
    on_idle: Callable[[], None] | None

    @property
    def idle(self) -> bool: ...


def trim_when_idle(engine: _Idling, delay: float = 1.0) -> IdleTrimmer:
    """Give memory back once ``engine`` (an ``InferenceEngine``) has been idle for ``delay`` seconds."""
    trimmer = IdleTrimmer(lambda: engine.idle, delay)
    engine.on_idle = trimmer.idle
    return trimmer
