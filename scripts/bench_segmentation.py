#!/usr/bin/env python3
"""Segmentation benchmark: the edge's VAD + segmenter on the dev set and on audio made unlike it.

    python scripts/bench_segmentation.py                 # full run (about 14 min of CPU)
    python scripts/bench_segmentation.py --quick         # 6 utterances, every condition (about 3.5 min of CPU)
    python scripts/bench_segmentation.py --set hangover_seconds=0.5 --systems current,old --json out.json
    python scripts/bench_segmentation.py --quick --paced --systems current,nospec   # latency measured live

Groups of files (rows of the table):

- ``dev``: the English utterances of the dev set with a human reference (``asr/``), each file on its
  own, for WER and latency; VAD frame scores, segment lengths and pauses on the labelled files (every
  manifest row with ``speech``: ``vad/`` and ``constructed/vad_bench_dev.wav``).
- ``turn-taking``: the same utterances, cut to their labelled speech (± 50 ms, 5 ms fades), shuffled
  and concatenated with pauses of 0.3-1.2 s (speech end to next speech start; one drawn uniformly in
  each of as many equal bins of that range as there are pauses, so the range is covered), 1 s
  of silence before the first and 3 s after the last.
- ``far-field``: ``turn-taking`` with each utterance attenuated by 20-35 dB (drawn per utterance),
  ``reverb 50 50 100`` over the whole file and room noise (sox ``synth brownnoise`` + ``pinknoise``)
  mixed in at -65 dBFS RMS.
- ``telephone``: ``turn-taking`` band-limited with ``sinc 300-3400`` and resampled to 8 kHz (the edge
  resamples it back to 16 kHz, as it would a phone recording).
- ``fast``: each utterance at twice its speed (``tempo -s 2.0``), with the same pauses.

Constructed audio is made with sox into ``--cache`` (outside the repository), reproducibly: one plan
(order, pauses, attenuations) drawn with ``random.Random(--seed)`` serves every condition, sox runs with
``-R`` (repeatable noise and dither), and a file is rebuilt only when its plan changes. Labels come
from where each utterance was placed: its speech span in its source file is the dev set's label (the
``utterances`` of ``constructed/vad_bench_dev.wav``: energy onsets/offsets checked by eye) where one
exists, else an energy trim of the file (10 ms RMS above max(peak - 30 dB, 10th percentile + 15 dB,
-55 dBFS)); the table's footer says which were used. Under ``fast`` the span is scaled by the clip's
measured length ratio. The reference transcript of a concatenation is its utterances' references
joined in playback order.

Systems (the rows of each group):

- ``current``: voxrelay with today's ``SegmenterSettings()`` (and ``--set`` overrides);
- ``nospec``: the same with ``speculate_seconds=0``: the edge reports no pauses, so the recognizer never
  speculates (the same segments and texts as ``current``; only ``--paced`` tells them apart);
- ``old``: voxrelay with the segmenter values before endpointing changed (:data:`OLD_SEGMENTER`:
  hangover 1.8 s, no length-aware closing; the detectors are today's);
- ``fw``: faster-whisper ``transcribe(vad_filter=True)`` with its default ``VadOptions``;
- ``fw300``: the same with ``min_silence_duration_ms=300``.

Figures:

- *WER alone*: the recognizer (tiny.en int8, beam 5, through voxrelay's ``Recognize``) on each whole
  utterance (its clip in that group's audio), the same model every system uses; shown in every row.
- *WER e2e*: voxrelay: the file through VAD, segmenter, uplink and the embedded recognizer
  (``run_session``, the path of ``voxrelay transcribe``), the results' texts joined; faster-whisper:
  its ``transcribe(vad_filter=True)`` on the whole file. Pooled WER (Whisper's English normaliser,
  ``jiwer``) of the joined hypothesis against the joined references.
- *VAD P/R/F1*: 10 ms frames of the segments sent (voxrelay, pre- and post-roll included) or of
  ``get_speech_timestamps`` (faster-whisper) against the labelled speech, no collar
  (``voxrelay.quality.vadscore``), pooled over the group's labelled files.
- *segment p50/p95/max*: lengths of those segments, in seconds.
- *bridged >= 1 s*: of the pauses of at least 1 s between labelled speech regions, how many lie wholly
  inside one segment.
- *EoS -> result p50/p95*, voxrelay only, per utterance: true end of speech to its final result as a
  user streaming at real time would wait, computed without waiting in real time. Files are read
  unpaced in 20 ms blocks (the live block size) followed by 3 s of digital silence (a live input goes
  on after the speaker stops; without it the end of the file would close the segment early). Each
  segment's *close* is the audio time of the end of the block after which the segmenter closed it
  (hangover and VAD lag included). Segments go to the recognizer one at a time (``window=1``), so
  each one meets an idle server, and *close -> result* is the wall time from the uplink taking the
  segment's close to its result arriving. For an utterance whose labelled speech ends at ``t``, the
  segment holding its end is the last one opened before ``t``, and its latency is
  ``close - t + (close -> result)``. At real-time pace the audio up to the close has already been
  streamed when the close comes, so this is what ``transcribe --pace 1.0`` waits, less the network
  jitter of streaming. faster-whisper transcribes whole files, so it has no such figure.

  With ``--paced`` it is measured instead: each file is streamed at real time (a block is handed to the
  edge once its last sample would have been spoken), segments go as they close, and the latency of an
  utterance is the wall time from the arrival of the block holding its end of speech to its final result
  (*close -> result* is that less the end of speech -> close). Only then does the recognizer speculate
  at pauses (the edge reports pauses of live audio only): *speculative* counts the final results that
  were decoded during the pause before their segment's end, and *extra work* is the model time of wasted
  speculations over that of the final results (the recognizer's own counters).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from voxrelay import SAMPLE_RATE  # noqa: E402
from voxrelay.cli_recognizer import temperatures  # noqa: E402
from voxrelay.edge.agent import DEFAULT_VAD, VADS, VadSettings, run_session  # noqa: E402
from voxrelay.edge.capture.files import LIVE_BLOCK_SECONDS, WavSource  # noqa: E402
from voxrelay.edge.events import AudioBlock, SegmentClosed, SegmentEvent, SegmentOpened  # noqa: E402
from voxrelay.edge.link.uplink import Uplink, UplinkSettings, open_uplink  # noqa: E402
from voxrelay.edge.results import SegmentResult  # noqa: E402
from voxrelay.edge.transcribe import new_session_id  # noqa: E402
from voxrelay.edge.vad.segmenter import SegmenterSettings  # noqa: E402
from voxrelay.edge.vad.speech import SegmenterStats  # noqa: E402
from voxrelay.errors import VoxrelayError  # noqa: E402
from voxrelay.quality.evaluate import percentile  # noqa: E402
from voxrelay.quality.runner import recognize_alone  # noqa: E402
from voxrelay.quality.vadscore import score_vad, summarize  # noqa: E402
from voxrelay.quality.wer import NO_ERRORS, WordErrors, word_errors  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segbench_conditions import (  # noqa: E402
    CONDITIONS,
    PAUSES,
    SEED,
    BenchError,
    BenchFile,
    Regions,
    build_condition,
    dev_files,
    dev_pieces,
    make_plan,
    read_samples,
)

DEFAULT_SPEECH = ROOT.parent / "shared" / "data" / "speech"
DEFAULT_CACHE = Path.home() / ".cache" / "voxrelay" / "bench_segmentation"
SYSTEMS = ("current", "nospec", "old", "fw", "fw300")
STREAM_TAIL_SECONDS = 3.0  # silence streamed after each file (latency)
LONG_PAUSE = 1.0
QUICK_IDS = (
    "pocketsphinx_cards_002",
    "ljspeech_LJ002-0020",
    "picovoice_cheetah_test_en",
    "pocketsphinx_goforward",
    "librispeech_1272-128104-0000",
    "pocketsphinx_cards_005",
)
OLD_SEGMENTER: dict[str, float] = {
    "pre_roll_seconds": 0.6,
    "min_speech_seconds": 0.15,
    "hangover_seconds": 1.8,
    "post_roll_seconds": 0.4,
    "max_segment_seconds": 30.0,
    "split_search_seconds": 4.0,
    "target_segment_seconds": 30.0,  # no length-aware closing: only the 30 s cap
}
"""The segmenter's values before endpointing was changed. The detectors are today's (silero's end-of-speech
hysteresis and webrtc's level normalisation are not segmenter settings)."""


# -- running the systems ------------------------------------------------------------------------


@dataclass
class Run:
    """What one system did with one file: segments (with their close in audio time and close -> result
    seconds, voxrelay only) and the joined hypothesis. Paced (``arrivals`` set): when each block's audio
    came in and each segment's result came back, in wall time, for the measured latency."""

    segments: list[tuple[float, float]] = field(default_factory=list)
    closes: list[float] = field(default_factory=list)
    close_to_result: list[float | None] = field(default_factory=list)
    text: str = ""
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (audio end of a block, wall time)
    result_at: list[float | None] = field(default_factory=list)


class CloseLog:
    """A session observer: where each segment opened and closed, in audio and in wall time."""

    def __init__(self) -> None:
        self.audio_end = 0.0
        self.closed_at_audio: dict[int, float] = {}
        self.opened: dict[int, float] = {}
        self.spans: dict[int, tuple[float, float]] = {}
        self.sent_close: dict[int, float] = {}
        self.waited: dict[int, float] = {}
        self.arrivals: list[tuple[float, float]] = []
        self.result_at: dict[int, float] = {}

    def block(self, block: AudioBlock) -> None:
        self.audio_end = block.start + block.samples.shape[0] / SAMPLE_RATE
        self.arrivals.append((self.audio_end, time.perf_counter()))

    def segmented(self, stats: SegmenterStats, seconds: float) -> None:
        pass

    def produced(self, event: SegmentEvent) -> None:
        if isinstance(event, SegmentClosed):
            self.closed_at_audio[event.sequence] = self.audio_end

    def sent(self, event: SegmentEvent) -> None:
        if isinstance(event, SegmentOpened):
            self.opened[event.sequence] = event.offset
        elif isinstance(event, SegmentClosed):
            self.spans[event.sequence] = (self.opened.pop(event.sequence, event.end), event.end)
            self.sent_close[event.sequence] = time.perf_counter()

    def result(self, result: SegmentResult) -> None:
        sent = self.sent_close.get(result.sequence)
        if sent is not None and result.error is None and not result.duplicate and result.final:
            self.waited.setdefault(result.sequence, time.perf_counter() - sent)
            self.result_at.setdefault(result.sequence, time.perf_counter())


def stream_blocks(path: Path, tail_seconds: float, paced: bool = False) -> Iterator[AudioBlock]:
    """The file in live-sized blocks, then ``tail_seconds`` of silence; unpaced, or each block when its
    audio would have been spoken (``paced``: what a microphone gives)."""

    def unpaced() -> Iterator[AudioBlock]:
        samples = 0
        for block in WavSource(str(path), block_seconds=LIVE_BLOCK_SECONDS).blocks():
            samples += block.samples.shape[0]
            yield block
        step = round(LIVE_BLOCK_SECONDS * SAMPLE_RATE)
        for k in range(round(tail_seconds / LIVE_BLOCK_SECONDS)):
            yield AudioBlock(np.zeros(step, dtype=np.int16), (samples + k * step) / SAMPLE_RATE)

    began = time.perf_counter()
    for block in unpaced():
        if paced:  # the block is there once its last sample has been spoken
            ends = block.start + block.samples.shape[0] / SAMPLE_RATE
            time.sleep(max(0.0, began + ends - time.perf_counter()))
        yield block


async def stream_file(
    uplink: Uplink, file: BenchFile, vad: VadSettings, tail_seconds: float, paced: bool = False
) -> Run:
    log = CloseLog()
    blocks = stream_blocks(file.path, tail_seconds, paced)
    # Unpaced, segments go one at a time so that each meets an idle server; paced, as they close.
    window = None if paced else 1
    results = [
        r async for r in run_session(uplink, new_session_id(file.name), blocks, vad, window=window, observer=log)
    ]
    failed = [r.error for r in results if r.error]
    if failed:
        raise BenchError(f"{file.name}: {failed[0]}")
    order = sorted(log.spans)
    return Run(
        segments=[log.spans[s] for s in order],
        closes=[log.closed_at_audio[s] for s in order],
        close_to_result=[log.waited.get(s) for s in order],
        text=" ".join(r.text for r in results if r.text and r.final),
        arrivals=log.arrivals if paced else [],
        result_at=[log.result_at.get(s) for s in order],
    )


def segment_only(file: BenchFile, vad: VadSettings) -> Run:
    """VAD + segmenter alone (files with no reference): the segments ``run_session`` would send."""
    segmenter = vad.make_segmenter()
    blocks = WavSource(str(file.path)).blocks()
    events = [e for b in blocks for e in segmenter.feed(b)] + segmenter.flush()
    run, start = Run(), 0.0
    for e in events:
        if isinstance(e, SegmentOpened):
            start = e.offset
        elif isinstance(e, SegmentClosed):
            run.segments.append((start, e.end))
    return run


@dataclass(frozen=True)
class System:
    name: str
    label: str
    vad: VadSettings | None = None  # voxrelay
    fw_vad: dict[str, Any] | None = None  # faster-whisper VadOptions fields


def systems_for(names: Sequence[str], vad: VadSettings) -> list[System]:
    old_fields = {f.name for f in dataclasses.fields(SegmenterSettings)}
    old = SegmenterSettings(**{k: v for k, v in OLD_SEGMENTER.items() if k in old_fields})
    current = vad.segmenter or SegmenterSettings()
    made = {
        "current": System("current", f"voxrelay current ({vad.vad}, hangover {current.hangover_seconds:g} s)", vad),
        "nospec": System(
            "nospec",
            f"voxrelay current, no speculation ({vad.vad})",
            dataclasses.replace(vad, segmenter=dataclasses.replace(current, speculate_seconds=0.0)),
        ),
        "old": System(
            "old",
            f"voxrelay old ({vad.vad}, hangover {old.hangover_seconds:g} s)",
            dataclasses.replace(vad, segmenter=old),
        ),
        "fw": System("fw", "faster-whisper vad_filter, defaults", fw_vad={}),
        "fw300": System("fw300", "faster-whisper vad_filter, 300 ms silence", fw_vad={"min_silence_duration_ms": 300}),
    }
    return [made[n] for n in names]


async def run_voxrelay(
    groups: dict[str, list[BenchFile]],
    systems: Sequence[System],
    *,
    tail_seconds: float = STREAM_TAIL_SECONDS,
    progress: Callable[[str], None] = lambda _: None,
    recognizer: dict[str, Any] | None = None,
    paced: bool = False,
) -> tuple[dict[str, list[list[str]]], dict[tuple[str, str], list[Run]], dict[tuple[str, str], Work]]:
    """Recognizer alone on every utterance, and every voxrelay system on every file, on one embedded
    recognizer (tiny.en int8, beam 5; ``recognizer``: more of its options). Returns the alone texts per
    group and file, the runs, and the recognizer's work for each system and group."""
    from prometheus_client import CollectorRegistry

    from voxrelay.embedded import embedded_recognizer

    alone: dict[str, list[list[str]]] = {}
    runs: dict[tuple[str, str], list[Run]] = {}
    work: dict[tuple[str, str], Work] = {}
    registry = CollectorRegistry()
    options = {"model": "tiny.en", "beam_size": 5, **(recognizer or {})}
    async with embedded_recognizer(**options, metrics_registry=registry) as address:
        settings = UplinkSettings(server=address, device_id="bench-segmentation")
        async with open_uplink(settings) as uplink:
            for group, files in groups.items():
                progress(f"{group}: recognizer alone")
                texts = []
                for f in files:
                    per: list[str] = []
                    audio = read_samples(f.path) if f.recognize and f.utterances else np.zeros(0, np.int16)
                    for u in f.utterances if f.recognize else ():
                        got = await recognize_alone(uplink.stub, audio, u, settings, 300.0)
                        if got.error:
                            raise BenchError(f"{f.name} {u.id}: {got.error}")
                        per.append(got.text)
                    texts.append(per)
                alone[group] = texts
                for system in systems:
                    if system.vad is None:
                        continue
                    progress(f"{group}: {system.label}")
                    before = Work.read(registry)
                    runs[group, system.name] = [
                        await stream_file(uplink, f, system.vad, tail_seconds, paced)
                        if f.recognize
                        else segment_only(f, system.vad)
                        for f in files
                    ]
                    await asyncio.sleep(0.5)  # a speculation wasted at the very end is counted when it ends
                    work[group, system.name] = Work.read(registry) - before
    return alone, runs, work


@dataclass(frozen=True)
class Work:
    """The recognizer's counters: final results and their model time, speculations used and wasted."""

    finals: float = 0.0
    final_seconds: float = 0.0
    speculative_used: float = 0.0
    speculative_wasted: float = 0.0
    wasted_seconds: float = 0.0

    @staticmethod
    def read(registry: Any) -> Work:
        labels = {"model": "tiny.en", "backend": "faster-whisper"}

        def value(name: str, **more: str) -> float:
            return registry.get_sample_value(name, {**labels, **more}) or 0.0

        return Work(
            value("voxrelay_asr_inference_seconds_count"),
            value("voxrelay_asr_inference_seconds_sum"),
            value("voxrelay_asr_speculative_total", outcome="used"),
            value("voxrelay_asr_speculative_total", outcome="wasted"),
            value("voxrelay_asr_speculative_inference_seconds_total", outcome="wasted"),
        )

    def __sub__(self, other: Work) -> Work:
        return Work(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))

    @property
    def extra_share(self) -> float | None:
        """Wasted speculative model time over the final results' model time."""
        return self.wasted_seconds / self.final_seconds if self.final_seconds else None


def run_faster_whisper(
    groups: dict[str, list[BenchFile]],
    systems: Sequence[System],
    progress: Callable[[str], None] = lambda _: None,
) -> dict[tuple[str, str], list[Run]]:
    """faster-whisper's own VAD and ``transcribe(vad_filter=True)`` on the same files, same model."""
    wanted = [s for s in systems if s.fw_vad is not None]
    if not wanted:
        return {}
    from faster_whisper import WhisperModel
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from voxrelay.models.catalogue import resolve_model

    model = WhisperModel(resolve_model("tiny.en").path, device="cpu", compute_type="int8", cpu_threads=2)
    runs: dict[tuple[str, str], list[Run]] = {}
    for group, files in groups.items():
        for system in wanted:
            progress(f"{group}: {system.label}")
            options = VadOptions(**(system.fw_vad or {}))
            out = []
            for f in files:
                audio = read_samples(f.path).astype(np.float32) / 32768.0
                stamps = get_speech_timestamps(audio, options)
                run = Run(segments=[(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps])
                if f.recognize:
                    segments, _ = model.transcribe(
                        audio, beam_size=5, language="en", vad_filter=True, vad_parameters=options
                    )
                    run.text = " ".join(s.text.strip() for s in segments)
                out.append(run)
            runs[group, system.name] = out
    return runs


# -- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    group: str
    system: str
    wer_alone: float | None
    wer_e2e: float | None
    vad: dict[str, Any]
    segments: int
    segment_p50: float | None
    segment_p95: float | None
    segment_max: float | None
    long_pauses: int
    bridged: int
    latency_p50: float | None  # end of speech -> final result
    latency_p95: float | None
    close_p50: float | None  # of it, end of speech -> the segmenter's close (audio time: load-independent)
    close_p95: float | None
    close_to_result_p50: float | None  # and close -> result (wall time: depends on the machine's load)
    latencies: tuple[tuple[float, float], ...] = ()  # per utterance: (end of speech -> close, close -> result)
    finals: int = 0  # final results of the recognizer (voxrelay)
    speculative: int = 0  # of them, decoded during the pause before their segment's end
    extra_share: float | None = None  # wasted speculative model time / the finals' model time

    @property
    def bridged_share(self) -> float | None:
        return self.bridged / self.long_pauses if self.long_pauses else None


def pauses_of(speech: Regions, at_least: float = LONG_PAUSE) -> list[tuple[float, float]]:
    """Gaps of at least ``at_least`` seconds between consecutive labelled speech regions."""
    ordered = sorted(speech)
    return [(a[1], b[0]) for a, b in itertools.pairwise(ordered) if b[0] - a[1] >= at_least]


def utterance_latency(run: Run, speech_end: float) -> tuple[float, float] | None:
    """End of speech -> final result as (end of speech -> close, close -> result): the segment holding
    the end closes, then its result comes. Paced, the total is measured: from the wall time at which the
    block holding the end of speech came in to the result's arrival."""
    holding = [i for i, (start, _) in enumerate(run.segments) if start < speech_end]
    if not holding:
        return None
    i = holding[-1]
    to_close = run.closes[i] - speech_end
    if run.arrivals:
        result_at = run.result_at[i]
        heard = next((wall for end, wall in run.arrivals if end >= speech_end), None)
        return None if result_at is None or heard is None else (to_close, result_at - heard - to_close)
    waited = run.close_to_result[i]
    return None if waited is None else (to_close, waited)


def score(
    group: str,
    system: System,
    files: Sequence[BenchFile],
    alone: Sequence[Sequence[str]],
    runs: Sequence[Run],
    work: Work | None = None,
) -> Row:
    pooled_alone: WordErrors = NO_ERRORS
    pooled_e2e: WordErrors = NO_ERRORS
    vad_scores, lengths, latencies = [], [], []
    long_pauses = bridged = 0
    for f, texts, run in zip(files, alone, runs, strict=True):
        lengths += [e - s for s, e in run.segments]
        if f.recognize and f.utterances:
            reference = " ".join(u.text for u in f.utterances)
            pooled_alone = pooled_alone + word_errors(reference, " ".join(texts), "en")
            pooled_e2e = pooled_e2e + word_errors(reference, run.text, "en")
        if f.speech is not None:
            vad_scores.append(score_vad(f.speech, run.segments, f.duration))
            for a, b in pauses_of(f.speech):
                long_pauses += 1
                bridged += any(s <= a and e >= b for s, e in run.segments)
        if run.closes:
            latencies += [lat for t in f.speech_ends if (lat := utterance_latency(run, t)) is not None]
    totals = [a + b for a, b in latencies]
    return Row(
        group,
        system.name,
        pooled_alone.wer if pooled_alone.reference_words else None,
        pooled_e2e.wer if pooled_e2e.reference_words else None,
        summarize(vad_scores),
        len(lengths),
        percentile(lengths, 50),
        percentile(lengths, 95),
        max(lengths, default=None),
        long_pauses,
        bridged,
        percentile(totals, 50),
        percentile(totals, 95),
        percentile([a for a, _ in latencies], 50),
        percentile([a for a, _ in latencies], 95),
        percentile([b for _, b in latencies], 50),
        tuple(latencies),
        round(work.finals) if work else 0,
        round(work.speculative_used) if work else 0,
        work.extra_share if work else None,
    )


def run_benchmark(
    groups: dict[str, list[BenchFile]],
    systems: Sequence[System],
    *,
    tail_seconds: float = STREAM_TAIL_SECONDS,
    progress: Callable[[str], None] = lambda _: None,
    recognizer: dict[str, Any] | None = None,
    per_file: bool = False,
    paced: bool = False,
) -> list[Row]:
    """Every system on every group; one Row per (group, system), in that order. ``paced``: voxrelay
    streams each file at real time and its latency is measured, speculation included."""
    alone, runs, work = asyncio.run(
        run_voxrelay(groups, systems, tail_seconds=tail_seconds, progress=progress, recognizer=recognizer, paced=paced)
    )
    runs.update(run_faster_whisper(groups, systems, progress))
    if per_file:
        print_differences(groups, systems, alone, runs)
    return [
        score(g, s, files, alone[g], runs[g, s.name], work.get((g, s.name)))
        for g, files in groups.items()
        for s in systems
    ]


def print_differences(
    groups: dict[str, list[BenchFile]],
    systems: Sequence[System],
    alone: dict[str, list[list[str]]],
    runs: dict[tuple[str, str], list[Run]],
) -> None:
    """Each file whose end-to-end word errors differ from the recognizer's alone: both texts and the segments."""
    for group, files in groups.items():
        for system in systems:
            for f, texts, run in zip(files, alone[group], runs[group, system.name], strict=True):
                if not (f.recognize and f.utterances):
                    continue
                reference = " ".join(u.text for u in f.utterances)
                by_alone = word_errors(reference, " ".join(texts), "en").errors
                by_e2e = word_errors(reference, run.text, "en").errors
                if by_alone == by_e2e:
                    continue
                spans = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in run.segments)
                print(
                    f"{group} / {system.name} / {f.name}: {by_alone} word errors alone, {by_e2e} end to end\n"
                    f"  alone: {' '.join(texts)}\n  e2e:   {run.text}\n  segments: {spans}"
                )


# -- the table ------------------------------------------------------------------------------------


def print_table(rows: Sequence[Row], systems: Sequence[System], notes: Sequence[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def num(x: Any, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    def pair(a: float | None, b: float | None) -> str:
        return "-" if a is None or b is None else f"{a:.2f} / {b:.2f}"

    labels = {s.name: s.label for s in systems}
    table = Table(title="Segmentation benchmark (tiny.en int8, beam 5)", show_lines=False)
    for name in ("group", "system", "WER alone", "WER e2e", "VAD P", "VAD R", "VAD F1", "seg p50", "seg p95",
                 "seg max", "bridged ≥1 s", "EoS→result p50/p95", "EoS→close p50/p95", "close→result p50",
                 "speculative", "extra work"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("group", "system") else "right", no_wrap=True)
    previous = None
    for r in rows:
        if previous is not None and r.group != previous:
            table.add_section()
        previous = r.group
        share = "-" if r.bridged_share is None else f"{r.bridged}/{r.long_pauses} ({100 * r.bridged_share:.0f}%)"
        table.add_row(
            r.group, labels[r.system], pct(r.wer_alone), pct(r.wer_e2e),
            num(r.vad["precision"]), num(r.vad["recall"]), num(r.vad["f1"]),
            num(r.segment_p50, 1), num(r.segment_p95, 1), num(r.segment_max, 1), share,
            pair(r.latency_p50, r.latency_p95), pair(r.close_p50, r.close_p95), num(r.close_to_result_p50, 2),
            f"{r.speculative}/{r.finals}" if r.finals else "-", pct(r.extra_share),
        )  # fmt: skip
    console = Console(width=None if sys.stdout.isatty() else 240)
    console.print(table)
    for line in notes:
        console.print(line, soft_wrap=True)


def parse_set(items: Sequence[str]) -> SegmenterSettings | None:
    if not items:
        return None
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise BenchError(f"--set {item!r}: expected FIELD=SECONDS, e.g. hangover_seconds=0.5")
        values[name.strip()] = float(value)
    try:
        return SegmenterSettings(**values)
    except TypeError as err:
        raise BenchError(f"--set: {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH, help="the dev set folder")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where constructed audio is kept")
    parser.add_argument("--quick", action="store_true", help=f"only {len(QUICK_IDS)} short utterances")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated (default: all)")
    parser.add_argument("--no-dev", action="store_true", help="leave the dev group out")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    parser.add_argument("--vad", choices=VADS, default=DEFAULT_VAD)
    parser.add_argument("--vad-mode", type=int, choices=(0, 1, 2, 3))
    parser.add_argument("--vad-threshold", type=float)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=SECONDS",
                        help="a SegmenterSettings field for the 'current' system (repeatable)")  # fmt: skip
    parser.add_argument(
        "--temperature",
        type=temperatures,
        metavar="T[,T...]",
        help="the recognizer's sampling temperatures (default: the server's)",
    )
    parser.add_argument(
        "--context-seconds",
        type=float,
        metavar="S",
        help="the recognizer's context window (default: the server's; 0 = off)",
    )
    parser.add_argument(
        "--per-file", action="store_true", help="also print each file whose end-to-end errors differ from alone"
    )
    parser.add_argument(
        "--paced",
        action="store_true",
        help="stream voxrelay's files at real time and measure the latency (speculation included) instead of "
        "computing it from an unpaced run (takes the audio's duration per voxrelay system)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except BenchError as err:
        print(f"bench_segmentation: {err}", file=sys.stderr)
        return 2
    except VoxrelayError as err:  # settings that do not validate (--set, --vad-threshold, ...)
        print(f"bench_segmentation: {err.message}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if not (args.speech / "manifest.jsonl").is_file():
        print(f"bench_segmentation: no dev set at {args.speech} (pass --speech DIR); nothing to do", file=sys.stderr)
        return 0
    conditions = [c for c in args.conditions.split(",") if c]
    names = [s for s in args.systems.split(",") if s]
    unknown = [c for c in conditions if c not in CONDITIONS] + [s for s in names if s not in SYSTEMS]
    if unknown:
        raise BenchError(f"unknown condition or system: {', '.join(unknown)}")
    vad = VadSettings(vad=args.vad, mode=args.vad_mode, threshold=args.vad_threshold, segmenter=parse_set(args.set))
    systems = systems_for(names, vad)
    pieces = dev_pieces(args.speech)
    if args.quick:
        pieces = [p for p in pieces if p.id in QUICK_IDS]
    began = time.perf_counter()

    def progress(what: str) -> None:
        print(f"[{time.perf_counter() - began:6.0f} s] {what}", file=sys.stderr, flush=True)

    groups: dict[str, list[BenchFile]] = {}
    if not args.no_dev:
        groups["dev"] = dev_files(args.speech, pieces)
    plan = make_plan(pieces, args.seed)
    for condition in conditions:
        progress(f"making {condition}")
        groups[condition] = [build_condition(condition, plan, args.cache)]
    recognizer: dict[str, Any] = {}
    if args.temperature is not None:
        recognizer["temperature"] = args.temperature
    if args.context_seconds is not None:
        recognizer["context_seconds"] = args.context_seconds
    rows = run_benchmark(
        groups, systems, progress=progress, recognizer=recognizer, per_file=args.per_file, paced=args.paced
    )
    kinds = sorted({p.labels for p in pieces})
    audio = sum(f.duration for files in groups.values() for f in files)
    notes = [
        f"{len(pieces)} English dev utterances; constructed labels from {' and '.join(kinds)}; seed {args.seed}; "
        f"pauses {PAUSES[0]}-{PAUSES[1]} s ({sum(p >= LONG_PAUSE for p in plan.pauses)} of {len(plan.pauses)} "
        f"≥ {LONG_PAUSE:g} s); audio in {args.cache}",
        "WER alone: the recognizer on each whole utterance (same model for every row); VAD: 10 ms frames, no collar; "
        "bridged: pauses ≥ 1 s between labelled speech lying inside one segment; EoS→result (see the script's "
        "docstring) = EoS→close (the segmenter's close in audio time - the labelled end of speech: independent of "
        "the machine) + close→result (measured on an idle recognizer: depends on the machine and its load)",
        f"{audio:.0f} s of audio per system; wall time {time.perf_counter() - began:.0f} s",
    ]
    print_table(rows, systems, notes)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "systems": {s.name: s.label for s in systems},
                    "rows": [{**dataclasses.asdict(r), "bridged_share": r.bridged_share} for r in rows],
                    "notes": notes,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
