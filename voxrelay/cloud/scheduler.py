"""Who gets the model next: per-client queues served in turn, with work measured in estimated seconds.

A :class:`Job` is one piece of inference (a segment, a Recognize call) of one client. The
:class:`FairScheduler` keeps a FIFO queue per client and per priority level and hands jobs to the
engine's workers by *start-time fair queueing*: each client has a virtual clock that advances by the
estimated cost of every job it is given; the next job is the head of the client whose clock is
lowest. A client that was idle starts at the current virtual time, so it cannot bank credit, and a
client flooding the queue only ever delays another client's next job by about one inference per
worker. Costs come from the :class:`~voxrelay.cloud.cost.CostModel`; the scheduler also tracks each
client's *load* (estimated seconds queued or running), which admission control reads.

**Shares of the workers.** A client with jobs queued or running, or one whose last job ended less
than ``memory`` seconds ago (a stream between two segments is still there), is *active*. With ``n``
active clients, one client's final work runs in at most ``ceil(workers / n)`` batches at once, and a
batch takes at most one job of each client, each of an estimated cost within ``BATCH_COST_SPREAD``
of the batch's first job (on a CPU a batch costs about the sum of its jobs and lasts as long as its
longest). So a flood can neither take every worker nor fill another client's batch, a long prompt
never holds up a short segment in the same batch, and another client's next segment finds a worker
free. A worker left idle by this waits for a share to come free (the scheduler is not
work-conserving while another client is active); a lone client batches freely. A client's clock is
charged its job's *measured* inference time once it is done (until then the estimate), so work the
cost model underestimates is paid for all the same. A *heavy* job (a long prompt: many decoder steps
per token of output) is decoded alone, and one client runs one of them at a time, whoever else is
there: a client that arrives finds a worker that no long prompt holds.

Priorities are strict between levels (a lower number is served first) and fair within one: each
level keeps its own virtual clocks, so work at one level neither earns nor costs a client turns at
another. ``take`` can hand out several jobs at once that share a batch key (a worker decoding them in
one call), and can *linger* a few milliseconds for more such jobs to arrive; with ``max_items=1`` it
is plain fair queueing.

Interim work (``Priority.INTERIM``) is what load sheds first: it counts in no client's load (so it
never makes admission control refuse a final segment), a worker takes it only while ``interim_reserve``
other workers stay idle for final work, and ``shed_interim`` withdraws the queued ones at once (the
engine calls it when final work has to queue because every worker is busy, and tells their callers).
Speculative work (``Priority.SPECULATIVE``, a segment's likely final result decoded during a pause)
keeps the same reserve of idle workers, and counts in its client's load and share like final work.

Thread-safe: the event loop submits, worker threads take.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

# With several active clients, a batch's jobs cost within this factor of its first job's (estimated).
BATCH_COST_SPREAD = 2.0


class Priority(IntEnum):
    """Levels served strictly in this order; fair between clients within a level."""

    FINAL = 0  # a segment's or an utterance's final result: what a client waits for
    SPECULATIVE = 1  # a segment's likely final result, decoded during a pause before its end
    SHADOW = 2  # work whose result nobody waits for (a candidate model's comparison)
    INTERIM = 3  # partial results that a newer request makes worthless


# Work a worker takes only while ``interim_reserve`` other workers stay idle for final work.
_RESERVED = frozenset({Priority.SPECULATIVE, Priority.INTERIM})


@dataclass(eq=False)
class Job:
    """One inference for ``client``; ``payload`` is what the worker runs, opaque to the scheduler."""

    client: str
    cost: float
    payload: Any
    priority: Priority = Priority.FINAL
    # Jobs with equal keys may be decoded together in one call (same model and options).
    batch_key: Hashable = None
    # A long prompt: decoded alone, one at a time per client.
    heavy: bool = False
    state: str = field(default="new", init=False)  # new → queued → running → done (or withdrawn)
    taken_at: float = field(default=0.0, init=False)  # perf_counter() when a worker took it
    # Measured inference seconds (set by the worker before ``done``); the client is charged this.
    charged: float | None = field(default=None, init=False)
    # The batch it runs in: jobs of each client still running there (one dict shared by the batch's jobs).
    batch: dict[str, int] | None = field(default=None, init=False, repr=False)

    @property
    def counted(self) -> bool:
        """Whether the job counts in its client's load (interim work does not)."""
        return self.priority != Priority.INTERIM


class _Client:
    __slots__ = ("batches", "heavy", "jobs", "last_active", "load", "queues", "virtual")

    def __init__(self) -> None:
        self.virtual: dict[Priority, float] = {}
        self.load = 0.0
        self.jobs = 0  # queued or running
        self.batches = 0  # running batches (not interim ones) holding one of its jobs
        self.heavy = 0  # heavy jobs running
        self.last_active = time.monotonic()
        self.queues: dict[Priority, deque[Job]] = {}


class FairScheduler:
    """Per-client, per-priority queues handed out by start-time fair queueing.

    ``interim_reserve``: how many workers must stay idle (waiting in ``take``) besides the one that
    takes interim work, so that a final segment arriving meanwhile finds a worker at once.
    ``workers``: the threads that call ``take`` (None: no share of the workers is kept);
    ``memory``: seconds a client counts as active after its last job.
    """

    def __init__(self, interim_reserve: int = 0, workers: int | None = None, memory: float = 30.0) -> None:
        if interim_reserve < 0 or (workers is not None and workers < 1) or memory < 0:
            raise ValueError("interim_reserve and memory must not be negative, workers at least 1")
        self.interim_reserve = interim_reserve
        self.workers = workers
        self.memory = memory
        self._cond = threading.Condition()
        self._clients: dict[str, _Client] = {}
        # The virtual time of each level: the clock of the last job handed out there.
        self._virtual: dict[Priority, float] = {}
        self._queued = 0
        self._queued_interim = 0
        self._running = 0
        self._total_load = 0.0
        self._idle = 0  # workers waiting in take()
        self._lingering: list[tuple[Priority, Hashable]] = []  # batches held open for more jobs
        self._closed = False

    # Submitting and withdrawing (event loop).

    def submit(self, job: Job) -> None:
        if job.state != "new":
            raise ValueError("a job is submitted once")
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            client = self._clients.get(job.client)
            if client is None:
                client = self._clients[job.client] = _Client()
            client.last_active = time.monotonic()
            level = job.priority
            if not client.queues.get(level):  # no credit banked while idle
                client.virtual[level] = max(client.virtual.get(level, 0.0), self._virtual.get(level, 0.0))
            client.queues.setdefault(level, deque()).append(job)
            if job.counted:
                client.load += job.cost
                self._total_load += job.cost
            client.jobs += 1
            self._queued += 1
            self._queued_interim += level == Priority.INTERIM
            job.state = "queued"
            self._cond.notify_all()

    def shed_interim(self) -> list[Job]:
        """Withdraw every queued interim job and return them (final work is waiting for a worker)."""
        with self._cond:
            shed = [job for client in self._clients.values() for job in client.queues.get(Priority.INTERIM, ())]
            for job in shed:
                self._withdraw(job)
            return shed

    def withdraw(self, job: Job) -> bool:
        """Take a job that no worker has started out of its queue; False if it has started or ended."""
        with self._cond:
            if job.state != "queued":
                return False
            self._withdraw(job)
            return True

    def _withdraw(self, job: Job) -> None:
        self._clients[job.client].queues[job.priority].remove(job)
        self._queued -= 1
        self._queued_interim -= job.priority == Priority.INTERIM
        job.state = "withdrawn"
        self._unload(job)

    def done(self, job: Job) -> None:
        """A worker finished ``job`` (successfully or not); its client is charged ``job.charged`` if set."""
        with self._cond:
            if job.state != "running":
                return
            job.state = "done"
            self._running -= 1
            client = self._clients[job.client]
            if job.charged is not None:  # the measured time replaces the estimate
                level = job.priority
                client.virtual[level] = client.virtual.get(level, 0.0) + max(0.0, job.charged) - job.cost
            if job.batch is not None:
                job.batch[job.client] -= 1
                if job.batch[job.client] == 0 and job.counted:
                    client.batches -= 1
            client.heavy -= job.heavy
            self._unload(job)
            self._cond.notify_all()  # a share of the workers may have come free

    def _unload(self, job: Job) -> None:
        client = self._clients[job.client]
        client.jobs -= 1
        client.last_active = time.monotonic()
        if job.counted:
            client.load = max(0.0, client.load - job.cost)
            self._total_load = max(0.0, self._total_load - job.cost)
        if not any(c.jobs for c in self._clients.values()):
            self._total_load = 0.0

    def _forget_idle(self) -> None:
        """Drop the clients without jobs whose last one ended over ``memory`` seconds ago."""
        horizon = time.monotonic() - self.memory
        for name in [n for n, c in self._clients.items() if c.jobs <= 0 and c.last_active < horizon]:
            del self._clients[name]

    def _worker_share(self) -> tuple[int | None, bool]:
        """(batches one client may run in at once, or None for any; whether several clients are active)."""
        self._forget_idle()
        active = max(1, len(self._clients))
        return None if self.workers is None else math.ceil(self.workers / active), active > 1

    @staticmethod
    def _may_join(batch: list[Job], job: Job) -> bool:
        """Whether ``job`` may join ``batch`` while several clients are active: none of its client's jobs
        is there yet, and it costs about what the batch's first job does."""
        if not batch:
            return True
        first = batch[0]
        return not (first.batch or {}).get(job.client) and (
            first.cost / BATCH_COST_SPREAD <= job.cost <= first.cost * BATCH_COST_SPREAD
        )

    # Taking (worker threads).

    def take(
        self,
        max_items: int = 1,
        timeout: float | None = None,
        linger: float = 0.0,
        more_coming: Callable[[Job], bool] | None = None,
    ) -> list[Job]:
        """Block until work is queued, then return up to ``max_items`` jobs to run together.

        The first job is the fair choice; further ones are the next fair choices among queued jobs
        of the same priority and batch key. When fewer than ``max_items`` are queued and
        ``more_coming(first)`` says more may come, wait up to ``linger`` seconds for them (meanwhile
        other workers leave jobs of that priority and key to this batch). Returns [] when closed (or
        after ``timeout`` seconds).
        """
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        with self._cond:
            self._idle += 1
            self._cond.notify_all()  # one more idle worker: interim work may have become allowed
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while True:
                    if self._closed:
                        return []
                    first = self._pick([])
                    if first is not None:
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return []
                    # Woken by new work and finished jobs; at least every second, for shares that
                    # change as idle clients are forgotten.
                    self._cond.wait(1.0 if remaining is None else min(1.0, remaining))
            finally:
                self._idle -= 1
            jobs = [first]
            self._fill(jobs, max_items)
            if len(jobs) < max_items and linger > 0 and (more_coming is None or more_coming(jobs[0])):
                self._linger(jobs, max_items, linger)
            now = time.perf_counter()
            for job in jobs:
                job.taken_at = now
            return jobs

    def _fill(self, jobs: list[Job], max_items: int) -> None:
        while len(jobs) < max_items and not jobs[0].heavy:
            more = self._pick(jobs)
            if more is None:
                return
            jobs.append(more)

    def _linger(self, jobs: list[Job], max_items: int, linger: float) -> None:
        deadline = time.monotonic() + linger
        key = (jobs[0].priority, jobs[0].batch_key)
        self._lingering.append(key)
        try:
            while len(jobs) < max_items and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)
                self._fill(jobs, max_items)
        finally:
            self._lingering.remove(key)
            self._cond.notify_all()

    def _best(self, batch: list[Job]) -> tuple[Priority, str] | None:
        """The level and client of the fair next job for ``batch``. For a new batch (``batch`` empty), any
        job this worker may take: not interim work without the reserve of idle workers, not work that a
        lingering batch is waiting for. For more of a batch, one of its first job's priority and batch
        key. Either way from a client within its share of the workers, that may join the batch."""
        like = batch[0] if batch else None
        interim_ok = self._idle - 1 >= self.interim_reserve
        worker_share, shared = self._worker_share()
        held = (like.batch or {}) if like is not None else {}
        best: tuple[int, float, str] | None = None
        for name, client in self._clients.items():
            at_share = name not in held and worker_share is not None and client.batches >= worker_share
            for priority, queue in client.queues.items():
                if not queue or (at_share and priority != Priority.INTERIM):
                    continue
                if queue[0].heavy and (client.heavy or batch):  # alone, one at a time per client
                    continue
                if shared and not self._may_join(batch, queue[0]):
                    continue
                if like is not None:
                    if priority != like.priority or queue[0].batch_key != like.batch_key:
                        continue
                elif (priority in _RESERVED and not interim_ok) or (
                    priority,
                    queue[0].batch_key,
                ) in self._lingering:
                    continue
                rank = (int(priority), client.virtual.get(priority, 0.0), name)
                if best is None or rank < best:
                    best = rank
        return None if best is None else (Priority(best[0]), best[2])

    def _pick(self, batch: list[Job]) -> Job | None:
        """Dequeue the fair next job for ``batch`` (see ``_best``) and count it in that batch."""
        found = self._best(batch)
        if found is None:
            return None
        level, name = found
        client = self._clients[name]
        job = client.queues[level].popleft()
        clock = client.virtual.get(level, 0.0)
        self._virtual[level] = max(self._virtual.get(level, 0.0), clock)
        client.virtual[level] = clock + job.cost
        self._queued -= 1
        self._queued_interim -= level == Priority.INTERIM
        self._running += 1
        job.state = "running"
        job.batch = batch[0].batch if batch and batch[0].batch is not None else {}
        if not job.batch.get(name) and job.counted:
            client.batches += 1
        client.heavy += job.heavy
        job.batch[name] = job.batch.get(name, 0) + 1
        return job

    def close(self) -> list[Job]:
        """Stop handing out work; returns the jobs that were still queued (their callers must be told)."""
        with self._cond:
            self._closed = True
            left = [job for client in self._clients.values() for q in client.queues.values() for job in q]
            for job in left:
                job.state = "withdrawn"
            for client in self._clients.values():
                client.queues.clear()
            self._queued = 0
            self._queued_interim = 0
            self._cond.notify_all()
            return left

    # Observation (admission control, metrics).

    def load(self, client: str) -> float:
        """Estimated seconds of ``client``'s work queued or running."""
        with self._cond:
            found = self._clients.get(client)
            return found.load if found is not None else 0.0

    @property
    def total_load(self) -> float:
        with self._cond:
            return self._total_load

    @property
    def busy_clients(self) -> int:
        """Clients with work queued or running."""
        with self._cond:
            return sum(1 for client in self._clients.values() if client.jobs > 0)

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def queued_final(self) -> int:
        """Queued jobs other than interim ones."""
        return self._queued - self._queued_interim

    @property
    def running(self) -> int:
        return self._running
