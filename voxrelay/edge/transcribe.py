"""``voxrelay transcribe`` and ``voxrelay listen``: sessions over the uplink, results into sinks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from voxrelay.edge.agent import VadSettings, run_session
from voxrelay.edge.capture.files import WavSource
from voxrelay.edge.drift import EdgeDrift
from voxrelay.edge.interrupt import Interruption
from voxrelay.edge.link.metrics import watch_link
from voxrelay.edge.link.uplink import Uplink, UplinkError, UplinkSettings, open_uplink
from voxrelay.edge.metrics import EdgeMetrics
from voxrelay.edge.observe import SessionObserver, combined
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.resume import MIC_PREFIX, paced_from, plan_file, replay_session, unfinished_elsewhere
from voxrelay.edge.sinks import SUFFIXES, make_sink, wants_interim
from voxrelay.errors import AudioError, VoxrelayError
from voxrelay.signals import stop_signals

INTERRUPTED = 130
"""Exit status after Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)."""


def default_device_id() -> str:
    """A stable id for this machine: its host name, reduced to safe characters."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("-")
    return name[:64] or "edge"


def new_session_id(label: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(label).stem).strip("-")[:48] or "session"
    return f"{stem}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class FileOutcome:
    path: str
    ok: bool
    segments: int = 0
    error: str | None = None
    interrupted: bool = False
    """Ctrl-C or SIGTERM stopped it: the output holds the results delivered until then."""
    heard: float = 0.0
    """Seconds of the file its delivered results reach (the end of the last one)."""
    duration: float = 0.0


@dataclass
class _Delivered:
    segments: int = 0
    heard: float = 0.0
    failed: list[str] = field(default_factory=list)


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """Write a text file through a temporary file in the same folder, renamed into place when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


async def transcribe_file(
    uplink: Uplink,
    path: str,
    *,
    fmt: str,
    vad: VadSettings,
    pace: float | None,
    out: TextIO,
    headers: bool = False,
    observer: SessionObserver | None = None,
    replay_delivered: bool = False,
    interruption: Interruption | None = None,
    interim: bool = False,
) -> FileOutcome:
    """Transcribe one file into ``out``; an unreadable file or a failed segment is reported, not raised.

    A file whose interrupted session is in the uplink's spool is resumed (see voxrelay.edge.resume);
    ``replay_delivered`` writes the results that session already delivered into ``out`` first.
    With ``interruption``, a signal stops the file (see voxrelay.edge.interrupt): the outcome says
    ``interrupted``, and ``out`` holds what was delivered. ``interim``: the sink shows interim results
    (the uplink must ask for them).
    """
    interruption = interruption or Interruption(finish_in_flight=pace is not None)
    try:
        source = WavSource(path, pace=pace)
    except AudioError as err:
        return FileOutcome(path, ok=False, error=err.message)
    if source.missing_seconds > 0:
        print(
            f"voxrelay transcribe: warning: {path} is truncated: its header promises "
            f"{source.missing_seconds:.2f} s more audio than the file holds; transcribing what is there",
            file=sys.stderr,
        )
    plan = plan_file(uplink.spool, path, new_session_id)
    blocks = source.blocks()
    if plan.resumed:  # read unpaced up to the offset, then paced, in the blocks of the paced source
        blocks = paced_from(WavSource(path, block_seconds=source.block_seconds).blocks(), pace, plan.resume_offset)
    sink = make_sink(fmt, out, headers=headers, interim=interim)
    sink.begin(path)
    done = _Delivered()

    def deliver(result: SegmentResult) -> None:
        done.segments += 1
        done.heard = max(done.heard, min(result.end, source.duration))
        sink.write(result)

    for result in plan.delivered if replay_delivered else ():
        deliver(result)

    async def session() -> None:
        async for result in run_session(uplink, plan.session_id, interruption.blocks(blocks), vad, observer=observer):
            if not result.final:
                sink.write(result)
                continue
            if result.error:
                done.failed.append(f"segment at {result.start:.2f} s: {result.error}")
            deliver(result)

    try:
        _, interrupted = await interruption.run(session())
    except AudioError as err:
        return FileOutcome(path, ok=False, segments=done.segments, error=err.message)
    finally:
        sink.end()
    error = "; ".join(done.failed) or None
    return FileOutcome(path, not error, done.segments, error, interrupted, done.heard, source.duration)


async def transcribe(
    paths: Sequence[str],
    settings: UplinkSettings,
    *,
    fmt: str = "text",
    vad: VadSettings | None = None,
    pace: float | None = None,
    output_dir: str | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    metrics: EdgeMetrics | None = None,
    interim: bool | None = None,
    drift: EdgeDrift | None = None,
) -> int:
    """Transcribe ``paths`` one after another; exit status 0 if all succeeded, 1 if some failed, 130 if
    interrupted (Ctrl-C, SIGTERM: the results delivered until then are written, and said to be partial).

    ``interim`` (``--interim``/``--no-interim``; None: the default) as :func:`wants_interim` reads it:
    JSON gets ``"final": false`` objects only when True; text on a terminal, of a paced file, shows
    them as a rewritten line unless False. ``drift``: the edge's input drift detector, fed by every file.
    """
    vad = vad or VadSettings()
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    failures = 0
    show = wants_interim(fmt, interim, None if output_dir else stdout, pace is not None)
    if show:
        settings = replace(settings, interim_results=True)
    interruption = Interruption(finish_in_flight=pace is not None)
    left: Sequence[str] = ()
    try:
        with interruption.installed():
            async with open_uplink(settings) as uplink:
                if metrics is not None:
                    watch_link(metrics.registry, uplink.spool, uplink.stats)
                for other in unfinished_elsewhere(uplink.spool, paths):
                    print(
                        f"voxrelay transcribe: the spool holds an unfinished session of {other.label} "
                        f"({other.pending} segment(s) waiting); transcribe it with the same --spool-dir to finish it",
                        file=stderr,
                    )
                for index, path in enumerate(paths):
                    if interruption.requested:
                        left = paths[index:]
                        break
                    observer = combined(
                        metrics.session(vad.vad) if metrics is not None else None,
                        drift.session() if drift is not None else None,
                    )
                    target = Path(output_dir) / (Path(path).stem + SUFFIXES[fmt]) if output_dir else None
                    if target is not None:
                        with atomic_text(target) as f:
                            outcome = await transcribe_file(
                                uplink,
                                path,
                                fmt=fmt,
                                vad=vad,
                                pace=pace,
                                out=f,
                                observer=observer,
                                replay_delivered=True,
                                interruption=interruption,
                                interim=show,
                            )
                        if (not outcome.ok or outcome.interrupted) and outcome.segments == 0:
                            target.unlink(missing_ok=True)
                    else:
                        outcome = await transcribe_file(
                            uplink,
                            path,
                            fmt=fmt,
                            vad=vad,
                            pace=pace,
                            out=stdout,
                            headers=len(paths) > 1,
                            observer=observer,
                            interruption=interruption,
                            interim=show,
                        )
                    if not outcome.ok:
                        failures += 1
                        named = outcome.error and outcome.error.startswith(path)
                        print(
                            f"voxrelay transcribe: {outcome.error if named else f'{path}: {outcome.error}'}",
                            file=stderr,
                        )
                    if outcome.interrupted:
                        print(f"voxrelay transcribe: interrupted: {_partial(outcome, target)}", file=stderr)
                        left = paths[index + 1 :]
                        break
    except UplinkError as err:
        print(f"voxrelay transcribe: {err.message}", file=stderr)
        return 1
    except asyncio.CancelledError:
        if not interruption.requested:
            raise
        print("voxrelay transcribe: interrupted", file=stderr)
        return INTERRUPTED
    if interruption.requested:
        if left:
            print(f"voxrelay transcribe: interrupted: not transcribed: {', '.join(left)}", file=stderr)
        return INTERRUPTED
    return 1 if failures else 0


def _partial(outcome: FileOutcome, target: Path | None) -> str:
    """What an interrupted file's output holds, in words."""
    where = f"up to {outcome.heard:.1f} s of {outcome.duration:.1f} s"
    if target is None:
        return f"the transcript of {outcome.path} above is partial ({outcome.segments} result(s), {where})"
    if outcome.segments == 0:
        return f"no result of {outcome.path} was delivered; nothing written"
    return f"{target} is partial ({outcome.segments} result(s) of {outcome.path}, {where})"


async def listen(
    settings: UplinkSettings,
    *,
    device: int | str | None,
    fmt: str = "text",
    vad: VadSettings | None = None,
    stdout: TextIO | None = None,
    metrics: EdgeMetrics | None = None,
    interim: bool | None = None,
    drift: EdgeDrift | None = None,
) -> int:
    """Live microphone until Ctrl-C (or SIGTERM); the segment in flight is finished first.

    ``interim``: see :func:`transcribe` (the microphone is live: text on a terminal shows them by default).
    """
    vad = vad or VadSettings()
    stdout = stdout or sys.stdout
    show = wants_interim(fmt, interim, stdout, live=True)
    if show:
        settings = replace(settings, interim_results=True)
    try:
        async with open_uplink(settings) as uplink:
            await _listen(uplink, device, fmt, vad, stdout, metrics, show, drift)
    except UplinkError as err:
        print(f"voxrelay listen: {err.message}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 130
    return 0


async def _listen(
    uplink: Uplink,
    device: int | str | None,
    fmt: str,
    vad: VadSettings,
    stdout: TextIO,
    metrics: EdgeMetrics | None,
    interim: bool = False,
    drift: EdgeDrift | None = None,
) -> None:
    from voxrelay.edge.capture.mic import MicSource

    spool = uplink.spool
    if metrics is not None:
        watch_link(metrics.registry, spool, uplink.stats)
    loop = asyncio.get_running_loop()
    for interrupted in [s for s in spool.sessions() if s.source.startswith(MIC_PREFIX)]:
        replayed = make_sink(fmt, stdout)
        replayed.begin(interrupted.label)
        async for result in replay_session(uplink, interrupted):
            replayed.write(result)
        replayed.end()
    with MicSource(device) as mic:
        print(f"listening on {mic.name}; Ctrl-C to stop", file=sys.stderr, flush=True)

        def stop() -> None:
            mic.stop()
            # A second Ctrl-C stops without waiting for the segment in flight.
            loop.add_signal_handler(signal.SIGINT, lambda: [t.cancel() for t in asyncio.all_tasks(loop)])

        with stop_signals(stop):
            sink = make_sink(fmt, stdout, interim=interim)
            sink.begin(mic.name)
            session_id = new_session_id("mic")
            spool.open_session(session_id, source=f"{MIC_PREFIX}{mic.name.removeprefix(MIC_PREFIX)}", label=mic.name)
            async for result in run_session(
                uplink,
                session_id,
                mic.blocks(),
                vad,
                on_block=None if metrics is None else lambda _: metrics.capture(mic.overflows, mic.dropped_frames),
                observer=combined(
                    None if metrics is None else metrics.session(vad.vad), None if drift is None else drift.session()
                ),
            ):
                sink.write(result)
            sink.end()
            if mic.overflows or mic.dropped_frames:
                print(f"input overflows: {mic.overflows}, dropped frames: {mic.dropped_frames}", file=sys.stderr)


def parse_server(value: str | Sequence[str]) -> str:
    """``--server`` as given (repeated flags are joined into one list): HOST:PORT, A:P,B:P or dns:///NAME:PORT."""
    from voxrelay.edge.link.targets import Target

    joined = value if isinstance(value, str) else ",".join(value)
    return Target.parse(joined, "--server").given


__all__ = ["FileOutcome", "VoxrelayError", "listen", "parse_server", "transcribe", "transcribe_file"]
