"""How many inference workers, and CPU threads each, the recognizer uses on the machine it runs on.

Measured on 2 cores with tiny.en (int8): CTranslate2 spreads one Whisper call poorly over several
threads (2 threads make an encoder pass 1.6× faster, not 2×; a short decode barely gains), while
two calls on one thread each run side by side at full speed. So the rule is one worker per core,
one thread each, up to ``MAX_AUTO_WORKERS`` workers; past that, each worker gets the remaining
cores as threads (every worker holds its own activations, about 75 MB per tiny.en encoder pass,
so memory grows with workers, not with threads):

    workers = min(cores, MAX_AUTO_WORKERS)        threads = max(1, cores // workers)

On a GPU one worker per device with CTranslate2's own threading. Either number given explicitly
(``--workers``, ``--cpu-threads``) is kept and the other derived from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_AUTO_WORKERS = 4


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Parallelism:
    workers: int
    cpu_threads: int
    cores: int

    def describe(self) -> str:
        return f"{self.workers} worker(s) × {self.cpu_threads} CPU thread(s) on {self.cores} core(s)"


def pick(workers: int = 0, cpu_threads: int = 0, device: str = "cpu", cores: int | None = None) -> Parallelism:
    """Workers × threads for this machine (0 = automatic for either)."""
    if workers < 0 or cpu_threads < 0:
        raise ValueError("workers and cpu_threads must be 0 (automatic) or more")
    cores = available_cores() if cores is None else max(1, cores)
    if device != "cpu":
        return Parallelism(workers or 1, cpu_threads or 1, cores)
    if not workers:
        workers = min(MAX_AUTO_WORKERS, max(1, cores // (cpu_threads or 1)))
    if not cpu_threads:
        cpu_threads = max(1, cores // workers)
    return Parallelism(workers, cpu_threads, cores)
