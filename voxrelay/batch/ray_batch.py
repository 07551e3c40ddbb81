"""``voxrelay batch --ray``: the files of a batch as tasks on a Ray cluster, one recognizer per worker slot.

Each worker slot is a Ray actor that starts its own recognizer (the embedded one, or connects to
``--server``) once and then takes files one at a time: VAD, segmenter and uplink as in a local batch.
The actor returns the file's results; the driver (this process) writes every output, atomically, and
``summary.json`` after each file, so outputs, summary and resumability are those of a local batch.
Input paths must be readable on every node (shared storage); outputs land where the driver runs.

A worker that dies (its process killed, its node lost) fails only the file it held: Ray restarts the
actor and the driver hands the file out again, up to ``MAX_ATTEMPTS`` times. A file's output is written
only when a worker returned all of it, so none is lost and none is written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, TextIO

from voxrelay.batch.progress import PREFIX, make_reporter
from voxrelay.batch.run import INTERRUPTED, BatchPlan, Job, final_line, finish_file, report_left_out
from voxrelay.batch.summary import BatchMetrics, FileRecord
from voxrelay.batch.worker import FileDone, transcribe_file
from voxrelay.edge.agent import VadSettings
from voxrelay.edge.capture.files import WavSource
from voxrelay.edge.link.settings import UplinkSettings
from voxrelay.edge.metrics import EdgeMetrics
from voxrelay.errors import InvalidArgument, MissingDependency, VoxrelayError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
REVIVE_TRIES = 120  # one a second: how long a dead worker slot has to come back
NAMESPACE = "voxrelay"
RecognizerFactory = Callable[[], AbstractAsyncContextManager[str]]


@dataclass(frozen=True)
class RaySettings:
    """Where the cluster is (``auto``: the one this machine belongs to; ``HOST:PORT``; ``ray://HOST:PORT``)
    and how many worker slots to run (None: one per CPU of the cluster, ``cpus`` each)."""

    address: str
    workers: int | None = None
    cpus: float = 1.0

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise InvalidArgument("--ray: give a cluster address (HOST:PORT, ray://HOST:PORT) or auto")
        if self.workers is not None and not 1 <= self.workers <= 1024:
            raise InvalidArgument(f"--ray-workers: {self.workers} is out of range (1..1024)")
        if not 0 < self.cpus <= 64:
            raise InvalidArgument(f"--ray-cpus: {self.cpus} is out of range (0..64]")


class BatchWorker:
    """A worker slot (run as a Ray actor): one recognizer, one file at a time."""

    def __init__(self, uplink: UplinkSettings | None, vad: VadSettings, window: int, recognizer: Any) -> None:
        self.uplink_settings = uplink
        self.vad = vad
        self.window = window
        self.recognizer: RecognizerFactory | None = recognizer
        self._stack: contextlib.AsyncExitStack | None = None
        self._uplink: Any = None

    def pid(self) -> int:
        return os.getpid()

    async def _connect(self) -> Any:
        from voxrelay.edge.link.uplink import open_uplink

        if self._uplink is not None:
            return self._uplink
        stack = contextlib.AsyncExitStack()
        settings = self.uplink_settings
        if self.recognizer is not None:
            address = await stack.enter_async_context(self.recognizer())
            settings = replace(settings, server=address) if settings else UplinkSettings(address, "ray")
        assert settings is not None
        self._uplink = await stack.enter_async_context(open_uplink(settings))
        self._stack = stack
        return self._uplink

    async def transcribe(self, label: str, path: str) -> FileDone:
        uplink = await self._connect()
        try:
            source = WavSource(path)
        except VoxrelayError as err:
            return FileDone(label, error=err.message)
        return await transcribe_file(uplink, label, source, self.vad, self.window)

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self._uplink = None
        if stack is not None:
            await stack.aclose()


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise MissingDependency("voxrelay batch --ray", "ray", "ray") from err
    return ray


@contextlib.asynccontextmanager
async def _workers(ray: Any, settings: RaySettings, count: int, args: tuple[Any, ...]) -> AsyncIterator[list[Any]]:
    actor = ray.remote(BatchWorker)
    workers = [
        actor.options(
            name=f"voxrelay-batch-{os.getpid()}-{i}",
            namespace=NAMESPACE,
            num_cpus=settings.cpus,
            max_restarts=-1,  # a dead worker slot comes back (and loads its recognizer again)
            max_task_retries=0,  # the driver hands its file out again
        ).remote(*args)
        for i in range(count)
    ]
    try:
        yield workers
    finally:
        closing = [w.close.remote() for w in workers]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 30)
        for worker in workers:
            with contextlib.suppress(Exception):
                ray.kill(worker)


class RayBatch:
    """Hands the plan's files to the worker slots and writes what they return."""

    def __init__(self, ray: Any, plan: BatchPlan, reporter: Any, batch_metrics: BatchMetrics | None) -> None:
        self.ray = ray
        self.plan = plan
        self.reporter = reporter
        self.batch_metrics = batch_metrics
        self.stopping = False

    async def run(self, workers: list[Any]) -> None:
        queue: list[tuple[Job, int]] = [(job, 1) for job in self.plan.jobs]
        queue.reverse()
        running: dict[asyncio.Future[Any], tuple[Any, Job, int]] = {}
        # Worker slots whose process died: Ray restarts them; each gets a file again only once it
        # answers (a call on a restarting actor fails at once instead of waiting for it).
        reviving: dict[asyncio.Future[Any], tuple[Any, int]] = {}
        idle = list(workers)
        try:
            while queue or running:
                while queue and idle and not self.stopping:
                    worker = idle.pop()
                    job, attempt = queue.pop()
                    ref = worker.transcribe.remote(job.item.label, str(job.item.path))
                    running[asyncio.wrap_future(ref.future())] = (worker, job, attempt)
                if not running and (self.stopping or not reviving):
                    break
                done, _ = await asyncio.wait([*running, *reviving], return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    if future in reviving:
                        worker, tries = reviving.pop(future)
                        if self._answered(future):
                            idle.append(worker)
                        elif tries < REVIVE_TRIES:
                            reviving[self._ping(worker, delay=1.0)] = (worker, tries + 1)
                        else:
                            self.reporter.message(f"{PREFIX}: a worker slot did not come back; going on without it")
                        continue
                    worker, job, attempt = running.pop(future)
                    outcome = self._outcome(future, job, attempt)
                    if outcome is None:
                        queue.append((job, attempt + 1))
                        reviving[self._ping(worker)] = (worker, 1)
                    else:
                        idle.append(worker)
                        self._record(job, outcome)
            if not self.stopping:
                for job, _ in reversed(queue):  # every worker slot is gone
                    self._record(job, FileDone(job.item.label, error=f"{job.item.label}: no worker slot is left"))
        finally:
            for future in [*running, *reviving]:
                future.cancel()

    def _ping(self, worker: Any, delay: float = 0.0) -> asyncio.Future[Any]:
        """A call that completes when ``worker`` answers (or fails while it is still coming back)."""

        async def ping() -> Any:
            if delay:
                await asyncio.sleep(delay)
            return await asyncio.wrap_future(worker.pid.remote().future())

        return asyncio.ensure_future(ping())

    def _answered(self, future: asyncio.Future[Any]) -> bool:
        try:
            future.result()
        except self.ray.exceptions.RayActorError:  # ActorUnavailableError while it restarts, or it died again
            return False
        return True

    def _outcome(self, future: asyncio.Future[Any], job: Job, attempt: int) -> FileDone | None:
        """The file's outcome, or None to hand it out again (its worker died)."""
        ray = self.ray
        try:
            return future.result()  # type: ignore[no-any-return]
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError) as err:
            why = type(err).__name__
            if attempt >= MAX_ATTEMPTS:
                return FileDone(job.item.label, error=f"{job.item.label}: {attempt} workers died on it ({why})")
            self.reporter.message(
                f"{PREFIX}: {job.item.label}: the worker died ({why}); handing it out again (attempt {attempt + 1})"
            )
            return None
        except ray.exceptions.RayTaskError as err:
            return FileDone(job.item.label, error=f"{job.item.label}: {type(err.cause).__name__}: {err.cause}")

    def _record(self, job: Job, done: FileDone) -> None:
        record: FileRecord = finish_file(job, self.plan.settings.fmt, done)
        summary = self.plan.summary
        summary.add(job.index, record)
        summary.write()
        self.reporter.audio(job.source.duration)
        self.reporter.done(record)
        if self.batch_metrics is not None:
            self.batch_metrics.record(record)
            self.batch_metrics.pending.dec()


async def run_batch_ray(
    plan: BatchPlan,
    ray_settings: RaySettings,
    uplink_settings: UplinkSettings | None,
    vad: VadSettings | None,
    recognizer: RecognizerFactory | None,
    *,
    quiet: bool = False,
    bar: bool | None = None,
    stderr: TextIO | None = None,
    metrics: EdgeMetrics | None = None,
) -> int:
    """Run ``plan`` on the cluster: 0 if every input is done, 1 if some failed, 130 if interrupted.

    ``recognizer``: a factory of the recognizer each worker slot starts (None: every slot connects to
    ``uplink_settings.server``).
    """
    stderr = stderr or sys.stderr
    summary = plan.summary
    reporter = make_reporter(stderr, quiet=quiet, bar=bar)
    reporter.start(len(plan.jobs), plan.audio_seconds)
    batch_metrics = BatchMetrics(metrics.registry) if metrics is not None else None
    if batch_metrics is not None:
        batch_metrics.pending.set(len(plan.jobs))
    for index in plan.decided:
        record = summary.records[index]
        if batch_metrics is not None:
            batch_metrics.record(record)
        if record.status == "failed":
            reporter.message(f"{PREFIX}: {record.error}")
    report_left_out(summary, reporter)
    summary.write()
    try:
        if plan.jobs:
            ray = _ray()
            await _run_on_cluster(ray, plan, ray_settings, uplink_settings, vad, recognizer, reporter, batch_metrics)
    except VoxrelayError as err:
        summary.error = err.message
    except (asyncio.CancelledError, KeyboardInterrupt):
        summary.interrupted = True
    finally:
        reporter.close()
        summary.write()
    if summary.error is not None:
        print(f"{PREFIX}: {summary.error}", file=stderr)
    if summary.interrupted:
        print(
            f"{PREFIX}: interrupted; finished outputs are kept, run the same command again to do the rest", file=stderr
        )
    if not quiet:
        print(final_line(summary), file=stderr)
    if summary.interrupted:
        return INTERRUPTED
    return 1 if summary.count("failed") or summary.error is not None else 0


async def _run_on_cluster(
    ray: Any,
    plan: BatchPlan,
    settings: RaySettings,
    uplink: UplinkSettings | None,
    vad: VadSettings | None,
    recognizer: RecognizerFactory | None,
    reporter: Any,
    batch_metrics: BatchMetrics | None,
) -> None:
    try:
        ray.init(address=settings.address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise VoxrelayError(f"--ray: cannot join the Ray cluster at {settings.address}: {err}") from err
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        count = settings.workers or max(1, int(cpus // settings.cpus))
        count = min(count, len(plan.jobs))
        reporter.info(f"{PREFIX}: {count} worker slot(s) on the Ray cluster ({cpus:g} CPUs)")
        args = (uplink, vad or VadSettings(), plan.settings.window, recognizer)
        async with _workers(ray, settings, count, args) as workers, _interruptible():
            await RayBatch(ray, plan, reporter, batch_metrics).run(workers)
    finally:
        ray.shutdown()


@contextlib.asynccontextmanager
async def _interruptible() -> AsyncIterator[None]:
    """SIGINT and SIGTERM cancel the batch (files in flight are abandoned, finished outputs stay)."""
    from voxrelay.signals import stop_signals

    task = asyncio.current_task()
    with stop_signals(lambda: task.cancel() if task else None):
        yield
