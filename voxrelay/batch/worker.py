"""One file through one recognizer: the unit of work a batch worker (local or on Ray) runs.

``transcribe_file`` returns plain data (the results and the file's stats, or its error) and writes
nothing: whoever runs the batch writes the output, once, when the whole file is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from voxrelay.batch.summary import FileStats, file_stats
from voxrelay.edge.agent import VadSettings, run_session
from voxrelay.edge.capture.files import WavSource
from voxrelay.edge.link.uplink import Uplink
from voxrelay.edge.observe import SessionObserver
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.transcribe import new_session_id
from voxrelay.errors import AudioError


@dataclass(frozen=True)
class FileDone:
    """What transcribing one file gave: its results and stats, or the error that stopped it."""

    label: str
    results: tuple[SegmentResult, ...] = ()
    stats: FileStats | None = None
    error: str | None = None


async def transcribe_file(
    uplink: Uplink,
    label: str,
    source: WavSource,
    vad: VadSettings,
    window: int,
    observer: SessionObserver | None = None,
    on_audio: Callable[[float], None] | None = None,
) -> FileDone:
    """Run ``source`` as one session; ``on_audio`` is told how much more of the file has been heard."""
    began = time.perf_counter()
    results: list[SegmentResult] = []
    heard = 0.0
    try:
        async for result in run_session(
            uplink, new_session_id(label), source.blocks(), vad, window=window, observer=observer
        ):
            results.append(result)
            if result.end > heard:
                if on_audio is not None:
                    on_audio(min(result.end, source.duration) - heard)
                heard = min(result.end, source.duration)
    except AudioError as err:
        return FileDone(label, error=err.message)
    finally:
        if on_audio is not None:
            on_audio(max(0.0, source.duration - heard))
    failed = [r for r in results if r.error]
    if failed:
        first = failed[0]
        return FileDone(
            label,
            error=f"{label}: {len(failed)} of {len(results)} segments were not recognised "
            f"(first at {first.start:.2f} s: {first.error}); rerun to retry",
        )
    return FileDone(label, tuple(results), file_stats(source.duration, results, time.perf_counter() - began))
