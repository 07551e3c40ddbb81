"""``voxrelay batch``: transcribe folders of recordings offline, resumably, several files at once.

Each file runs the live path (WavSource → VAD + segmenter → uplink → recognizer) as its own session;
``jobs`` sessions share one channel, so the recognizer always has segments of several files to work
on. A file's output is written only once all its segments are recognised, through a temporary file
renamed into place: an output that exists is complete, and a rerun skips it. Ctrl-C cancels the
files in flight (nothing partial is left), keeps what finished and rewrites ``summary.json``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from voxrelay.batch.inputs import BatchInput, scan_inputs
from voxrelay.batch.progress import PREFIX, Reporter, hours, make_reporter
from voxrelay.batch.summary import (
    BATCH_SUFFIXES,
    SUMMARY_NAME,
    BatchMetrics,
    FileRecord,
    Summary,
    write_output,
)
from voxrelay.batch.worker import FileDone, transcribe_file
from voxrelay.edge.agent import VadSettings
from voxrelay.edge.capture.decoders import formats_read
from voxrelay.edge.capture.files import WavSource
from voxrelay.edge.link.uplink import Uplink, UplinkError, UplinkSettings, open_uplink
from voxrelay.edge.metrics import EdgeMetrics
from voxrelay.edge.sinks import FORMATS
from voxrelay.errors import AudioError, InvalidArgument, VoxrelayError
from voxrelay.signals import stop_signals

# Files in flight at once. With the embedded tiny.en on 2 cores (two inference workers), 2, 4 and 8
# measured alike within the noise of a shared machine, and 1 far slower (scripts/bench_batch.py); 4 keeps
# both workers fed while short files come and go. Against a server with more workers, raise --jobs.
DEFAULT_JOBS = 4
# Segments of one file sent ahead of their results: enough to keep a worker busy, few enough that a
# long file cannot flood the recognizer's queue (its last segment would wait past the result timeout).
DEFAULT_WINDOW = 2
MAX_JOBS = 64
INTERRUPTED = 130


def embedded_workers(jobs: int) -> int:
    """Inference workers for the embedded recognizer: one per core, no more than files in flight."""
    return max(1, min(jobs, os.cpu_count() or 1))


@dataclass(frozen=True)
class BatchSettings:
    """What a batch writes where, and how many files it works on at once."""

    output_dir: str
    fmt: str = "text"
    jobs: int = DEFAULT_JOBS
    window: int = DEFAULT_WINDOW
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise InvalidArgument("--output-dir: must not be empty")
        if Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise InvalidArgument(f"--output-dir: {self.output_dir} is a file, not a folder")
        if self.fmt not in FORMATS:
            raise InvalidArgument(f"--format: {self.fmt!r} is not one of {', '.join(FORMATS)}")
        if isinstance(self.jobs, bool) or not 1 <= self.jobs <= MAX_JOBS:
            raise InvalidArgument(f"--jobs: {self.jobs} is out of range (1..{MAX_JOBS})")
        if not 1 <= self.window <= 64:
            raise InvalidArgument(f"window: {self.window} segments is out of range (1..64)")

    @property
    def suffix(self) -> str:
        return BATCH_SUFFIXES[self.fmt]


@dataclass(frozen=True)
class Job:
    """An input to transcribe: its place in the summary, its opened source, where its output goes."""

    index: int
    item: BatchInput
    source: WavSource
    output: Path


@dataclass
class BatchPlan:
    """The inputs, what is already decided about them (skipped, failed) and the jobs left to run."""

    settings: BatchSettings
    summary: Summary
    jobs: list[Job] = field(default_factory=list)
    decided: list[int] = field(default_factory=list)

    @property
    def audio_seconds(self) -> float:
        return sum(job.source.duration for job in self.jobs)


def plan_batch(inputs: Sequence[str], settings: BatchSettings) -> BatchPlan:
    """Find the inputs, skip those whose output exists (unless overwriting), open the rest's headers."""
    scan = scan_inputs(inputs, settings.suffix)
    items = scan.items
    output_dir = Path(settings.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VoxrelayError(f"--output-dir: cannot create {output_dir}: {err.strerror or err}") from err
    plan = BatchPlan(settings, Summary(output_dir, [item.label for item in items]))
    plan.summary.skipped_by_extension = dict(scan.skipped_by_extension)
    for index, item in enumerate(items):
        if item.problem is not None:
            plan.summary.add(index, FileRecord(item.label, "failed", error=item.problem))
            plan.decided.append(index)
            continue
        output = item.output(output_dir, settings.suffix)
        if output == plan.summary.path:
            problem = f"{item.label}: its output would replace the batch's {SUMMARY_NAME}; rename the file"
            plan.summary.add(index, FileRecord(item.label, "failed", error=problem))
            plan.decided.append(index)
            continue
        if output.exists() and not settings.overwrite:
            plan.summary.add(index, FileRecord(item.label, "skipped", output=str(output)))
            plan.decided.append(index)
            continue
        try:
            source = WavSource(item.path)
        except AudioError as err:
            plan.summary.add(index, FileRecord(item.label, "failed", error=err.message))
            plan.decided.append(index)
            continue
        plan.jobs.append(Job(index, item, source, output))
    return plan


class BatchRun:
    """Runs a plan's jobs, ``settings.jobs`` at a time over one uplink; owns its worker tasks."""

    def __init__(
        self,
        plan: BatchPlan,
        uplink: Uplink,
        vad: VadSettings,
        reporter: Reporter,
        metrics: EdgeMetrics | None = None,
        batch_metrics: BatchMetrics | None = None,
    ) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.uplink = uplink
        self.vad = vad
        self.reporter = reporter
        self.metrics = metrics
        self.batch_metrics = batch_metrics
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        for job in self.plan.jobs:
            self._queue.put_nowait(job)
        count = min(self.settings.jobs, len(self.plan.jobs))
        self._workers = [asyncio.create_task(self._work(), name=f"batch-{i}") for i in range(count)]
        try:
            await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            self.stop()
            await asyncio.gather(*self._workers, return_exceptions=True)

    def stop(self) -> None:
        """Start no more files and cancel those in flight (their temporary outputs are removed)."""
        for task in self._workers:
            task.cancel()

    async def _work(self) -> None:
        summary = self.plan.summary
        while True:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                record = await self._transcribe(job)
            except UplinkError as err:
                # The recognizer, not this file, failed: stop here; a rerun resumes.
                if summary.error is None:
                    summary.error = err.message
                self.stop()
                return
            summary.add(job.index, record)
            summary.write()
            self.reporter.done(record)
            if self.batch_metrics is not None:
                self.batch_metrics.record(record)
                self.batch_metrics.pending.dec()

    async def _transcribe(self, job: Job) -> FileRecord:
        observer = self.metrics.session(self.vad.vad) if self.metrics is not None else None
        done = await transcribe_file(
            self.uplink, job.item.label, job.source, self.vad, self.settings.window, observer, self.reporter.audio
        )
        return finish_file(job, self.settings.fmt, done)


def finish_file(job: Job, fmt: str, done: FileDone) -> FileRecord:
    """Write a finished file's output (atomically) and make its summary record."""
    label = job.item.label
    if done.error is not None or done.stats is None:
        return FileRecord(label, "failed", error=done.error)
    try:
        write_output(job.output, fmt, label, done.results, done.stats)
    except OSError as err:
        return FileRecord(label, "failed", error=f"{job.output}: cannot write: {err.strerror or err}")
    return FileRecord(label, "ok", output=str(job.output), stats=done.stats, truncated=job.source.missing_seconds)


async def run_batch(
    plan: BatchPlan,
    uplink_settings: UplinkSettings | None,
    vad: VadSettings | None = None,
    *,
    quiet: bool = False,
    bar: bool | None = None,
    stderr: TextIO | None = None,
    metrics: EdgeMetrics | None = None,
) -> int:
    """Run ``plan``; 0 if every input is done, 1 if some failed, 130 if interrupted (Ctrl-C, SIGTERM).

    ``uplink_settings`` may be None only when the plan has no jobs left.
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
    skipped = summary.count("skipped")
    if skipped and not quiet:
        reporter.info(f"{PREFIX}: {skipped} file(s) already done, skipped (--overwrite redoes them)")
    report_left_out(summary, reporter)
    summary.write()
    try:
        if plan.jobs:
            assert uplink_settings is not None, "a plan with jobs needs a recognizer"
            # The spool stays in memory (batch refuses --spool-dir): batch resumes by file.
            async with open_uplink(uplink_settings) as uplink:
                await _run_interruptibly(BatchRun(plan, uplink, vad or VadSettings(), reporter, metrics, batch_metrics))
    except VoxrelayError as err:
        summary.error = err.message
    finally:
        reporter.close()
        summary.write()
    if summary.error is not None:
        print(f"{PREFIX}: {summary.error}", file=stderr)
    if summary.interrupted:
        print(
            f"{PREFIX}: interrupted; finished outputs are kept, run the same command again to do the rest",
            file=stderr,
        )
    if not quiet:
        print(final_line(summary), file=stderr)
    if summary.interrupted:
        return INTERRUPTED
    return 1 if summary.count("failed") or summary.error is not None else 0


async def _run_interruptibly(run: BatchRun) -> None:
    """Run with SIGINT and SIGTERM stopping the batch cleanly (in the main thread; elsewhere as is)."""
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        run.plan.summary.interrupted = True
        run.stop()
        # A second Ctrl-C raises KeyboardInterrupt, should stopping ever hang.
        loop.remove_signal_handler(signal.SIGINT)

    with stop_signals(interrupt):
        await run.run()


def report_left_out(summary: Summary, reporter: Reporter) -> None:
    """An information line on the files of the input folders left out for their extension."""
    by_extension = summary.skipped_by_extension
    if by_extension:
        counts = ", ".join(f"{ext} {n}" for ext, n in sorted(by_extension.items()))
        reporter.info(
            f"{PREFIX}: {sum(by_extension.values())} file(s) in the inputs left out by extension ({counts}); "
            f"formats read: {formats_read()}"
        )


def final_line(summary: Summary) -> str:
    t = summary.totals()
    parts = [f"{t['ok']} ok", f"{t['skipped']} skipped", f"{t['failed']} failed"]
    if t["pending"]:
        parts.append(f"{t['pending']} not done")
    return (
        f"{PREFIX}: {t['files']} file(s): {', '.join(parts)}; {hours(t['audio_seconds'])} of audio in "
        f"{hours(t['wall_seconds'])} ({t['x_real_time']:.1f}x real time); summary in {summary.path}"
    )


__all__ = [
    "DEFAULT_JOBS",
    "BatchPlan",
    "BatchSettings",
    "embedded_workers",
    "plan_batch",
    "report_left_out",
    "run_batch",
]
