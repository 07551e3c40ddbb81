"""Who gets the model next: per-client queues served in turn, with work measured in estimated seconds.

A :class:`Job` is one piece of inference (a segment, a Recognize call) of one client. The
:class:`FairScheduler` keeps a FIFO queue per client and per priority level and hands jobs to the
engine's workers by *start-time fair queueing*: each client has a virtual clock that advances by the
estimated cost of every job it is given; the next job is the head of the client whose clock is
lowest. A client that was idle starts at the current virtual time, so it cannot bank credit, and a
client flooding the queue only ever delays another client's next job by about one inference per
worker. Costs come from the :class:`~voxrelay.cloud.cost.CostModel`; the scheduler also tracks each
client's *load* (estimated seconds queued or running), which admission control reads.

Priorities are strict between levels (a lower number is served first) and fair within one. ``take``
can hand out several jobs at once that share a batch key (a worker decoding them in one call); with
``max_items=1`` it is plain fair queueing.

Thread-safe: the event loop submits, worker threads take.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """Levels served strictly in this order; fair between clients within a level."""

    FINAL = 0  # a segment's or an utterance's final result: what a client waits for
    SHADOW = 1  # work whose result nobody waits for (a candidate model's comparison)
    INTERIM = 2  # partial results that a newer request makes worthless


@dataclass(eq=False)
class Job:
    """One inference for ``client``; ``payload`` is what the worker runs, opaque to the scheduler."""

    client: str
    cost: float
    payload: Any
    priority: Priority = Priority.FINAL
    # Jobs with equal keys may be decoded together in one call (same model and options).
    batch_key: Hashable = None
    state: str = field(default="new", init=False)  # new → queued → running → done (or withdrawn)


class _Client:
    __slots__ = ("jobs", "load", "queues", "virtual")

    def __init__(self) -> None:
        self.virtual = 0.0
        self.load = 0.0
        self.jobs = 0  # queued or running
        self.queues: dict[Priority, deque[Job]] = {}


class FairScheduler:
    """Per-client, per-priority queues handed out by start-time fair queueing."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._clients: dict[str, _Client] = {}
        self._virtual = 0.0  # the virtual time: the clock of the last job handed out
        self._queued = 0
        self._running = 0
        self._total_load = 0.0
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
            if not any(client.queues.values()):
                client.virtual = max(client.virtual, self._virtual)  # no credit banked while idle
            client.queues.setdefault(job.priority, deque()).append(job)
            client.load += job.cost
            client.jobs += 1
            self._total_load += job.cost
            self._queued += 1
            job.state = "queued"
            self._cond.notify()

    def withdraw(self, job: Job) -> bool:
        """Take a job that no worker has started out of its queue; False if it has started or ended."""
        with self._cond:
            if job.state != "queued":
                return False
            client = self._clients[job.client]
            client.queues[job.priority].remove(job)
            self._queued -= 1
            job.state = "withdrawn"
            self._unload(job)
            return True

    def done(self, job: Job) -> None:
        """A worker finished ``job`` (successfully or not)."""
        with self._cond:
            if job.state != "running":
                return
            job.state = "done"
            self._running -= 1
            self._unload(job)

    def _unload(self, job: Job) -> None:
        client = self._clients[job.client]
        client.jobs -= 1
        client.load = max(0.0, client.load - job.cost)
        self._total_load = max(0.0, self._total_load - job.cost)
        if client.jobs <= 0:
            # Forget idle clients; the virtual time they would restart at is the global one anyway.
            del self._clients[job.client]
        if not self._clients:
            self._total_load = 0.0

    # Taking (worker threads).

    def take(self, max_items: int = 1, timeout: float | None = None) -> list[Job]:
        """Block until work is queued, then return up to ``max_items`` jobs to run together.

        The first job is the fair choice; further ones are the next fair choices among queued jobs
        of the same priority and batch key. Returns [] when closed (or after ``timeout`` seconds).
        """
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        with self._cond:
            if not self._cond.wait_for(lambda: self._queued > 0 or self._closed, timeout):
                return []
            if self._closed:
                return []
            first = self._pick(None)
            assert first is not None
            jobs = [first]
            while len(jobs) < max_items:
                more = self._pick(first)
                if more is None:
                    break
                jobs.append(more)
            return jobs

    def _pick(self, like: Job | None) -> Job | None:
        """Dequeue the fair next job (of ``like``'s priority and batch key, if given)."""
        best: tuple[int, float, str] | None = None
        for name, client in self._clients.items():
            for priority, queue in client.queues.items():
                if not queue:
                    continue
                if like is not None and (priority != like.priority or queue[0].batch_key != like.batch_key):
                    continue
                rank = (int(priority), client.virtual, name)
                if best is None or rank < best:
                    best = rank
        if best is None:
            return None
        client = self._clients[best[2]]
        job = client.queues[Priority(best[0])].popleft()
        self._virtual = max(self._virtual, client.virtual)
        client.virtual += job.cost
        self._queued -= 1
        self._running += 1
        job.state = "running"
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
            return len(self._clients)

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def running(self) -> int:
        return self._running
